"""Device selection, mixed precision and the CPU runtime (threads, allocator)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
from typing import Iterator, Optional

import torch

from .errors import MedDiffFMError

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a usable :class:`torch.device`.

    ``auto`` picks CUDA, then Apple MPS, then the CPU.
    """
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MedDiffFMError(
                f"Device '{name}' was requested but PyTorch sees no CUDA GPU on this machine "
                f"(torch {torch.__version__}). Use --device cpu (slower) or --device auto, or install a "
                "CUDA build of PyTorch."
            )
        return torch.device(name)
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise MedDiffFMError("Device 'mps' was requested but Apple's Metal backend is not available here. "
                                 "Use --device cpu or --device auto.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise MedDiffFMError(f"Unknown device '{name}'. Choose one of: {', '.join(DEVICE_CHOICES)} (or cuda:N).")


PRECISION_CHOICES = ("auto", "float32", "bfloat16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where oneDNN's bf16 convolutions
    beat fp32: 2x per 80^3 patch on the project's 2-core AMD EPYC, 2.4x on one thread
    (benchmarks/results/speed_issue40_sample.md). Elsewhere
    (AVX2 laptops, Apple silicon) bf16 is emulated and slower, so fp32 stays."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The network's mixed-precision dtype (None: full fp32).

    ``auto``: bf16 on CUDA GPUs that support it and on CPUs with native bf16 (:func:`cpu_has_native_bf16`),
    fp32 elsewhere. ``float32`` always fp32; ``bfloat16`` asks for bf16 (refused where the device has none).
    """
    if precision not in PRECISION_CHOICES:
        raise MedDiffFMError(f"Unknown precision '{precision}'. Choose one of: {', '.join(PRECISION_CHOICES)}.")
    if precision == "float32":
        return None
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bfloat16":
        if device.type == "cuda" and not cuda_bf16:
            raise MedDiffFMError("--precision bfloat16 was requested but this GPU has no bf16 support. "
                                 "Use --precision float32 (or auto).")
        return torch.bfloat16
    if cuda_bf16 or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Mixed precision when ``dtype`` is given, a no-op otherwise."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def usable_cpu_count() -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(float(quota) / float(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


@functools.lru_cache(maxsize=1)
def _glibc():
    """The C library when it is glibc (mallopt and malloc_trim exist), else None (macOS, Windows, musl)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_CPU_ALLOCATOR_SET = False
_GLIBC_MMAP_MAX_DEFAULT = 65536
_GLIBC_TRIM_THRESHOLD_DEFAULT = 128 * 1024


def configure_cpu_runtime(threads: Optional[int] = None) -> int:
    """Make the CPU fast for patch-wise network evaluation; returns the intra-op thread count set.

    * PyTorch's intra-op threads = ``threads``, else capped at the cores this process may use: PyTorch
      counts the machine's cores, while a container or an affinity mask may allow fewer, and more
      threads than cores thrash. A lower count set by the caller (``torch.set_num_threads``) is kept.
    * It turns on :func:`kept_cpu_memory` for the network's patch loop (glibc only).
    """
    global _CPU_ALLOCATOR_SET
    count = max(1, int(threads)) if threads else min(torch.get_num_threads(), usable_cpu_count())
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    _CPU_ALLOCATOR_SET = True
    return count


@contextlib.contextmanager
def kept_cpu_memory() -> Iterator[None]:
    """Inside: glibc's allocator keeps freed memory instead of handing every large block back to the
    OS (no mmap for large blocks, no heap trimming). The network's activations (tens of MB each) are
    otherwise mapped and unmapped at every layer, and the kernel's page faults and zeroing took 28 %
    of the CPU time of a denoising step on the 2-core machine (49 s system against 125 s user;
    benchmarks/results/profile_cpu_before_issue40.md). On exit glibc's defaults return and the free
    memory goes back to the OS, so the rest of the task (whole-volume arrays) keeps mmap and its peak.
    A no-op unless :func:`configure_cpu_runtime` ran, and off glibc (macOS, Windows, musl)."""
    libc = _glibc() if _CPU_ALLOCATOR_SET else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX_DEFAULT)
        libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_TRIM_THRESHOLD_DEFAULT)
        libc.malloc_trim(0)


def release_cpu_memory() -> None:
    """Hand the allocator's free memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    if _CPU_ALLOCATOR_SET:
        libc = _glibc()
        if libc is not None:
            libc.malloc_trim(0)


def available_devices() -> list[str]:
    """Human-readable list of the devices PyTorch can use here."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(f"cuda:{index} ({props.name}, {props.total_memory / 2**30:.0f} GiB)")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def available_memory_bytes() -> int | None:
    """Memory the OS can still give this process (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(voxels: int, copies: float, what: str) -> None:
    """Raise :class:`ResourceError` when ``copies`` float32 volumes of ``voxels`` will not fit in RAM."""
    from .errors import ResourceError

    needed = int(voxels * 4 * copies)
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise ResourceError(
            f"{what} needs about {needed / 2**30:.1f} GiB of memory but only {available / 2**30:.1f} GiB is "
            "available. Crop the volume to the region of interest (e.g. Slicer's Crop Volume), resample it "
            "coarser, or close other programs."
        )

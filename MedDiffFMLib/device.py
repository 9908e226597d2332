"""Device selection and mixed precision."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from .errors import MedDiffFMError

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


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA GPUs that support it; full precision elsewhere (CPU bf16 is slower than fp32 here)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
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

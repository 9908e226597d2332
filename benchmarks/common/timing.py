"""Wall-clock timing and peak memory of a block of work (process RSS on CPU, the allocator's peak on GPU)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def mvox_per_s(voxels: int, seconds: float) -> float:
    return voxels / 1e6 / seconds if seconds > 0 else float("nan")


def _status_kib(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory of this process during a ``with`` block.

    CPU: the resident set's high-water mark (Linux ``VmHWM``, reset on entry by writing 5 to
    ``/proc/self/clear_refs``); where that is not possible, a thread samples ``VmRSS`` every 5 ms.
    GPU: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
    Attributes after the block: ``peak_rss``, ``start_rss`` (bytes), ``cuda_peak`` (bytes or None).
    """

    def __init__(self, cuda: bool = False) -> None:
        self.cuda = cuda
        self.cuda_peak: Optional[int] = None

    def __enter__(self) -> "PeakMemory":
        import gc

        from MedDiffFMLib.device import release_cpu_memory

        gc.collect()
        # Memory the CPU allocator kept (device.configure_cpu_runtime) would hide the block's growth.
        release_cpu_memory()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.start_rss = current_rss_bytes()
        self._sampler: Optional[threading.Thread] = None
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.mode = "VmHWM"
        except OSError:
            self.mode = "sampled"
            self._stop = threading.Event()
            self._max = self.start_rss

            def sample() -> None:
                while not self._stop.is_set():
                    self._max = max(self._max, current_rss_bytes())
                    time.sleep(0.005)

            self._sampler = threading.Thread(target=sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak_rss = max(self._max, current_rss_bytes())
        else:
            hwm = _status_kib("VmHWM")
            self.peak_rss = hwm * 1024 if hwm is not None else current_rss_bytes()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.cuda_peak = int(torch.cuda.max_memory_allocated())


def gib(n: Optional[float]) -> float:
    return float("nan") if n is None else n / 2**30


"""Section 5 of :mod:`benchmarks.speed`: the targets of issues 7 and 40 and where each path stands (met /
NOT met / not measured)."""

from __future__ import annotations

from typing import Optional

from benchmarks.common import metrics, reporting
from benchmarks.speed_parts.end_to_end import Results
from benchmarks.speed_parts.large_volume import BigResults
from benchmarks.speed_parts.runs import E2E

CPU_TARGET_SECONDS = 300.0
CPU_TARGET_SPEEDUP = 3.0
CPU_TARGET_RAM_GB = 4.0
GPU_TARGET_SECONDS = 30.0
GPU_TARGET_SPEEDUP = 5.0
GPU_TARGET_MEMORY_GB = 8.0
QUALITY_TARGET_DB = 45.0
# Issue 40 (the CPU path), against the path before it measured in the same run (--paths legacy,...).
LEGACY_TARGET_SPEEDUP = 4.0
LEGACY_TARGET_BIG_MINUTES = 10.0
LABELS = (("library as shipped", "fast"), ("tuned", "tuned"))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def add_equality_rows(targets: reporting.Table, results: Results, paths) -> None:
    """Output equality of each path against the naive baseline, per task (target >= 45 dB)."""
    for (task, path), r in results.items():
        naive = results.get((task, "naive"))
        if path == "naive" or naive is None or naive.output.shape != r.output.shape:
            continue
        value = metrics.psnr(naive.output, r.output)
        targets.add(target=f"{task}: output equal to the naive baseline's, PSNR ≥ {QUALITY_TARGET_DB:.0f} dB "
                           f"({path})", measured=f"{value:.1f} dB", verdict=verdict(value >= QUALITY_TARGET_DB))


def add_cpu_rows(targets: reporting.Table, results: Results, size_text: str,
                 memory_ratio: Optional[tuple[float, float]]) -> None:
    naive = results.get(("denoise", "naive"))
    for label, path in LABELS:
        r = results.get(("denoise", path))
        if r is None:
            continue
        mark = " (proj.)" if r.steps_run < r.default_steps else ""
        targets.add(target=f"CPU: denoise {size_text} end to end ≤ {CPU_TARGET_SECONDS:.0f} s ({label})",
                    measured=f"{r.projected:.0f} s{mark}", verdict=verdict(r.projected <= CPU_TARGET_SECONDS))
        if naive:
            speed = naive.projected / r.projected
            targets.add(target=f"CPU: ≥ {CPU_TARGET_SPEEDUP:.0f}× the naive baseline ({label})",
                        measured=f"{speed:.2f}×", verdict=verdict(speed >= CPU_TARGET_SPEEDUP))
        targets.add(target=f"CPU: peak RAM < {CPU_TARGET_RAM_GB:.0f} GB ({label})",
                    measured=f"{r.peak_rss / 1e9:.2f} GB", verdict=verdict(r.peak_rss / 1e9 < CPU_TARGET_RAM_GB))
    legacy = results.get(("denoise", "legacy"))
    fast = results.get(("denoise", "fast"))
    if legacy and fast:
        speed = legacy.total / fast.total
        targets.add(target=f"CPU: ≥ {LEGACY_TARGET_SPEEDUP:.0f}× the path before issue 40, same steps, same run "
                           "(library as shipped)", measured=f"{speed:.2f}× ({legacy.total:.1f} → {fast.total:.1f} s)",
                    verdict=verdict(speed >= LEGACY_TARGET_SPEEDUP))
        targets.add(target="CPU: peak RAM no higher than the path before issue 40 (library as shipped)",
                    measured=f"{fast.peak_rss / 2**30:.2f} against {legacy.peak_rss / 2**30:.2f} GiB",
                    verdict=verdict(fast.peak_rss <= legacy.peak_rss))
    if memory_ratio:
        ratio, vox_ratio = memory_ratio
        targets.add(target="memory grows (at most) linearly with the volume",
                    measured=f"Δ ratio {ratio:.2f} for {vox_ratio:.1f}× voxels",
                    verdict=verdict(ratio <= vox_ratio * 1.1))


def add_gpu_rows(targets: reporting.Table, big_results: BigResults) -> None:
    naive = big_results.get("naive")
    for label, path in LABELS:
        b = big_results.get(path)
        if b is None:
            continue
        targets.add(target=f"GPU: 512×512×300 denoise ≤ {GPU_TARGET_SECONDS:.0f} s ({label})",
                    measured=f"{b['total']:.1f} s", verdict=verdict(b["total"] <= GPU_TARGET_SECONDS))
        if naive:
            speed = naive["total"] / b["total"]
            targets.add(target=f"GPU: ≥ {GPU_TARGET_SPEEDUP:.0f}× naive ({label})", measured=f"{speed:.2f}×",
                        verdict=verdict(speed >= GPU_TARGET_SPEEDUP))
        if b["gpu"] is not None:
            targets.add(target=f"GPU: peak ≤ {GPU_TARGET_MEMORY_GB:.0f} GB ({label})",
                        measured=f"{b['gpu'] / 1e9:.2f} GB", verdict=verdict(b["gpu"] / 1e9 <= GPU_TARGET_MEMORY_GB))


def add_large_equality_rows(targets: reporting.Table, big_results: BigResults) -> None:
    naive = big_results.get("naive")
    for path, b in big_results.items():
        if path != "naive" and naive is not None and b.get("output") is not None:
            value = metrics.psnr(naive["output"], b["output"])
            targets.add(target=f"512×512×300 output equal to naive's: PSNR ≥ {QUALITY_TARGET_DB:.0f} dB ({path})",
                        measured=f"{value:.1f} dB", verdict=verdict(value >= QUALITY_TARGET_DB))


def add_task_memory_rows(targets: reporting.Table, rows: list[tuple[str, E2E]], size: tuple, gpu: bool) -> None:
    size_text = "×".join(map(str, size))
    for task, r in rows:
        if not r.evaluations:
            continue
        if gpu and r.cuda_peak is not None:
            targets.add(target=f"GPU: {task} at {size_text} peak ≤ {GPU_TARGET_MEMORY_GB:.0f} GB",
                        measured=f"{r.cuda_peak / 1e9:.2f} GB",
                        verdict=verdict(r.cuda_peak / 1e9 <= GPU_TARGET_MEMORY_GB))
        elif not gpu:
            targets.add(target=f"CPU: {task} at {size_text} peak RAM (no target; {CPU_TARGET_RAM_GB:.0f} GB for "
                               "256x256x128)", measured=f"{r.peak_rss / 1e9:.2f} GB", verdict="–")


def targets_section(results: Results, big_results: BigResults, memory_rows: list[tuple[str, E2E]], paths,
                    size_text: str, memory_ratio: Optional[tuple[float, float]], memory_size: tuple,
                    gpu: bool) -> reporting.Table:
    """Section 5: the CPU targets on a CPU run, the GPU targets on a GPU run."""
    targets = reporting.Table("5. Targets", [("target", "target"), ("measured", "measured"), ("verdict", "standing")])
    if not gpu:
        add_cpu_rows(targets, results, size_text, memory_ratio)
        big = big_results.get("fast")
        if big is not None:
            minutes = big["total"] / 60
            targets.add(target=f"CPU: 512×512×300 denoise ≤ {LEGACY_TARGET_BIG_MINUTES:.0f} min (library as shipped, "
                               "issue 40)", measured=f"{minutes:.1f} min (est.)",
                        verdict=verdict(minutes <= LEGACY_TARGET_BIG_MINUTES))
        add_equality_rows(targets, results, paths)
        for text in (f"GPU: 512×512×300 denoise ≤ {GPU_TARGET_SECONDS:.0f} s on an H100",
                     f"GPU: ≥ {GPU_TARGET_SPEEDUP:.0f}× naive", f"GPU: peak ≤ {GPU_TARGET_MEMORY_GB:.0f} GB"):
            targets.add(target=text, measured="not measured (no GPU)", verdict="–")
    else:
        add_gpu_rows(targets, big_results)
        add_equality_rows(targets, results, paths)
        add_large_equality_rows(targets, big_results)
        targets.add(target="CPU targets", measured="not measured in a GPU run (use --device cpu)", verdict="–")
    add_task_memory_rows(targets, memory_rows, memory_size, gpu)
    return targets

"""Sections 4 and 6 of :mod:`benchmarks.speed` on synthetic CT-like volumes: denoising a 512x512x300 CT
(measured end to end on GPU; on CPU, where it takes hours, estimated from a run with the network stubbed
out plus section 1's seconds per evaluation), and the peak memory of every task at 512^3."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmarks.common import metrics, reporting, timing
from benchmarks.speed_parts.end_to_end import Results, runner_for
from benchmarks.speed_parts.inputs import prepare_inputs, synthetic_ct
from benchmarks.speed_parts.network import NetworkFigures
from benchmarks.speed_parts.paths import PATHS
from benchmarks.speed_parts.runs import E2E, IsolatedRunner, default_steps

BigResults = dict[str, dict[str, Any]]

ESTIMATE_NOTE = ("Estimated: 'all but network' is measured for real with the network replaced by a stub (reading, "
                 "preprocessing, tiling, position embedding, blending, sampler arithmetic, writing); 'network' = "
                 "evaluations × the best per-patch time of section 1; peak RSS = the stub run's peak + one batch of "
                 "activations.")


def big_run(path: str, runner: IsolatedRunner, item, steps: int, full: bool, net: NetworkFigures,
            results: Results) -> dict[str, Any]:
    """One path on the large volume: measured (``full``) or estimated."""
    r = runner.run("denoise", item, steps, path, "_big" if full else "_bigstub", stub=not full)
    if r.evaluations == 0:
        raise RuntimeError("Denoising the synthetic volume made no network evaluation (it found no "
                           "noise to remove on the model grid), so there is nothing to time.")
    if full:
        return {"total": r.total, "patches": r.patches_per_step, "rss": r.peak_rss, "gpu": r.cuda_peak,
                "output": r.output, "network": None, "overhead": None}
    variant = PATHS[path]
    network = r.evaluations * variant.network_seconds(net, results.get(("denoise", path)))
    return {"total": r.total + network, "patches": r.patches_per_step, "rss": r.peak_rss, "gpu": r.cuda_peak,
            "output": None, "network": network, "overhead": r.total,
            "activation": net.activation_bytes * variant.activation_batch(net)}


def large_volume_section(args, paths: list[str], work: Path, runner: IsolatedRunner, net: NetworkFigures,
                         results: Results, mode: str) -> tuple[reporting.Table, BigResults]:
    """Section 4: denoise the synthetic ``--big-size`` volume, ``mode`` 'full' (measured) or 'estimate'."""
    big = synthetic_ct(args.big_size)
    item = prepare_inputs(big, ["denoise"], work, "big")["denoise"]
    big_vox = int(np.prod(big.GetSize()))
    steps = args.steps or default_steps("denoise")
    full = mode == "full"
    table = reporting.Table(
        f"4. Synthetic CT {'×'.join(map(str, big.GetSize()))} at 0.8×0.8×1.5 mm ({big_vox / 1e6:.1f} Mvox), "
        f"denoise, {steps} steps, {'measured' if full else 'estimated (CPU)'}",
        [("path", "path"), ("patches", "patches/step"), ("overhead", "all but network s", "{:.1f}"),
         ("network", "network s", "{}"), ("total", "total s", "{}"), ("mvox", "Mvox/s", "{:.3f}"),
         ("speedup", "× naive", "{:.2f}"), ("rss", "peak RSS GiB", "{}"), ("gpu", "peak GPU GiB", "{:.2f}"),
         ("psnr", "PSNR vs naive dB", "{:.1f}")],
        note="" if full else ESTIMATE_NOTE)
    big_results: BigResults = {}
    for path in paths:
        big_results[path] = big_run(path, runner, item, steps, full, net, results)
        print(f"[big] {path}: {big_results[path]['total']:.0f} s{'' if full else ' (est.)'}", flush=True)
    naive = big_results.get("naive")
    est = "" if full else " (est.)"
    for path in paths:
        b = big_results[path]
        table.add(
            path=path, patches=f"{b['patches']:.0f}",
            overhead=b["overhead"], network=("incl." if full else f"{b['network']:.0f} (est.)"),
            total=f"{b['total']:.0f}{est}", mvox=big_vox / 1e6 / b["total"],
            speedup=(naive["total"] / b["total"] if naive else None),
            rss=(f"{timing.gib(b['rss']):.2f}" if full else f"{timing.gib(b['rss'] + b['activation']):.2f} (est.)"),
            gpu=timing.gib(b["gpu"]) if b["gpu"] is not None else None,
            psnr=(metrics.psnr(naive["output"], b["output"]) if full and naive and path != "naive" else None))
    return table, big_results


def task_memory_section(args, tasks: list[str], work: Path, runner: IsolatedRunner,
                        role_runners: dict[str, IsolatedRunner]) -> tuple[reporting.Table, list[tuple[str, E2E]]]:
    """Section 6: the peak memory of every task, 1 step, library path, on a synthetic ``--memory-size`` volume
    (the GPU target is <= 8 GB at 512^3)."""
    size = args.memory_size
    huge = synthetic_ct(size, spacing=(0.8, 0.8, 0.8))
    inputs = prepare_inputs(huge, tasks, work, "memory")
    table = reporting.Table(
        f"6. Peak memory of every task, 1 step, library path, synthetic CT {'×'.join(map(str, size))} at 0.8 mm "
        f"({int(np.prod(size)) / 1e6:.0f} Mvox)",
        [("task", "task"), ("patches", "network evaluations"), ("total", "total s", "{:.1f}"),
         ("rss", "peak RSS GiB", "{:.2f}"), ("gpu", "peak GPU GiB", "{:.2f}"), ("note", "note")],
        note=("Each task in a fresh process, one sampler step (memory does not grow with the steps: section 3). "
              "superres reads a thick-slice copy and writes the full grid."))
    rows: list[tuple[str, E2E]] = []
    for task in tasks:
        task_runner: Optional[IsolatedRunner] = runner_for(task, runner, role_runners)
        if task_runner is None:
            continue
        r = task_runner.run(task, inputs[task], 1, "fast", "_memory")
        rows.append((task, r))
        table.add(task=task, patches=r.evaluations, total=r.total, rss=timing.gib(r.peak_rss),
                  gpu=timing.gib(r.cuda_peak) if r.cuda_peak is not None else None,
                  note="" if r.evaluations else "no network evaluation (nothing to do): not a figure")
        print(f"[memory] {task}: peak RSS {timing.gib(r.peak_rss):.2f} GiB", flush=True)
    return table, rows

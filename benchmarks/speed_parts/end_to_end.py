"""Sections 2 and 3 of :mod:`benchmarks.speed`: every task end to end on the real CT, each path in a
fresh process (seconds by stage, patches per step, user and system time, peak memory, speed-up and
PSNR against the naive and the legacy path), and the peak memory of denoising at two volume sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from benchmarks.common import metrics, reporting, timing
from benchmarks.speed_parts.inputs import TaskInput, prepare_inputs, real_ct
from benchmarks.speed_parts.runs import CONTROLNET_TASKS, E2E, IsolatedRunner, default_steps

QUICK_STEPS = {"denoise": 2, "anomaly": 3}

E2E_COLUMNS = [
    ("task", "task"), ("path", "path"), ("steps", "steps run/default"), ("patches", "patches/step", "{:.0f}"),
    ("read", "read s", "{:.1f}"), ("pre", "preprocess s", "{:.1f}"), ("step", "s/step", "{:.1f}"),
    ("post", "post s", "{:.1f}"), ("write", "write s", "{:.1f}"), ("total", "total s", "{:.1f}"),
    ("user", "user s", "{:.1f}"), ("system", "system s", "{:.1f}"),
    ("at_default", "at default steps s", "{}"), ("mvox", "Mvox/s", "{:.4f}"), ("speedup", "× naive", "{:.2f}"),
    ("speedup_legacy", "× legacy", "{:.2f}"),
    ("rss", "peak RSS GiB", "{:.2f}"), ("gpu", "peak GPU GiB", "{:.2f}"), ("psnr", "PSNR vs naive dB", "{:.1f}"),
    ("psnr_fast", "PSNR vs fast dB", "{:.1f}"), ("psnr_legacy", "PSNR vs legacy dB", "{:.1f}")]

Results = dict[tuple[str, str], E2E]


def runner_for(task: str, runner: IsolatedRunner, role_runners: dict[str, IsolatedRunner]) -> Optional[IsolatedRunner]:
    """The base model's runner, or the task's ControlNet runner (None when that model is not available)."""
    return role_runners.get(task) if task in CONTROLNET_TASKS else runner


def steps_for(task: str, args) -> int:
    """``--steps``, else 2 with ``--quick`` (anomaly 3), else the task's default."""
    if args.steps:
        return args.steps
    if args.quick:
        # prepare_timesteps drops to fewer steps than asked with a high start step (anomaly: 3 -> 2).
        return QUICK_STEPS.get(task, 2)
    return default_steps(task)


def psnr_against(reference: Optional[E2E], r: E2E) -> Optional[float]:
    """PSNR of ``r``'s output against ``reference``'s (None without a comparable reference)."""
    if reference is None or reference is r or reference.output.shape != r.output.shape:
        return None
    return metrics.psnr(reference.output, r.output)


def run_task(task: str, item: TaskInput, task_runner: IsolatedRunner, paths: list[str], steps: int, repeats: int,
             results: Results) -> None:
    """Every path on one task; paths alternate over ``repeats`` and the fastest run of each is kept."""
    for _ in range(max(1, repeats)):
        for path in paths:
            print(f"[{task}] {path}: {steps} step(s)...", flush=True)
            result = task_runner.run(task, item, steps, path)
            if (task, path) not in results or result.total < results[(task, path)].total:
                results[(task, path)] = result
            print(f"  {result.total:.1f} s ({result.per_step:.1f} s/step, {result.patches_per_step:.0f} "
                  f"patches/step), peak RSS {timing.gib(result.peak_rss):.2f} GiB", flush=True)


def add_task_rows(table: reporting.Table, task: str, item: TaskInput, paths: list[str], results: Results) -> None:
    naive = results.get((task, "naive"))
    legacy = results.get((task, "legacy"))
    fast = results.get((task, "fast"))
    for path in paths:
        r = results[(task, path)]
        projected = r.projected
        mark = "" if r.steps_run >= r.default_steps else " (proj.)"
        table.add(
            task=task, path=path, steps=f"{r.steps_run}/{r.default_steps}", patches=r.patches_per_step,
            read=r.read, pre=r.preprocess, step=r.per_step, post=r.post, write=r.write, total=r.total,
            user=r.user, system=r.system,
            speedup_legacy=(legacy.projected / projected if legacy else None),
            psnr_legacy=psnr_against(legacy, r),
            at_default=f"{projected:.1f}{mark}", mvox=timing.mvox_per_s(item.voxels, projected),
            speedup=(naive.projected / projected if naive else None), rss=timing.gib(r.peak_rss),
            gpu=timing.gib(r.cuda_peak) if r.cuda_peak is not None else None,
            psnr=psnr_against(naive, r),
            psnr_fast=psnr_against(fast, r) if path == "tuned" else None)


def end_to_end_section(image: sitk.Image, name: str, tasks: list[str], paths: list[str], args, work: Path,
                       runner: IsolatedRunner,
                       role_runners: dict[str, IsolatedRunner]) -> tuple[reporting.Table, Results]:
    """Section 2: every task and path end to end on ``image``."""
    inputs = prepare_inputs(image, tasks, work, "real")
    results: Results = {}
    table = reporting.Table(
        f"2. End to end on {name} {'x'.join(map(str, image.GetSize()))} "
        f"({int(np.prod(image.GetSize())) / 1e6:.2f} Mvox)", E2E_COLUMNS)
    for task in tasks:
        if task not in inputs:
            continue
        task_runner = runner_for(task, runner, role_runners)
        if task_runner is None:
            table.add(task=task, path="–", steps="not available (no ControlNet model for this task)")
            continue
        run_task(task, inputs[task], task_runner, paths, steps_for(task, args), args.repeats, results)
        add_task_rows(table, task, inputs[task], paths, results)
    return table, results


def memory_section(image: sitk.Image, name: str, paths: list[str], args, work: Path, runner: IsolatedRunner,
                   results: Results, gpu: bool) -> tuple[reporting.Table, Optional[tuple[float, float]]]:
    """Section 3: denoise, 1 step, on a smaller crop of the same case beside section 2's run; returns the
    table and the library's (Δ ratio, voxel ratio)."""
    table = reporting.Table(
        f"3. Memory against volume size (denoise, 1 step; {name})",
        [("path", "path"), ("size", "size x×y×z"), ("mvox", "Mvox", "{:.2f}"), ("peak", "peak RSS GiB", "{:.2f}"),
         ("delta", "peak − RSS before GiB", "{:.2f}"), ("gpu", "peak GPU GiB", "{:.2f}"),
         ("ratio", "Δ ratio (large/small)", "{:.2f}"), ("vox_ratio", "voxel ratio", "{:.2f}")],
        note=("Each run in a fresh process. Δ = peak resident memory minus the resident memory before "
              "reading the input (the loaded model and the Python runtime excluded); on GPU the ratio uses "
              "the peak GPU memory. Linear growth means Δ ratio ≤ voxel ratio."))
    small = real_ct(args.e2e_case, args.small_size, args.e2e_spacing)
    small_inputs = prepare_inputs(small, ["denoise"], work, "small")
    memory_ratio = None
    for path in paths:
        r_small = runner.run("denoise", small_inputs["denoise"], 1, path, "_small")
        r_large = results[("denoise", path)]
        d_small = r_small.peak_rss - r_small.start_rss
        d_large = r_large.peak_rss - r_large.start_rss
        if gpu:
            d_small, d_large = r_small.cuda_peak or 0, r_large.cuda_peak or 0
        vox_ratio = np.prod(image.GetSize()) / np.prod(small.GetSize())
        ratio = d_large / d_small if d_small > 0 else float("nan")
        if path == "fast":
            memory_ratio = (ratio, vox_ratio)
        for r, volume, extra in ((r_small, small, {}), (r_large, image, {"ratio": ratio, "vox_ratio": vox_ratio})):
            table.add(path=path, size="×".join(map(str, volume.GetSize())), mvox=np.prod(volume.GetSize()) / 1e6,
                      peak=timing.gib(r.peak_rss), delta=timing.gib(r.peak_rss - r.start_rss),
                      gpu=timing.gib(r.cuda_peak) if gpu else None, **extra)
    return table, memory_ratio

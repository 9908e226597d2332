"""Training throughput per optimiser step, for each layout / kernel setting beside the trainer's
current one, measured in the same run on this machine.

Why: a GPU chunk trains about 6 minutes, and at 80^3 patches, batch 8 it reached 50 samples/s on an
H100 (chunk 7), a small share of the card. Whether channels-last 3D weights (``channels_last``),
cuDNN's autotuner (``cudnn_benchmark``) or a larger batch buy more samples per GPU minute can only
be measured on the card itself; each variant here is a training config override, so a winner is
adopted by writing the same keys into the config (one place for the setting).

Each variant: a fresh trainer of the config (the same initial weights: one seed), the same
micro-batches built once from the cache (data loading left out), ``--warmup`` steps, then whole
steps (forward, backward, optimiser, EMA) for ``--seconds``, synchronised. Printed: samples/s,
seconds per step, peak accelerator memory, the ratio to the first variant, and the validation loss
at the initial weights (a layout changes no result beyond rounding). Then the data
loader: micro-batches of the config's size with its ``num_workers`` on this machine's CPUs, in
samples/s, so one sees whether the network or the data bounds a chunk.

Usage (on the GPU machine after a chunk, in the same call: ``bash tools/gpu_chunk/train_chunk.sh 3 --speed-probe 8``):
  python -m tools.gpu_chunk.train_speed --config configs/gpu_default.json --cache .cache/gpu_carry/shard --seconds 10
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

# name -> training config overrides; the first is the reference the others are compared with.
VARIANTS: dict[str, dict] = {
    "as configured": {},
    "cudnn_benchmark": {"cudnn_benchmark": True},
    "channels_last": {"channels_last": True},
    "channels_last + cudnn_benchmark": {"channels_last": True, "cudnn_benchmark": True},
    "batch x2 + cudnn_benchmark": {"batch_scale": 2, "cudnn_benchmark": True},
}


def describe_machine(device: torch.device) -> str:
    """What the figures were measured on: the training model card's hardware line, plus the CPU cores
    the data loader has and the versions (benchmarks.common.reporting's description needs SimpleITK,
    which the GPU image lacks)."""
    from MedDiffFMLib.training.export import hardware_description

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    loader = "" if device.type == "cpu" else f"; {cores} usable CPU cores"  # the CPU line already says so
    return (f"Machine: {hardware_description(device, 1)}{loader}; torch {torch.__version__}, Python "
            f"{platform.python_version()}; device {device}.")


def markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_trainer(config: Path, cache: Path, run_dir: Path, overrides: dict, device: Optional[str]):
    """A set-up trainer of ``config`` on ``cache`` with ``overrides`` (``batch_scale`` multiplies the
    batch size); nothing is written but its empty run folder."""
    from MedDiffFMLib.training import TrainConfig, Trainer
    from tools.gpu_chunk.chunk import chunk_shards

    settings = {k: v for k, v in overrides.items() if k != "batch_scale"}
    cfg = TrainConfig.from_file(config, {**settings, "device": device})
    cfg.cache = str(chunk_shards(cache)[0])  # a cache, or a staged chunk's folder of shards
    cfg.run_dir = str(run_dir)
    cfg.batch_size = int(cfg.batch_size * overrides.get("batch_scale", 1))
    cfg.tensorboard = False
    mode = "finetune" if cfg.task else "train"
    trainer = Trainer(cfg, mode, progress="none", export=False)
    trainer.setup()
    return trainer


def measure_variant(trainer, batches: list[dict], warmup: int, seconds: float) -> dict:
    """Whole training steps on ``batches`` (cycled): samples/s, s/step, peak memory and the validation
    loss at the initial weights (None without validation cases)."""
    device = trainer.device
    validation = trainer.validate()  # at the initial weights: the same in every layout, bar rounding
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = 0

    def one_step() -> None:
        nonlocal step
        trainer.forward_backward([batches[step % len(batches)]])
        trainer.optimizer_step()
        step += 1

    for _ in range(warmup):
        one_step()
    _synchronize(device)
    started = time.perf_counter()
    timed = 0
    while timed < 2 or time.perf_counter() - started < seconds:
        one_step()
        timed += 1
        if timed % 4 == 0:
            _synchronize(device)
    _synchronize(device)
    elapsed = time.perf_counter() - started
    batch = int(batches[0]["image"].shape[0])
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"samples_per_s": timed * batch / elapsed, "s_per_step": elapsed / timed, "steps": timed,
            "batch": batch, "peak_gib": peak,
            "val_loss": None if validation is None else float(validation["loss"])}


def measure_loader(trainer, seconds: float) -> dict:
    """Micro-batches from the trainer's data loader (its ``num_workers``), after the first arrives."""
    from MedDiffFMLib.training.dataset import micro_batches

    workers = int(trainer.config.num_workers)
    stream = micro_batches(trainer.dataset, 0, workers)
    first = next(stream)
    batch = int(first["image"].shape[0])
    started = time.perf_counter()
    count = 0
    while count < 2 or time.perf_counter() - started < seconds:
        next(stream)
        count += 1
    elapsed = time.perf_counter() - started
    stream.close()
    return {"workers": workers, "samples_per_s": count * batch / elapsed, "batches": count, "batch": batch}


def table_row(name: str, result: dict, reference: Optional[float]) -> list[str]:
    if "error" in result:
        return [name, result["error"], "–", "–", str(result["batch"]), "–", "–"]
    ratio = "–" if not reference else f"{result['samples_per_s'] / reference:.2f}"
    return [name, f"{result['samples_per_s']:.3g}", ratio, f"{result['s_per_step'] * 1000:.0f}", str(result["batch"]),
            "–" if result["peak_gib"] is None else f"{result['peak_gib']:.2f}",
            "–" if result["val_loss"] is None else f"{result['val_loss']:.5f}"]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="training config (JSON)")
    parser.add_argument("--cache", required=True, type=Path,
                        help="a prepared cache, or a folder of GPU shards (the first is used), with training cases "
                             "(replaces the config's)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: the config's)")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated subset of: {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant (cuDNN tuning, allocator)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per variant")
    parser.add_argument("--batches", type=int, default=4, help="distinct micro-batches cycled through")
    parser.add_argument("--loader-seconds", type=float, default=None,
                        help="seconds to time the data loader (default: --seconds; 0 skips it)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the table (Markdown) to this file, e.g. $OUT/train_speed.md or "
                             "benchmarks/results/train_speed_<machine>.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",")] if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from: {', '.join(VARIANTS)}")

    loader_seconds = args.seconds if args.loader_seconds is None else args.loader_seconds
    rows = []
    loader = None
    machine = None
    with tempfile.TemporaryDirectory(prefix="meddifffm-train-speed-") as tmp:
        for index, name in enumerate(names):
            trainer = build_trainer(args.config, args.cache, Path(tmp) / f"run{index}", VARIANTS[name], args.device)
            if machine is None:
                machine = describe_machine(trainer.device)
                print(f"== Training throughput of {args.config.name} ==\n{machine}", flush=True)
            batches = [trainer.dataset[k] for k in range(max(1, args.batches))]
            try:
                result = measure_variant(trainer, batches, args.warmup, args.seconds)
                print(f"  {name}: {result['samples_per_s']:.3g} samples/s ({result['s_per_step'] * 1000:.0f} ms/step, "
                      f"batch {result['batch']}, {result['steps']} steps)", flush=True)
            except torch.OutOfMemoryError:  # a larger batch may not fit: a row of its own, the others stand
                result = {"error": "out of memory", "batch": int(batches[0]["image"].shape[0])}
                print(f"  {name}: out of memory", flush=True)
            rows.append((name, result))
            if index == 0 and loader_seconds > 0:
                loader = measure_loader(trainer, loader_seconds)
            del trainer, batches
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    reference = rows[0][1].get("samples_per_s")
    table = markdown_table(
        f"Training step throughput ({args.config.name}, cache {args.cache.name})",
        ["variant", "samples/s", "x first row", "ms/step", "batch", "peak GiB", "val loss at the initial weights"],
        [table_row(name, r, reference) for name, r in rows])
    command = "python -m tools.gpu_chunk.train_speed " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = f"Command: `{command}`\n\n{machine}\n\n{table}\n"
    if loader is not None:
        text += (f"\nData loader ({loader['workers']} workers, {loader['batches']} micro-batches of "
                 f"{loader['batch']}): {loader['samples_per_s']:.3g} samples/s.\n")
    print("\n" + text, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

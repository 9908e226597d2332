"""What the compact training state costs: resuming without AdamW's moments (a fresh AdamW and a
linear LR re-warm-up) or with bfloat16 moments, against the uninterrupted run (= exact resume, which
Testing/test_training_loop.py shows to be bit-identical), at a fixed step budget.

Every run draws the same samples (they are a function of the seed and the sample index), so the
phase after the resume is a paired comparison: the same batches, only the optimiser state differs.
Figures: mean training loss over the first 50 steps after the resume and over the last 50, and the
validation loss (EMA weights, fixed crops/time steps/noise) at the end; for several seeds.

Usage: python -m benchmarks.studies.compact_resume --cache .cache/gpu/cache_2mm [--model tiny] [--steps 200 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch

from benchmarks.common import reporting


def _config(args, run_dir: Path, seed: int, max_steps: int, **extra):
    from MedDiffFMLib.training import TrainConfig

    data = {"model": args.model, "cache": str(args.cache), "run_dir": str(run_dir), "seed": seed,
            "max_steps": max_steps, "batch_size": args.batch_size, "lr": args.lr, "warmup_steps": args.warmup,
            "lr_schedule": "constant", "ema_decay": args.ema_decay, "val_every": 0, "val_samples_per_case": 4,
            "checkpoint_every": 10**9, "log_every": 10, "device": "cpu", "threads": args.threads,
            "tensorboard": False, "export": {"storage_dtype": "float16"}}
    data.update(extra)
    return TrainConfig.from_dict(data)


def _phase2(result, first_step: int) -> dict:
    losses = [l for s, l in result.losses if s > first_step]
    return {"first50": float(np.mean(losses[:50])), "last50": float(np.mean(losses[-50:])), "val": result.val_loss}


def run(args) -> list[dict]:
    from MedDiffFMLib.training import Trainer

    s1, s2 = args.steps
    rows = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            torch.manual_seed(seed)
            straight = Trainer(_config(args, tmp / "straight", seed, s1 + s2), progress="none", export=False).run()
            rows.append({"seed": seed, "variant": "uninterrupted (= exact resume)", **_phase2(straight, s1)})
            first = Trainer(_config(args, tmp / "first", seed, s1), progress="none", export=False)
            first.run()
            plain = first.save_compact(tmp / "state_plain")
            with_moments = first.save_compact(tmp / "state_moments", moments=True)
            resumed = Trainer(_config(args, tmp / "m", seed, s1 + s2), resume_compact=with_moments, progress="none",
                              export=False).run()
            rows.append({"seed": seed, "variant": "compact + bf16 moments", **_phase2(resumed, s1)})
            for rewarm in args.rewarm:
                resumed = Trainer(_config(args, tmp / f"r{rewarm}", seed, s1 + s2, rewarm_steps=rewarm),
                                  resume_compact=plain, progress="none", export=False).run()
                rows.append({"seed": seed, "variant": f"compact, fresh AdamW, re-warm {rewarm} steps",
                             **_phase2(resumed, s1)})
            print(f"seed {seed} done", file=sys.stderr)
    return rows


def table(rows: list[dict], args) -> str:
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    lines = [f"Compact resume at step {args.steps[0]}, then {args.steps[1]} steps; model '{args.model}', batch "
             f"{args.batch_size}, lr {args.lr:g} constant, EMA {args.ema_decay:g}; cache {Path(args.cache).name}; "
             f"{args.seeds} seed(s); mean (and range) over seeds.", "",
             "| variant | train loss, first 50 after resume | train loss, last 50 | val loss at the end |",
             "| --- | --- | --- | --- |"]
    for v in variants:
        sel = [r for r in rows if r["variant"] == v]
        cells = []
        for key in ("first50", "last50", "val"):
            vals = np.array([r[key] for r in sel], float)
            cells.append(f"{vals.mean():.4f} ({vals.min():.4f}-{vals.max():.4f})")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="a prepared cache (or a shard)")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--steps", type=int, nargs=2, default=(200, 200), metavar=("BEFORE", "AFTER"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--ema-decay", type=float, default=0.99)
    parser.add_argument("--rewarm", type=int, nargs="+", default=(0, 20, 100))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", type=Path, default=None, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    info = reporting.format_machine(reporting.machine_info("cpu"))
    text = info + "\n\n" + table(run(args), args)
    print(text)
    if args.save:
        args.save.write_text(text + "\n")


if __name__ == "__main__":
    main()

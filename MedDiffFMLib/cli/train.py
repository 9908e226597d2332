"""``meddifffm train CONFIG.json``: pre-train the base model (multi-level sampling, DDP under torchrun)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train (pre-train) the base model from a prepared cache; resumable, time-budgeted, multi-GPU with torchrun"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="training config (JSON; see docs/TRAINING.md and configs/)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    parser.add_argument("--resume-compact", type=Path, default=None, metavar="STATE_DIR",
                        help="continue from a compact training state folder (docs/TRAINING.md, section 8)")
    parser.add_argument("--compact-ema-model", type=Path, default=None, metavar="MODEL_DIR",
                        help="the model folder holding the compact state's EMA (default: the model it names)")
    parser.add_argument("--save-compact", type=Path, default=None, metavar="STATE_DIR",
                        help="also write a compact training state at the end (its EMA is the exported model's)")
    parser.add_argument("--compact-moments", action="store_true",
                        help="keep AdamW's moments in the compact state (4 more bytes per parameter)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-clock budget: stop cleanly with a checkpoint (and export) before it runs out")
    parser.add_argument("--max-steps", type=int, default=None, help="override the config's max_steps")
    parser.add_argument("--run-dir", default=None, help="override the config's run_dir")
    parser.add_argument("--cache", default=None, help="override the config's cache folder")
    parser.add_argument("--device", default=None, help="auto|cpu|cuda|mps (default: the config's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--no-export", action="store_true", help="do not write the model folder at the end")
    parser.add_argument("--export-only", action="store_true", help="export the latest checkpoint's EMA weights and stop")
    parser.add_argument("--export-dir", default=None, help="override the config's export.dir")


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help=HELP, description=HELP + ".")
    add_run_arguments(parser)
    parser.set_defaults(func=lambda args: run(args, "train"))


def run(args: argparse.Namespace, mode: str, extra: dict | None = None) -> None:
    from ..training import TrainConfig, Trainer, export_only
    from .common import finish

    overrides = {"max_steps": args.max_steps, "device": args.device, "threads": args.threads, **(extra or {})}
    config = TrainConfig.from_file(args.config, overrides)
    cwd = Path.cwd()
    if args.run_dir:
        config.run_dir = str((cwd / args.run_dir).resolve())
    if args.cache:
        config.cache = str((cwd / args.cache).resolve())
    if args.export_dir:
        config.export.dir = str((cwd / args.export_dir).resolve())
    _check_outputs(args, config, cwd)
    if args.export_only:
        path = export_only(config, mode)
        finish(args, [path], f"Exported the latest checkpoint of {config.run_dir} to {path}.")
        return
    trainer = Trainer(config, mode, resume=args.resume, resume_compact=args.resume_compact,
                      compact_ema_model=args.compact_ema_model, max_minutes=args.max_minutes, progress=args.progress,
                      export=not args.no_export, cancel=args.cancel)
    result = trainer.run()
    if not trainer.dist.is_main:
        return
    compact = None
    if args.save_compact:
        compact = trainer.save_compact((cwd / args.save_compact).resolve(), ema_model=result.export,
                                       moments=args.compact_moments)
    outputs = [p for p in (result.checkpoint, result.export, compact) if p is not None]
    how = {"finished": "finished", "budget": "stopped by the time budget (continue with --resume)"}.get(
        result.stopped_by, result.stopped_by)
    finish(args, outputs,
           f"Training {how} at step {result.step}/{result.max_steps}: train loss "
           f"{result.train_loss if result.train_loss is None else round(result.train_loss, 4)}, val loss "
           f"{result.val_loss if result.val_loss is None else round(result.val_loss, 4)}. Checkpoint: "
           f"{result.checkpoint}" + (f"; model: {result.export}" if result.export else "")
           + (f"; compact state: {compact}" if compact else "") + ".")


def _check_outputs(args: argparse.Namespace, config, cwd: Path) -> None:
    """The run's output plan before any work (issue 13): the run folder, the model export folder and
    the compact state may not be (or lie inside) an input (config, cache, base model, resumed state),
    nor a file, and their folders must be writable."""
    from ..io.output_plan import FOLDER, plan_outputs

    outputs = [("run folder (run_dir)", Path(config.run_dir), FOLDER)]
    if config.export.dir and not getattr(args, "no_export", False):
        outputs.append(("model export folder (export.dir)", Path(config.export.dir), FOLDER))
    if getattr(args, "save_compact", None):
        outputs.append(("compact state (--save-compact)", (cwd / args.save_compact).resolve(), FOLDER))
    base = Path(config.base_model) if config.base_model and Path(config.base_model).exists() else None
    inputs = [Path(args.config), Path(config.cache), base,
              *(Path(p) for p in (getattr(args, "resume_compact", None), getattr(args, "compact_ema_model", None)) if p)]
    plan_outputs(outputs, inputs)


"""``meddifffm finetune CONFIG.json``: train a task ControlNet (superres, lesion) on a frozen base model."""

from __future__ import annotations

import argparse

from ..models.config import CONTROLNET_TASKS
from .train import add_run_arguments, run

HELP = "fine-tune a ControlNet (super-resolution or lesion) on a frozen base model; same options as train"


def register(subparsers) -> None:
    parser = subparsers.add_parser("finetune", help=HELP, description=HELP + ".")
    add_run_arguments(parser)
    parser.add_argument("--task", choices=list(CONTROLNET_TASKS), default=None, help="override the config's task")
    parser.add_argument("--base", default=None, help="override the config's base_model (name or folder)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    base = args.base
    if base and ("/" in base or base.startswith(".")):
        from pathlib import Path

        base = str(Path(base).expanduser().resolve())
    run(args, "finetune", {"task": args.task, "base_model": base})

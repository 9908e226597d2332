"""The command-line options every benchmark shares (``--model``, ``--config``, ``--cases``, ``--quick``,
``--save``, ``--device``, ``--threads``; ``--overlap`` and ``--precision`` for the quality scripts)."""

from __future__ import annotations

import argparse
from typing import Sequence

from MedDiffFMLib.device import PRECISION_CHOICES


def add_common_args(parser: argparse.ArgumentParser, default_cases: Sequence[str], quick_cases: Sequence[str]) -> None:
    parser.add_argument("--model", default=None,
                        help="model folder or name (default: the installed default model from the registry)")
    parser.add_argument("--config", default=None,
                        help="no installed model: use a RANDOM model of this config (tiny, default, paper or JSON); "
                             "figures are then marked untrained")
    parser.add_argument("--cases", default=None,
                        help=f"comma-separated cases (default: {','.join(default_cases)}; "
                             f"--quick: {','.join(quick_cases)}); known: lung_tumour_5mm, abdomen_pelvis_3mm, "
                             "cta_aorta_crop, lidc_chest_1mm, chest_upper_abdomen, STS_001..STS_036")
    parser.add_argument("--quick", action="store_true", help="fewer and smaller cases (minutes, not tens of minutes)")
    parser.add_argument("--save", action="store_true", help="also write the tables to benchmarks/results/")
    parser.add_argument("--save-name", default=None,
                        help="file stem under benchmarks/results/ (default: the script name, + _quick with --quick)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps for MedDiffFM")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """``--overlap`` and ``--precision``: MedDiffFM's speed settings, to check that one leaves quality
    unchanged (read back by :func:`engine_options`)."""
    parser.add_argument("--overlap", type=float, default=None,
                        help="patch overlap for MedDiffFM (default: the library's); e.g. 0.5 = the naive baseline's")
    parser.add_argument("--precision", default=None, choices=PRECISION_CHOICES,
                        help="MedDiffFM's arithmetic (default: the library's auto); float32 = before issue 40's bf16")


def engine_options(args: argparse.Namespace) -> dict:
    """Engine options given on the command line (only those set)."""
    options = {}
    if getattr(args, "overlap", None) is not None:
        options["overlap"] = float(args.overlap)
    if getattr(args, "precision", None) is not None:
        options["precision"] = args.precision
    return options


def setup_threads(args: argparse.Namespace) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(int(args.threads))



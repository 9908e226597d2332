"""``meddifffm denoise IN OUT``: zero-shot DiffPIR denoising."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..tasks.denoise import denoise_image
from ..engine import Engine
from ..tasks.registry import task_entry
from . import common
from .task_arguments import add_task_options, task_options
from .task_helpers import TaskProgress

ENTRY = task_entry("denoise")

HELP = "remove noise from a CT (zero-shot DiffPIR with the foundation model)"


def register(subparsers) -> None:
    parser = subparsers.add_parser("denoise", help=HELP, description=HELP)
    parser.add_argument("input", type=Path, help="CT volume (NIfTI, NRRD, MHA or a DICOM folder)")
    parser.add_argument("output", type=Path, help="where to write the denoised CT")
    add_task_options(parser, ENTRY)
    parser.add_argument("--series", default=None, help="DICOM SeriesInstanceUID when a folder holds several series")
    common.add_output_arguments(parser)
    common.add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    options = task_options(args, ENTRY)
    common.check_before_work(args, [("output", args.output, common.VOLUME)], [args.input], [options], role=ENTRY.role)
    image = common.read_task_input(args)
    engine = Engine(common.engine_options(args), role=ENTRY.role)
    result = denoise_image(image, engine, options, progress=TaskProgress(args),
                           cancel=args.cancel)
    with common.Outputs(args, [args.input]) as outputs:
        outputs.volume(result.image, args.output)
        outputs.preview(image, result.image, ("input", "denoised"))
    if result.steps == 0:
        summary = (f"Nothing to denoise in {args.input} (noise ~{result.noise_hu:.1f} HU, strength {options.strength:g}): "
                   f"wrote an unchanged copy to {args.output}.")
    else:
        summary = (f"Denoised {args.input} -> {args.output} (noise ~{result.noise_hu:.1f} HU, "
                   f"{result.steps} steps from t={result.start_step}, model {engine.model_name}).")
    common.finish(args, outputs.paths, summary)

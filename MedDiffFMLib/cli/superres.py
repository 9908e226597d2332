"""``meddifffm superres IN OUT``: thick slices to thin (superres ControlNet + DiffPIR consistency)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import Engine
from ..tasks.registry import task_entry
from ..tasks.superres import super_resolve_image
from . import common
from .task_arguments import add_task_options, task_options
from .task_helpers import TaskProgress

ENTRY = task_entry("superres")

HELP = "super-resolve thick slices to thin ones (z only; superres ControlNet + data consistency)"
DESCRIPTION = (
    "Split every thick slice into F thin ones. The output keeps the input's x/y grid, direction and physical "
    "extent with z spacing / F (its origin moves by -(F-1)/(2F) z spacing along the slice axis so each thin "
    "slice lies inside its thick slice; --keep-origin keeps the input origin). Averaging every F consecutive "
    "output slices gives back the input slice (an exact final projection). Needs a 'superres' ControlNet model."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("superres", help=HELP, description=DESCRIPTION)
    parser.add_argument("input", type=Path, help="thick-slice CT (NIfTI, NRRD, MHA or a DICOM folder)")
    parser.add_argument("output", type=Path, help="where to write the thin-slice CT (float32 HU)")
    add_task_options(parser, ENTRY)
    parser.add_argument("--series", default=None, help="DICOM SeriesInstanceUID when a folder holds several series")
    common.add_output_arguments(parser)
    common.add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    options = task_options(args, ENTRY)
    common.check_before_work(args, [("output", args.output, common.VOLUME)], [args.input], [options],
                             role=ENTRY.role, expect_task=ENTRY.expect_task)
    image = common.read_task_input(args)
    engine = Engine(common.engine_options(args), role=ENTRY.role, expect_task=ENTRY.expect_task)
    result = super_resolve_image(image, engine, options, progress=TaskProgress(args), cancel=args.cancel)
    with common.Outputs(args, [args.input]) as outputs:
        outputs.volume(result.image, args.output)
        outputs.preview(image, result.image, ("input (thick)", "super-resolved"))
    common.finish(args, outputs.paths, f"Super-resolved {args.input} -> {args.output}: {result.factor}x in z, "
                  f"z spacing {result.image.GetSpacing()[2]:.3g} mm (slice averages within "
                  f"{result.max_slice_error_hu:.2g} HU of the input; model {engine.model_name}).")

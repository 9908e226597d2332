"""``meddifffm inpaint IN MASK OUT``: regenerate the masked region as healthy tissue (RePaint)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import Engine
from ..tasks.inpaint import inpaint_image
from ..tasks.registry import TaskEntry, task_entry
from . import common
from .task_arguments import add_task_options, task_options
from .task_helpers import TaskProgress

HELP = "inpaint: regenerate the voxels inside a mask as healthy tissue (RePaint, base model)"
DESCRIPTION = (
    "Regenerate the voxels inside MASK as plausible tissue with the foundation model (RePaint: the rest of the "
    "image steers every step). By default the mask starts from a smooth fill of the tissue around it, noised to "
    "half the schedule, so it keeps its surroundings' intensity (--init noise: from pure noise). Every voxel "
    "outside the mask is bit-identical to the input (same pixel type). "
    "A mask on another grid is resampled onto the image by physical position (nearest neighbour)."
)


def register_masked(subparsers, name: str, help_text: str, description: str, run) -> None:
    """The subcommand of a masked task (inpaint, lesion): IN MASK OUT plus the registry's options."""
    parser = subparsers.add_parser(name, help=help_text, description=description)
    parser.add_argument("input", type=Path, help="CT volume (NIfTI, NRRD, MHA or a DICOM folder)")
    parser.add_argument("mask", type=Path, help="mask / label volume (non-zero = region; any grid)")
    parser.add_argument("output", type=Path, help="where to write the result (input's pixel type)")
    add_task_options(parser, task_entry(name))
    parser.add_argument("--series", default=None, help="DICOM SeriesInstanceUID when a folder holds several series")
    common.add_output_arguments(parser)
    common.add_engine_arguments(parser)
    parser.set_defaults(func=run)


def register(subparsers) -> None:
    register_masked(subparsers, "inpaint", HELP, DESCRIPTION, run)


def run_masked(args: argparse.Namespace, task, entry: TaskEntry, title: str) -> None:
    """Check paths, read the CT and the mask, load the model, run ``task`` and write the result."""
    options = task_options(args, entry)
    common.check_before_work(args, [("output", args.output, common.VOLUME)], [args.input, args.mask], [options],
                             role=entry.role, expect_task=entry.expect_task)
    image = common.read_task_input(args)
    mask = common.read_input(args.mask, name="mask")
    engine = Engine(common.engine_options(args), role=entry.role, expect_task=entry.expect_task)
    result = task(image, mask, engine, options, progress=TaskProgress(args), cancel=args.cancel)
    with common.Outputs(args, [args.input, args.mask]) as outputs:
        outputs.volume(result.image, args.output)
        outputs.preview(image, result.image, ("input", title))
    common.finish(args, outputs.paths, f"{args.command}: {result.mask_voxels} voxels of {args.input} regenerated -> "
                  f"{args.output} ({result.steps} steps from t={result.start_step}, model {engine.model_name}).")


def run(args: argparse.Namespace) -> None:
    run_masked(args, inpaint_image, task_entry("inpaint"), "inpainted")

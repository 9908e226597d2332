"""``meddifffm lesion IN MASK OUT``: generate a lesion in the shape of a mask (lesion ControlNet + RePaint)."""

from __future__ import annotations

import argparse

from ..tasks.engine import Engine
from ..tasks.lesion import ROLE, LesionOptions, generate_lesion_image
from . import common
from .inpaint import options_from_args as _regenerate_options
from .inpaint import register_masked, run_masked
from .task_helpers import check_outputs

HELP = "generate a lesion inside a mask (lesion ControlNet + RePaint)"
DESCRIPTION = (
    "Draw a lesion shaped like MASK with a 'lesion' ControlNet conditioned on the mask; RePaint keeps the rest of "
    "the image, and every voxel outside the mask is bit-identical to the input (same pixel type). A mask on "
    "another grid is resampled onto the image by physical position (nearest neighbour)."
)


def options_from_args(args: argparse.Namespace) -> LesionOptions:
    return _regenerate_options(args, LesionOptions)


def register(subparsers) -> None:
    register_masked(subparsers, "lesion", HELP, DESCRIPTION, run)


def run(args: argparse.Namespace) -> None:
    check_outputs([args.output], [args.input, args.mask])
    engine = Engine(common.engine_options(args), role=ROLE, expect_task=ROLE)
    run_masked(args, generate_lesion_image, engine, options_from_args(args), "lesion generated in")

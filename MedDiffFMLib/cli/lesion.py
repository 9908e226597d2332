"""``meddifffm lesion IN MASK OUT``: generate a lesion in the shape of a mask (lesion ControlNet + RePaint)."""

from __future__ import annotations

import argparse

from ..tasks.lesion import generate_lesion_image
from ..tasks.registry import task_entry
from .inpaint import register_masked, run_masked

HELP = "generate a lesion inside a mask (lesion ControlNet + RePaint)"
DESCRIPTION = (
    "Draw a lesion shaped like MASK with a 'lesion' ControlNet conditioned on the mask; RePaint keeps the rest of "
    "the image, and every voxel outside the mask is bit-identical to the input (same pixel type). A mask on "
    "another grid is resampled onto the image by physical position (nearest neighbour)."
)


def register(subparsers) -> None:
    register_masked(subparsers, "lesion", HELP, DESCRIPTION, run)


def run(args: argparse.Namespace) -> None:
    run_masked(args, generate_lesion_image, task_entry("lesion"), "lesion generated")

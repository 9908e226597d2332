"""``meddifffm superres IN OUT``: thick slices to thin (superres ControlNet + DiffPIR consistency)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..preview import write_preview
from ..tasks.engine import Engine
from ..tasks.superres import DEFAULT_SUPERRES_STEPS, ROLE, SuperResOptions, super_resolve_image
from . import common
from .task_helpers import TaskProgress, add_ct_input_arguments

HELP = "super-resolve thick slices to thin ones (z only; superres ControlNet + data consistency)"
DESCRIPTION = (
    "Split every thick slice into F thin ones. The output keeps the input's x/y grid, direction and physical "
    "extent with z spacing / F (its origin moves by -(F-1)/(2F) z spacing along the slice axis so each thin "
    "slice lies inside its thick slice; --keep-origin keeps the input origin). Averaging every F consecutive "
    "output slices gives back the input slice (an exact final projection). Needs a 'superres' ControlNet model."
)


def add_options(parser: argparse.ArgumentParser) -> None:
    """The super-resolution options (shared with ``meddifffm batch superres``)."""
    group = parser.add_argument_group("super-resolution")
    target = group.add_mutually_exclusive_group()
    target.add_argument("--factor-z", type=int, default=None, help="thin slices per thick slice (integer >= 2)")
    target.add_argument("--spacing", type=float, default=None,
                        help="target z spacing in mm (the input z spacing must be a multiple of it)")
    group.add_argument("--lambda", dest="lam", type=float, default=10.0, help="DiffPIR lambda (default 10)")
    group.add_argument("--noise-hu", type=float, default=None, help="noise std of the input in HU (default: estimated)")
    group.add_argument("--start-step", type=int, default=None,
                       help="start from the interpolated input noised to this step (default: pure noise)")
    group.add_argument("--keep-origin", action="store_true", help="keep the input origin (see the description)")
    common.add_sampling_arguments(parser, default_steps=DEFAULT_SUPERRES_STEPS)
    add_ct_input_arguments(parser)


def options_from_args(args: argparse.Namespace) -> SuperResOptions:
    return SuperResOptions(factor_z=args.factor_z, spacing=args.spacing, steps=args.steps, start_step=args.start_step,
                           lam=args.lam, noise_hu=args.noise_hu, seed=args.seed, region=args.region,
                           keep_origin=args.keep_origin, allow_non_hu=args.allow_non_hu)


def register(subparsers) -> None:
    parser = subparsers.add_parser("superres", help=HELP, description=DESCRIPTION)
    parser.add_argument("input", type=Path, help="thick-slice CT (NIfTI, NRRD, MHA or a DICOM folder)")
    parser.add_argument("output", type=Path, help="where to write the thin-slice CT (float32 HU)")
    add_options(parser)
    parser.add_argument("--series", default=None, help="DICOM SeriesInstanceUID when a folder holds several series")
    common.add_output_arguments(parser)
    common.add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    options = options_from_args(args)
    common.check_before_work(args, [("output", args.output, common.VOLUME)], [args.input], [options],
                             role=ROLE, expect_task=ROLE)
    image = common.read_input(args.input, args.series)
    engine = Engine(common.engine_options(args), role=ROLE, expect_task=ROLE)
    result = super_resolve_image(image, engine, options, progress=TaskProgress(args), cancel=args.cancel)
    outputs = [common.write_output(result.image, args.output, [args.input])]
    if args.preview:
        outputs.append(write_preview(image, result.image, args.preview, titles=("input (thick)", "super-resolved")))
    common.finish(args, outputs, f"Super-resolved {args.input} -> {args.output}: {result.factor}x in z, "
                  f"z spacing {result.image.GetSpacing()[2]:.3g} mm (slice averages within "
                  f"{result.max_slice_error_hu:.2g} HU of the input; model {engine.model_name}).")

"""``meddifffm denoise IN OUT``: zero-shot DiffPIR denoising."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..preview import write_preview
from ..tasks.denoise import DEFAULT_DENOISE_STEPS, DenoiseOptions, denoise_image
from ..tasks.engine import Engine
from . import common
from .task_helpers import TaskProgress, add_ct_input_arguments

HELP = "remove noise from a CT (zero-shot DiffPIR with the foundation model)"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The denoising options (shared with ``meddifffm batch denoise``)."""
    parser.add_argument("--strength", type=float, default=1.0,
                        help="0..1: fraction of the noise to remove (1 = all, 0.5 = halfway; default 1)")
    parser.add_argument("--noise-hu", type=float, default=None, help="noise std of the input in HU (default: estimated)")
    parser.add_argument("--lambda", dest="lam", type=float, default=10.0, help="DiffPIR lambda (default 10)")
    common.add_sampling_arguments(parser, default_steps=DEFAULT_DENOISE_STEPS)
    add_ct_input_arguments(parser)


def options_from_args(args: argparse.Namespace) -> DenoiseOptions:
    return DenoiseOptions(strength=args.strength, steps=args.steps, noise_hu=args.noise_hu, lam=args.lam,
                          seed=args.seed, region=args.region, allow_non_hu=args.allow_non_hu)


def register(subparsers) -> None:
    parser = subparsers.add_parser("denoise", help=HELP, description=HELP)
    parser.add_argument("input", type=Path, help="CT volume (NIfTI, NRRD, MHA or a DICOM folder)")
    parser.add_argument("output", type=Path, help="where to write the denoised CT")
    add_options(parser)
    parser.add_argument("--series", default=None, help="DICOM SeriesInstanceUID when a folder holds several series")
    common.add_output_arguments(parser)
    common.add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    options = options_from_args(args)
    common.check_before_work(args, [("output", args.output, common.VOLUME)], [args.input], [options], role="base")
    image = common.read_input(args.input, args.series)
    engine = Engine(common.engine_options(args), role="base")
    result = denoise_image(image, engine, options, progress=TaskProgress(args),
                           cancel=args.cancel)
    outputs = [common.write_output(result.image, args.output, [args.input])]
    if args.preview:
        outputs.append(write_preview(image, result.image, args.preview, titles=("input", "denoised")))
    common.finish(args, outputs, f"Denoised {args.input} -> {args.output} (noise ~{result.noise_hu:.1f} HU, "
                  f"{result.steps} steps from t={result.start_step}, model {engine.model_name}).")

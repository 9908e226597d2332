"""``meddifffm anomaly IN OUT_MAP``: zero-shot anomaly map (noise to t = 950, reconstruct, difference)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..tasks.anomaly import anomaly_map_image
from ..engine import Engine
from ..tasks.registry import task_entry
from . import common
from .task_arguments import add_task_options, task_options
from .task_helpers import TaskProgress

ENTRY = task_entry("anomaly")

HELP = "map anomalies: |input - healthy reconstruction| in HU (zero-shot, foundation model)"
DESCRIPTION = (
    "Noise the CT to a large diffusion step (paper: 950 of 1000), reconstruct a 'healthy' image with the "
    "foundation model and write the anomaly map: the absolute difference input - reconstruction in HU "
    "(float32, on the input grid), smoothed by a Gaussian of --smooth-mm mm (standard deviation) and "
    "averaged over --samples reconstructions. Voxels outside the model's HU window get 0."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("anomaly", help=HELP, description=DESCRIPTION)
    parser.add_argument("input", type=Path, help="CT volume (NIfTI, NRRD, MHA or a DICOM folder)")
    parser.add_argument("output", type=Path, help="where to write the anomaly map (float32, HU of absolute difference)")
    parser.add_argument("--mask-out", type=Path, default=None, help="also write the binary mask map >= --threshold")
    parser.add_argument("--healthy-out", type=Path, default=None, help="also write the healthy reconstruction (HU)")
    add_task_options(parser, ENTRY)
    parser.add_argument("--series", default=None, help="DICOM SeriesInstanceUID when a folder holds several series")
    common.add_output_arguments(parser)
    common.add_engine_arguments(parser)
    parser.set_defaults(func=run)


# The extra outputs, by their name in the task registry's outputs -> the option that asks for them
# (``--server`` asks the server for these).
EXTRA_OUTPUTS = {"mask": "mask_out", "healthy": "healthy_out"}


def check_arguments(args: argparse.Namespace) -> None:
    """The checks between options that argparse cannot express (also run before a ``--server`` job)."""
    from ..errors import InputError

    if args.mask_out is not None and args.threshold is None:
        raise InputError("--mask-out needs --threshold (HU of absolute difference, e.g. 100).")


def run(args: argparse.Namespace) -> None:
    check_arguments(args)
    options = task_options(args, ENTRY)
    common.check_before_work(args, [("output", args.output, common.VOLUME), ("--mask-out", args.mask_out, common.VOLUME),
                                    ("--healthy-out", args.healthy_out, common.VOLUME)], [args.input], [options],
                             role=ENTRY.role)
    image = common.read_task_input(args)
    engine = Engine(common.engine_options(args), role=ENTRY.role)
    progress = TaskProgress(args)
    result = anomaly_map_image(image, engine, options, progress=progress, cancel=args.cancel)
    with common.Outputs(args, [args.input]) as outputs:
        outputs.volume(result.anomaly_map, args.output)
        outputs.volume(result.mask, args.mask_out)
        outputs.volume(result.healthy, args.healthy_out)
        outputs.preview(image, result.healthy, ("input", "healthy reconstruction"))
    common.finish(args, outputs.paths, f"Anomaly map of {args.input} -> {args.output} (score {result.score:.1f} HU = 99th "
                  f"percentile; {result.steps} steps from t={result.start_step}, model {engine.model_name}).")

"""``meddifffm anomaly IN OUT_MAP``: zero-shot anomaly map (healthy reconstructions, structure-normalised residual)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..tasks.anomaly import anomaly_map_image, default_threshold
from ..engine import Engine
from ..tasks.registry import task_entry
from . import common
from .task_arguments import add_task_options, task_options
from .task_helpers import TaskProgress

ENTRY = task_entry("anomaly")

HELP = "map anomalies: where the CT differs from the model's healthy reconstructions (zero-shot)"
DESCRIPTION = (
    "Reconstruct 'healthy' images with the foundation model and write the anomaly map (float32, on the input "
    "grid). Default --method ensemble: the CT is noised to moderate levels (250 and 500 of 1000) and "
    "reconstructed; each residual |input - reconstruction| is divided by the residual healthy tissue of the same "
    "structure (HU class and local edge strength) gives, from the model's calibration statistics, then "
    "median-filtered and kept inside the eroded body: 1 = a typical healthy voxel, the calibrated threshold "
    "(used by --mask-out without --threshold) is the value 1 % of healthy body voxels exceed. --method residual "
    "is the paper's map: |input - reconstruction| in HU from t = 950 (with --steps 20, the former default), "
    "smoothed by --smooth-mm; its mask needs --threshold in HU. Voxels outside the model's HU window get 0."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("anomaly", help=HELP, description=DESCRIPTION)
    parser.add_argument("input", type=Path, help="CT volume (NIfTI, NRRD, MHA or a DICOM folder)")
    parser.add_argument("output", type=Path, help="where to write the anomaly map (float32)")
    parser.add_argument("--mask-out", type=Path, default=None,
                        help="also write the binary mask map >= threshold (--threshold, or the model's calibrated one)")
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

    if args.mask_out is not None and args.threshold is None and getattr(args, "method", "ensemble") == "residual":
        raise InputError("--mask-out with --method residual needs --threshold (HU of absolute difference, e.g. 100).")


def run(args: argparse.Namespace) -> None:
    from ..errors import InputError

    check_arguments(args)
    options = task_options(args, ENTRY)
    common.check_before_work(args, [("output", args.output, common.VOLUME), ("--mask-out", args.mask_out, common.VOLUME),
                                    ("--healthy-out", args.healthy_out, common.VOLUME)], [args.input], [options],
                             role=ENTRY.role)
    image = common.read_task_input(args)
    engine = Engine(common.engine_options(args), role=ENTRY.role)
    if args.mask_out is not None and args.threshold is None and default_threshold(engine) is None:
        raise InputError(f"--mask-out needs --threshold: model '{engine.model_name}' ships no anomaly calibration "
                         "(make one with `meddifffm calibrate-anomaly`).")
    progress = TaskProgress(args)
    result = anomaly_map_image(image, engine, options, progress=progress, cancel=args.cancel)
    with common.Outputs(args, [args.input]) as outputs:
        outputs.volume(result.anomaly_map, args.output)
        outputs.volume(result.mask, args.mask_out)
        outputs.volume(result.healthy, args.healthy_out)
        outputs.preview(image, result.healthy, ("input", "healthy reconstruction"))
    unit = "HU" if result.method == "residual" else "x healthy"
    cut = "" if result.threshold is None else f"; mask at >= {result.threshold:.3g}"
    common.finish(args, outputs.paths, f"Anomaly map ({result.method}) of {args.input} -> {args.output} (score "
                  f"{result.score:.3g} {unit} = 99th percentile{cut}; {result.steps} step(s) from up to "
                  f"t={result.start_step}, model {engine.model_name}).")

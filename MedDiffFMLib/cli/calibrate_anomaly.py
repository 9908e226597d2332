"""``meddifffm calibrate-anomaly CT...``: the anomaly map's healthy statistics, written into the model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import Engine
from ..models.weights import add_model_files
from ..tasks.anomaly_calibration import CALIBRATION_FILE, body_centred_crop, calibrate
from . import common
from .task_helpers import TaskProgress

HELP = "make the anomaly map's healthy statistics and default threshold from lesion-free CTs (into the model folder)"
DESCRIPTION = (
    "Reconstruct each lesion-free CT from the anomaly map's noise levels with the model (--model), tabulate the "
    "median residual healthy tissue gives per structure (HU class x local edge strength), and take as the "
    f"default threshold the map value that 1 % of these healthy voxels (inside the eroded body) exceed. The "
    f"result is written as {CALIBRATION_FILE} into the model folder and listed with its sha256 in the folder's "
    "manifest (the weights are not touched). Use CTs the model trained on or held out, but without lesions; the "
    "anomaly map then needs no threshold from the user."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("calibrate-anomaly", help=HELP, description=DESCRIPTION)
    parser.add_argument("inputs", type=Path, nargs="+", help="lesion-free CT volumes (NIfTI, NRRD, MHA or DICOM folders)")
    parser.add_argument("--crop-mm", type=float, default=0.0,
                        help="use a box of this size (mm) around each body's centre (0 = the whole CT; keeps CPU "
                        "time affordable)")
    parser.add_argument("--region", default=None, help="body region of every input (default: guessed per input)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the reconstructions")
    common.add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..errors import InputError

    if args.crop_mm < 0:
        raise InputError(f"--crop-mm must be >= 0 (got {args.crop_mm}).")
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        raise InputError(f"Input(s) not found: {', '.join(missing)}. Pass existing lesion-free CT volumes.")
    engine = Engine(common.engine_options(args), role="base")
    images = []
    for path in args.inputs:
        image = common.read_input(path)
        images.append((path.name, body_centred_crop(image, args.crop_mm) if args.crop_mm > 0 else image))
    calibration = calibrate(images, engine, region=args.region, seed=args.seed, progress=TaskProgress(args),
                            cancel=args.cancel)
    folder = engine.loaded.files.path
    add_model_files(folder, {CALIBRATION_FILE: (calibration.to_json() + "\n").encode()})
    print(f"Anomaly calibration of '{engine.model_name}' from {len(images)} healthy CT(s) -> {folder / CALIBRATION_FILE} "
          f"(listed in manifest.json); default threshold {calibration.threshold:.3g} (1 % of healthy body voxels "
          f"exceed it).")

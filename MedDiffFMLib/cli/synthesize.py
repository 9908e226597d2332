"""``meddifffm synthesize OUT --region R``: sample a CT from noise (region, optional anatomy labels)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import Engine
from ..tasks.registry import task_entry
from ..tasks.synthesize import check_anatomy_conditioning, synthesize_image
from . import common
from .task_arguments import add_task_options, task_options
from .task_helpers import TaskProgress

ENTRY = task_entry("synthesize")

HELP = "synthesise a CT from noise for a body region (optionally shaped by an anatomy label map)"
DESCRIPTION = (
    "Sample a CT (int16 HU) from pure noise, conditioned on the body region and, with --anatomy and a model "
    "trained with anatomy channels, on an anatomy label map (label c = structure c). The output grid is the "
    "label map's, else --like's, else --size voxels at --spacing mm (default: one model patch)."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("synthesize", help=HELP, description=DESCRIPTION)
    parser.add_argument("output", type=Path, help="where to write the synthetic CT (int16 HU)")
    add_task_options(parser, ENTRY)
    grid = parser.add_argument_group("output grid (one of)")
    grid.add_argument("--anatomy", type=Path, default=None,
                      help="anatomy label map: condition and output grid; only for a model trained with anatomy "
                           "channels (the shipped base has none: `meddifffm info` lists each model's conditions)")
    grid.add_argument("--like", type=Path, default=None, help="reference image whose grid the output takes")
    grid.add_argument("--size", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None, help="output size in voxels")
    grid.add_argument("--spacing", type=float, nargs="+", metavar="MM", default=None,
                      help="output spacing in mm: one number or three (x y z), with --size")
    common.add_output_arguments(parser)
    common.add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    options = task_options(args, ENTRY)
    files = common.check_before_work(args, [("output", args.output, common.VOLUME)], [args.anatomy, args.like],
                                     [options], role=ENTRY.role)
    if args.anatomy is not None:
        check_anatomy_conditioning(files.model_config, files.name)
    anatomy = common.read_input(args.anatomy, name="anatomy label map") if args.anatomy is not None else None
    like = common.read_input(args.like, name="reference image") if args.like is not None else None
    engine = Engine(common.engine_options(args), role=ENTRY.role)
    result = synthesize_image(engine, options, anatomy=anatomy, like=like,
                              progress=TaskProgress(args), cancel=args.cancel)
    with common.Outputs(args, [args.anatomy, args.like]) as outputs:
        outputs.volume(result.image, args.output)
        before = like if like is not None else result.image
        outputs.preview(before, result.image, ("reference" if like is not None else "synthetic", "synthetic"))
    common.finish(args, outputs.paths, f"Synthesised a {result.region} CT {result.image.GetSize()} -> {args.output} "
                  f"({result.steps} steps, anatomy {'used' if result.anatomy_used else 'not used'}, "
                  f"model {engine.model_name}).")

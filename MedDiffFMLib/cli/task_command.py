"""``meddifffm <task> ...``: the one command builder for every task of the registry.

Each :class:`~MedDiffFMLib.tasks.registry.TaskEntry` gives a subcommand: its path arguments
(``input``, ``mask``, ``output``), its extra outputs (``--mask-out``...), its options and the
command's own arguments, ``--series`` when it reads a CT, ``--preview`` and the model and device
options. Running it checks everything before any work (options, the entry's own checks, every
output path, the model), reads the inputs, runs the entry's runner, writes every output together
or none, and prints the entry's summary line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional

import SimpleITK as sitk

from ..engine import Engine
from ..tasks.registry import TASKS, Finished, TaskEntry, task_entry
from ..tasks.task_entry import MASK_HELP
from . import common
from .task_arguments import add_command_arguments, add_task_options, task_options
from .task_helpers import TaskProgress


def register_all(subparsers, names: Optional[List[str]] = None) -> None:
    """Register the subcommand of every task named (default: every task of the registry)."""
    for name in names if names is not None else list(TASKS):
        register(subparsers, task_entry(name))


def register(subparsers, entry: TaskEntry) -> None:
    """The subcommand of ``entry``."""
    parser = subparsers.add_parser(entry.name, help=entry.help, description=entry.description or entry.help)
    helps = {"input": entry.input_help, "mask": MASK_HELP, "output": entry.output_help}
    for name in entry.positionals:
        parser.add_argument(name, type=Path, help=helps[name])
    for extra in entry.extra_outputs:
        parser.add_argument(extra.flag, type=Path, default=None, help=extra.help)
    add_task_options(parser, entry)
    add_command_arguments(parser, entry)
    if "input" in entry.positionals:
        parser.add_argument("--series", default=None, help="DICOM SeriesInstanceUID when a folder holds several series")
    common.add_output_arguments(parser)
    common.add_engine_arguments(parser)
    parser.set_defaults(func=run)


def input_paths(args: argparse.Namespace, entry: TaskEntry) -> Dict[str, Optional[Path]]:
    """Every input file of the command by name: its path arguments and its ``path`` options."""
    paths = {name: getattr(args, name) for name in entry.positionals if name != "output"}
    paths.update({a.field: getattr(args, a.field, None) for a in entry.command_arguments if a.kind == "path"})
    return paths


def extra_output_paths(args: argparse.Namespace, entry: TaskEntry) -> Dict[str, Path]:
    """The extra outputs asked for, by their runner name."""
    return {extra.name: getattr(args, extra.dest) for extra in entry.extra_outputs
            if getattr(args, extra.dest, None) is not None}


def planned_outputs(args: argparse.Namespace, entry: TaskEntry) -> list:
    """The output plan: (label, path, kind) of the main output and every extra output option."""
    return [("output", args.output, common.VOLUME)] + [
        (extra.flag, getattr(args, extra.dest, None), common.VOLUME) for extra in entry.extra_outputs]


def run(args: argparse.Namespace) -> None:
    entry = task_entry(args.command)
    if entry.check_arguments is not None:
        entry.check_arguments(args)
    options = task_options(args, entry)
    paths = input_paths(args, entry)
    files = common.check_before_work(args, planned_outputs(args, entry), list(paths.values()), [options],
                                     role=entry.role, expect_task=entry.expect_task)
    if entry.check_model is not None:
        entry.check_model(args, files)
    inputs = _read_inputs(args, entry, paths)
    engine = Engine(common.engine_options(args), role=entry.role, expect_task=entry.expect_task)
    done = entry.run(engine, inputs, options, TaskProgress(args), args.cancel)
    extras = extra_output_paths(args, entry)
    with common.Outputs(args, list(paths.values())) as outputs:
        outputs.volume(done.images[""], args.output)
        for extra in entry.extra_outputs:
            outputs.volume(done.images.get(extra.name), extras.get(extra.name))
        if getattr(args, "preview", None) is not None:
            outputs.preview(*entry.preview(inputs, done.images))
    finished = Finished(entry.name, {**paths, "output": args.output}, options, done.result, engine.model_name)
    common.finish(args, outputs.paths, entry.summary(finished))


def _read_inputs(args: argparse.Namespace, entry: TaskEntry, paths: Dict[str, Optional[Path]]) -> Dict[str, sitk.Image]:
    """The input images, in the order the command names them; the CT with ``--series`` and the
    disk-space check of the outputs (:func:`common.read_task_input`)."""
    images = {}
    for name, path in paths.items():
        if path is None:
            continue
        if name == "input":
            images[name] = common.read_task_input(args)
        else:
            images[name] = common.read_input(path, name=entry.input_label(name))
    return images

"""``meddifffm batch TASK --inputs DIR|GLOB|LIST.txt --out DIR``: one task over many volumes.

The model is loaded once. Outputs are ``<case stem>_<task>.nii.gz`` (``--suffix``, ``--format``);
existing outputs are skipped unless ``--overwrite``; a failing case is reported and the batch goes
on, then exits with code 2 listing the failures. ``--progress json`` prints
``{"stage": "batch", "step": k, "total": n}`` per finished case and each case's own progress lines
with a ``"case"`` field. Several GPUs: ``torchrun --standalone --nproc_per_node N -m MedDiffFMLib.cli
batch ...`` (rank r takes cases i with i % N == r, on cuda:LOCAL_RANK); see
:mod:`MedDiffFMLib.tasks.batch`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import InputError, MedDiffFMError
from ..io.output_plan import FOLDER, VOLUME, plan_outputs
from ..progress import ProgressEvent
from ..tasks.batch import (can_gather, case_outputs, distributed_rank, drop_own_outputs, find_cases, gather_results,
                           merge_results, output_path, run_batch, cases_for_rank)
from ..engine import Engine
from ..tasks.registry import TASKS, task_entry
from ..tasks.synthesize import check_anatomy_conditioning
from . import common
from .task_arguments import add_task_options, task_options
from .task_helpers import TaskProgress

HELP = "run one task over many volumes (one model load; resumable; multi-GPU with torchrun)"
DESCRIPTION = (
    "Run one task over many volumes with one model load: meddifffm batch TASK --inputs DIR|GLOB|LIST.txt --out DIR "
    "[task options]. Outputs are <case stem>_<task>.nii.gz (--suffix, --format); existing outputs are skipped "
    "unless --overwrite; a failing case is reported, the batch goes on and exits with code 2 listing the "
    "failures. Inpaint/lesion take --masks DIR (masks named like the cases). Several GPUs: torchrun --standalone "
    "--nproc_per_node N -m MedDiffFMLib.cli batch ... (rank r takes cases i with i % N == r, on cuda:LOCAL_RANK; "
    "rank 0 reports the whole batch and writes batch_summary.json). With --server URL each case runs on that server."
)


class BatchFailed(MedDiffFMError):
    """Some cases failed (the others were written)."""


def _add_batch_arguments(parser: argparse.ArgumentParser, task: str) -> None:
    group = parser.add_argument_group("batch")
    what = f"{TASKS[task].input_name}s"
    group.add_argument("--inputs", required=True,
                       help=f"{what}: a folder (files and DICOM sub-folders), a quoted glob pattern, or a .txt list")
    group.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    if TASKS[task].needs_mask:
        group.add_argument("--masks", type=Path, required=True,
                           help="folder of masks named like the cases (<stem>.nii.gz or <stem>_*.nii.gz)")
    group.add_argument("--overwrite", action="store_true", help="redo cases whose output exists (default: skip them)")
    group.add_argument("--suffix", default=None, help=f"output name suffix (default: _{task})")
    group.add_argument("--format", dest="fmt", default="nii.gz", choices=["nii.gz", "nii", "nrrd", "mha"],
                       help="output format (default nii.gz)")
    group.add_argument("--series", default=None, help="DICOM SeriesInstanceUID when input folders hold several series")


def register(subparsers) -> None:
    parser = subparsers.add_parser("batch", help=HELP, description=DESCRIPTION)
    tasks = parser.add_subparsers(dest="batch_task", metavar="TASK", required=True)
    for task, entry in TASKS.items():
        sub = tasks.add_parser(task, help=f"batch {task}", description=f"Run '{task}' on many volumes.")
        _add_batch_arguments(sub, task)
        add_task_options(sub, entry)
        for extra in entry.extra_outputs:
            if extra.batch_flag:
                sub.add_argument(extra.batch_flag, action="store_true", help=extra.batch_help)
        common.add_engine_arguments(sub)
        sub.set_defaults(func=run)


def batch_extras(args: argparse.Namespace, entry) -> list:
    """The extra outputs a batch writes: each the entry always writes in a batch, and each whose
    batch switch (e.g. anomaly's ``--healthy``) is on."""
    return [extra.name for extra in entry.extra_outputs
            if extra.batch_dest is None or getattr(args, extra.batch_dest, False)]


class _Overall:
    """Overall progress: a JSON line per finished case, or a line on stderr."""

    def __init__(self, args: argparse.Namespace, rank: int, world: int) -> None:
        self.json = TaskProgress(args) if getattr(args, "progress", "bar") == "json" else None
        self.quiet = getattr(args, "progress", "bar") == "none"
        self.tag = f"rank {rank}/{world}: " if world > 1 else ""

    def __call__(self, event: ProgressEvent) -> None:
        if self.json is not None:
            self.json(event)
        elif not self.quiet and event.step > 0:
            print(f"{self.tag}{event.step}/{event.total} cases done", file=sys.stderr, flush=True)


def _plan(args: argparse.Namespace, task: str, options, extras) -> list:
    """The batch's output plan, before any input is read or model loaded: the options, the output
    folder, the cases (never its own outputs) and every output path they will get."""
    spec = task_entry(task)
    masks = getattr(args, "masks", None)
    out_dir = args.out.expanduser()
    common.check_before_work(args, [("output folder (--out)", out_dir, FOLDER)], [masks], [options])
    output_path(out_dir, "x", task, args.suffix, args.fmt)  # the format
    cases, dropped = drop_own_outputs(find_cases(args.inputs, exclude=[out_dir]), out_dir, task, args.suffix,
                                      args.fmt, extras)
    if not cases:
        raise InputError(f"Every input in {args.inputs} is an output of this batch in '{out_dir}'; there is nothing "
                         "to run. Pass the original volumes. Nothing was written.")
    if dropped:
        TaskProgress(args).note(f"{len(dropped)} file(s) in '{out_dir}' are outputs of this batch and are not taken "
                                f"as inputs: {', '.join(c.path.name for c in dropped[:5])}"
                                + (" ..." if len(dropped) > 5 else "") + ".")
    inputs = [c.path for c in cases] + [masks]
    planned = [(f"output of case '{c.stem}'", p, VOLUME)
               for c in cases for p in case_outputs(out_dir, c, task, args.suffix, args.fmt, extras)]
    plan_outputs(planned if out_dir.is_dir() else [], inputs)  # (a new folder holds no input)
    if not getattr(args, "server", None):  # with --server the server checks its model
        files = common.check_before_work(args, [], [], role=spec.role, expect_task=spec.expect_task)
        if task == "synthesize":  # its inputs are anatomy label maps
            check_anatomy_conditioning(files.model_config, files.name,
                                       "Batch synthesis takes anatomy label maps as its inputs, so it needs such a "
                                       "model: run `meddifffm synthesize` once per volume without --anatomy instead")
    return cases


def run(args: argparse.Namespace) -> None:
    task = args.batch_task
    spec = task_entry(task)
    out_dir = args.out.expanduser()
    options = task_options(args, spec)
    extras = batch_extras(args, spec)
    cases = _plan(args, task, options, extras)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world, local_rank = distributed_rank()
    mine = cases_for_rank(cases, rank, world)
    engine, case_runner = None, None
    if getattr(args, "server", None):
        from .remote import remote_case_runner

        case_runner = remote_case_runner(args, spec, options, extras)
    else:
        engine_options = common.engine_options(args)
        if world > 1 and engine_options.device in ("auto", "cuda"):
            import torch

            if torch.cuda.is_available():
                engine_options.device = f"cuda:{local_rank}"
        engine = Engine(engine_options, role=spec.role, expect_task=spec.expect_task)
    result = run_batch(
        task, mine, out_dir, engine, options,
        masks=getattr(args, "masks", None), overwrite=args.overwrite, suffix=args.suffix, fmt=args.fmt,
        extras=extras, series=args.series, progress=_Overall(args, rank, world),
        case_progress=lambda case: TaskProgress(args, case=case.stem), cancel=args.cancel, case_runner=case_runner,
    )
    together = world > 1 and can_gather()  # else (ranks started by hand) each reports its own share
    everyone = gather_results(result, world)
    if everyone is None:  # not rank 0: rank 0 reports the whole batch
        return
    result = merge_results(everyone)
    where = f" on {world} ranks" if together else (f" (rank {rank} of {world})" if world > 1 else "")
    summary = (f"batch {task}: {len(result.cases)} cases{where}, "
               f"{len(result.written)} files written, {len(result.skipped)} skipped (output exists), "
               f"{len(result.failed)} failed.")
    if together:
        _write_summary(out_dir / SUMMARY_NAME, task, everyone, result)
    if result.failed:
        print(summary, file=sys.stderr)
        raise BatchFailed(result.failure_message())
    common.finish(args, result.written, summary)


SUMMARY_NAME = "batch_summary.json"


def _write_summary(path: Path, task: str, ranks: list, result) -> None:
    """The whole batch's summary as JSON (rank 0 of a torchrun batch), written atomically."""
    summary = {"task": task, "ranks": len(ranks), "cases": len(result.cases),
               "cases_by_rank": [[c.stem for c in part.cases] for part in ranks],
               "written": sorted(str(p) for p in result.written), "skipped": sorted(c.stem for c in result.skipped),
               "failed": {case.stem: message for case, message in result.failed}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, path)

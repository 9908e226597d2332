"""``--server URL``: run a task command, or each case of ``batch``, on a ``meddifffm serve`` server.

The command checks its options and output paths exactly as a local run does, uploads the inputs,
shows the server's progress through the same display (``--progress bar|json|none``), and writes
the results through the same atomic ``io.write_volume`` path. Ctrl-C cancels the remote job; a lost
server ends with exit 2 and writes nothing. The token comes from ``$MEDDIFFFM_SERVER_TOKEN`` or
``--token-file``, never from the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import SimpleITK as sitk

from ..errors import InputError, MedDiffFMError
from ..io import read_volume, write_volume
from ..io.formats import file_extension
from ..progress import ProgressEvent
from ..tasks.batch import Case, write_case_outputs
from ..tasks.registry import TaskEntry, task_entry
from . import common
from .task_arguments import task_options
from .task_command import extra_output_paths, planned_outputs
from .task_helpers import TaskProgress

MAIN = "main"  # the server's name of the main output


def run_task(args: argparse.Namespace) -> None:
    """A task subcommand (denoise, anomaly, ...) run on ``args.server``."""
    entry = task_entry(args.command)
    if entry.check_arguments is not None:
        entry.check_arguments(args)
    if getattr(args, "preview", None) is not None:
        raise InputError("--preview cannot be combined with --server yet. Run without --preview, then look at the "
                         "result (or run the same command locally with --preview).")
    options = task_options(args, entry)
    extras = extra_output_paths(args, entry)
    volume = getattr(args, entry.main_input, None)
    mask = getattr(args, "mask", None) if entry.needs_mask else None
    like = getattr(args, "like", None)
    inputs = [volume, mask, like]
    common.check_before_work(args, planned_outputs(args, entry), inputs, [options])
    client = server_client(args)
    if like is not None:  # the reference image only gives the grid: send the grid, not the image
        if volume is not None:
            raise InputError("Pass either an anatomy label map or a reference image (--like), not both.")
        options = _with_grid(options, common.read_input(like, name="reference image"))
    progress = TaskProgress(args)
    with client, tempfile.TemporaryDirectory(prefix="meddifffm-remote-") as tmp:
        results = _run_remote(client, args, entry, options, list(extras), volume, mask, Path(tmp), progress,
                              series=getattr(args, "series", None))
        with common.Outputs(args, inputs) as outputs:  # all of them, or none
            outputs.volume(results.pop(MAIN), args.output)
            for name in extras:
                if name in results:
                    outputs.volume(results[name], extras[name])
    common.finish(args, outputs.paths, f"{args.command} on {client.url}: {volume or ''} -> {args.output}.")


def remote_case_runner(args: argparse.Namespace, entry: TaskEntry, options, extras: Sequence[str]):
    """The batch's case runner for ``--server``: upload one case, follow it, write its outputs."""
    client = server_client(args)

    def run_case(case: Case, target: Path, mask_path: Optional[Path], progress, cancel) -> List[Path]:
        with tempfile.TemporaryDirectory(prefix="meddifffm-remote-") as tmp:
            results = _run_remote(client, args, entry, options, list(extras), case.path, mask_path, Path(tmp),
                                  progress, series=args.series, cancel=cancel)
            outputs = {("" if name == MAIN else name): image for name, image in results.items()}
            return write_case_outputs(outputs, target, extras, [case.path], cancel)

    return run_case


def server_client(args: argparse.Namespace):
    """The httpx client of ``args.server`` with the token from the environment or ``--token-file``."""
    from ..server import require_server_packages

    require_server_packages("--server", modules=("httpx",))
    from ..server.auth import client_token
    from ..server.client import ServerClient

    return ServerClient(args.server, client_token(getattr(args, "token_file", None)))


def _run_remote(client, args, entry: TaskEntry, options, extras: List[str], volume: Optional[Path],
                mask: Optional[Path], tmp: Path, progress, series: Optional[str] = None,
                cancel=None) -> Dict[str, sitk.Image]:
    """Upload, queue, follow and download one job; its results by name (``main`` and the extras)."""
    name = entry.input_label(entry.main_input)
    uploads = {"volume": _uploadable(volume, series, tmp, "volume", name) if volume is not None else None,
               "mask": _uploadable(mask, None, tmp, "mask", "mask") if mask is not None else None}
    engine = {"model": None if args.model is None else str(args.model), "batch_size": args.batch_size,
              "overlap": args.overlap, "sampler": args.sampler}
    try:
        job = client.submit(entry.name, _jsonable(options), engine, extras, **uploads)
    except MedDiffFMError as error:  # the server's message names the uploads: put the user's paths back
        message = str(error)
        for field, path in (("volume", volume), ("mask", mask)):
            if path is not None:
                message = message.replace(f"<{field}>", str(Path(path).expanduser()))
        raise type(error)(message) from None
    try:
        done = client.follow(job, lambda event: _show(progress, event), cancel or args.cancel)
        return {key: read_volume(client.download(job, key, tmp / f"result_{key}.mha"), name="server result")
                for key in done.get("outputs", [MAIN])}
    except BaseException:
        client.forget(job)  # a failed, cancelled or interrupted job leaves nothing on the server
        raise
    finally:
        close = getattr(progress, "close", None)
        if callable(close) and cancel is None:
            close()


def _uploadable(path: Path, series: Optional[str], tmp: Path, field: str, name: str) -> Path:
    """A single file the server can read: the user's own file when it is one, else (a DICOM folder,
    a header + data pair) the volume read here and written to a temporary MetaImage (lossless)."""
    path = Path(path).expanduser()
    if path.is_file() and file_extension(path) not in (None, ".mhd", ".nhdr"):
        return path
    image = common.read_input(path, series, name=name)
    return write_volume(image, tmp / f"{field}.mha")


def _show(progress, event: dict) -> None:
    if progress is None:
        return
    if event.get("stage") == "note":
        progress.note(str(event.get("message", "")))
    else:
        progress(ProgressEvent(str(event.get("stage")), int(event.get("step", 0)), int(event.get("total", 0))))


def _jsonable(options) -> dict:
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


def _with_grid(options, like: sitk.Image):
    """Synthesis options that give the output ``like``'s grid (what ``--like`` does locally)."""
    return dataclasses.replace(options, size=list(like.GetSize()), spacing=list(like.GetSpacing()),
                               origin=list(like.GetOrigin()), direction=list(like.GetDirection()))

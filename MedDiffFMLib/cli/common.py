"""Options and plumbing shared by the ``meddifffm`` subcommands."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import SimpleITK as sitk

from ..device import DEVICE_CHOICES, PRECISION_CHOICES
from ..io import read_volume
from ..io.dicom_tilt import NOTE_KEY
from ..io.write import check_output_space, stage_volume
from ..io.output_plan import PICTURE, VOLUME, plan_outputs  # noqa: F401  (VOLUME: for the subcommands)
from ..preview import stage_preview
from ..progress import JsonProgress, ProgressCallback, TqdmProgress, check_cancel
from ..sampling import SAMPLERS
from ..sampling.tiling import DEFAULT_OVERLAP
from ..engine import EngineOptions

if TYPE_CHECKING:
    from ..models.weights import ModelFiles


def quiet_native_warnings() -> None:
    """No ITK WARNING lines on stderr: every condition they warn of that matters is checked and
    reported in the one-paragraph message or as a note (``--debug`` shows them again)."""
    sitk.ProcessObject.SetGlobalWarningDisplay(False)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and device")
    group.add_argument("--model", help="model name or model folder (default: the shipped default model)")
    group.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N (default: auto)")
    group.add_argument("--batch-size", type=int, default=None, help="patches per network call (default: 8 GPU, 1 CPU)")
    group.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                       help=f"least overlap of neighbouring patches, a fraction of the patch (default {DEFAULT_OVERLAP})")
    group.add_argument("--sampler", choices=sorted(SAMPLERS), default=None,
                       help="reverse-diffusion solver (default: the model's, see `meddifffm info`)")
    group.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                       help="the network's arithmetic: auto = bf16 on GPUs and on CPUs with native bf16 "
                       "(AVX512-BF16/AMX: about 2x faster, same quality), float32 elsewhere (default: auto; "
                       "with --server, the server's own)")
    remote = parser.add_argument_group("run on a server (meddifffm serve)")
    remote.add_argument("--server", default=None, metavar="URL",
                        help="run on a `meddifffm serve` server, e.g. http://gpu-box:8765 (--model is then a model "
                        "name installed there; --device is the server's)")
    remote.add_argument("--token-file", type=Path, default=None,
                        help="file holding the server's token (default: $MEDDIFFFM_SERVER_TOKEN, else "
                        "~/.config/meddifffm/server-token); never pass the token itself on the command line")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preview", type=Path, default=None, help="also write a before/after PNG picture")


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(model=args.model, device=args.device, batch_size=args.batch_size, overlap=args.overlap,
                         sampler=args.sampler, precision=args.precision)


def make_progress(args: argparse.Namespace) -> Optional[ProgressCallback]:
    mode = getattr(args, "progress", "bar")
    if mode == "json":
        return JsonProgress()
    if mode == "bar":
        return TqdmProgress()
    return None


class CancelFlag:
    """Turns SIGTERM / SIGINT into a cancel request checked between sampler steps."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. called from a test runner thread)
                pass

    def _handler(self, signum, frame) -> None:
        if self.requested:  # second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.requested = True

    def __call__(self) -> bool:
        return self.requested


def check_before_work(
    args: argparse.Namespace,
    outputs: Sequence[Tuple[str, Optional[Path], str]],
    inputs: Sequence[Optional[Path]],
    options: Sequence[object] = (),
    role: Optional[str] = None,
    expect_task: Optional[str] = None,
) -> Optional["ModelFiles"]:
    """Everything checked before any input is read or model loaded, in one place; returns the
    model's verified files (its config, for checks that depend on it) when ``role`` is given.

    1. every option's range (each options object's ``validate()``, the engine options included);
    2. the output plan: ``outputs`` as (label, path, kind) plus ``--preview``, against ``inputs``
       and the model folder (:func:`~MedDiffFMLib.io.output_plan.plan_outputs`);
    3. with ``role``, the model: found, checksums verified, and of the kind the task needs.
    """
    for item in options:
        item.validate()
    if hasattr(args, "overlap"):
        engine_options(args).validate()
    planned = list(outputs)
    if getattr(args, "preview", None) is not None:
        planned.append(("--preview", args.preview, PICTURE))
    model = getattr(args, "model", None)
    model_path = Path(model).expanduser() if model else None
    plan_outputs(planned, list(inputs) + ([model_path] if model_path is not None and model_path.exists() else []))
    args.planned_volumes = [(label, path) for label, path, kind in planned if kind == VOLUME and path is not None]
    if role is not None:
        from ..models.loading import model_for_task

        return model_for_task(model, role, expect_task, getattr(args, "command", None))
    return None


def read_input(path: Path, series: Optional[str] = None, name: str = "input") -> sitk.Image:
    """Read a volume; a note the reader left (a DICOM gantry tilt resampled) goes to stderr."""
    image = read_volume(path, series_uid=series, name=name)
    if image.HasMetaDataKey(NOTE_KEY):
        print(f"note: {image.GetMetaData(NOTE_KEY)}", file=sys.stderr, flush=True)
        image.EraseMetaData(NOTE_KEY)
    return image


def read_task_input(args: argparse.Namespace) -> sitk.Image:
    """Read the command's input (``args.input``, ``--series``), then check that every planned volume
    output has room for at least the input's voxels in its format: a disk measurably too full is
    refused before the model runs, not after (the write itself is verified all the same)."""
    image = read_input(args.input, getattr(args, "series", None))
    voxels = 1
    for n in image.GetSize():
        voxels *= int(n)
    bytes_per_voxel = image.GetSizeOfPixelComponent() * image.GetNumberOfComponentsPerPixel()
    for label, path in getattr(args, "planned_volumes", ()):
        check_output_space(path, voxels, bytes_per_voxel, label)
    return image


class Outputs:
    """Every output of one command, written together or not at all.

    Each output is staged as it comes (written, read back, fsync'ed under a temporary name); when the
    ``with`` block ends without error they all take their names, and on any error (a full disk on the
    last one, a cancel) every staged one is removed: no output of a failed run is left in place::

        with common.Outputs(args, [args.input]) as out:
            out.volume(result.image, args.output)
            out.preview(image, result.image, ("input", "denoised"))
        common.finish(args, out.paths, summary)
    """

    def __init__(self, args: argparse.Namespace, inputs: Sequence[Optional[Path]]) -> None:
        self.args = args
        self.inputs = [p for p in inputs if p is not None]
        self.staged: list = []
        self.paths: List[Path] = []

    def volume(self, image: sitk.Image, path: Optional[Path]) -> None:
        """Stage a volume output (nothing for a path of None: an optional output not asked for)."""
        if path is not None:
            self.staged.append(stage_volume(image, path, inputs=self.inputs))

    def preview(self, before: sitk.Image, after: sitk.Image, titles: Tuple[str, str]) -> None:
        """Stage the ``--preview`` picture, when one was asked for."""
        path = getattr(self.args, "preview", None)
        if path is not None:
            self.staged.append(stage_preview(before, after, path, titles=titles))

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            for staged in self.staged:
                staged.discard()
            return
        check_cancel(getattr(self.args, "cancel", None))  # a Ctrl-C while writing: nothing takes its name
        try:
            for staged in self.staged:
                self.paths.append(staged.publish())
        except BaseException:
            for staged in self.staged:
                staged.discard()
            raise


def finish(args: argparse.Namespace, outputs: Sequence[Path], summary: str) -> None:
    """Report success: a JSON line for the Slicer module, or a sentence on stderr."""
    if getattr(args, "progress", "bar") == "json":
        JsonProgress().emit({"stage": "done", "step": 1, "total": 1, "outputs": [str(p) for p in outputs]})
    else:
        print(summary, file=sys.stderr)

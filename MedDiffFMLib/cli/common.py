"""Options and plumbing shared by the ``meddifffm`` subcommands."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import SimpleITK as sitk

from ..device import DEVICE_CHOICES
from ..io import read_volume, write_volume
from ..io.dicom_tilt import NOTE_KEY
from ..io.output_plan import PICTURE, VOLUME, plan_outputs  # noqa: F401  (VOLUME: for the subcommands)
from ..progress import JsonProgress, ProgressCallback, TqdmProgress
from ..sampling import SAMPLERS
from ..engine import EngineOptions

if TYPE_CHECKING:
    from ..models.weights import ModelFiles


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and device")
    group.add_argument("--model", help="model name or model folder (default: the shipped default model)")
    group.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N (default: auto)")
    group.add_argument("--batch-size", type=int, default=None, help="patches per network call (default: 8 GPU, 2 CPU)")
    group.add_argument("--overlap", type=float, default=0.25, help="overlap of neighbouring patches (default 0.25)")
    group.add_argument("--sampler", choices=sorted(SAMPLERS), default=None,
                       help="reverse-diffusion solver (default: the model's, see `meddifffm info`)")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preview", type=Path, default=None, help="also write a before/after PNG picture")


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(model=args.model, device=args.device, batch_size=args.batch_size, overlap=args.overlap,
                         sampler=args.sampler)


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


def write_output(image: sitk.Image, path: Path, inputs: Sequence[Path]) -> Path:
    return write_volume(image, path, inputs=[p for p in inputs if p is not None])


def finish(args: argparse.Namespace, outputs: Sequence[Path], summary: str) -> None:
    """Report success: a JSON line for the Slicer module, or a sentence on stderr."""
    if getattr(args, "progress", "bar") == "json":
        JsonProgress().emit({"stage": "done", "step": 1, "total": 1, "outputs": [str(p) for p in outputs]})
    else:
        print(summary, file=sys.stderr)

"""Options and plumbing shared by the ``meddifffm`` subcommands."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

import SimpleITK as sitk

from ..device import DEVICE_CHOICES
from ..errors import InputError
from ..io import read_volume, write_volume
from ..progress import JsonProgress, ProgressCallback, TqdmProgress
from ..sampling import SAMPLERS
from ..tasks.engine import EngineOptions


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


def check_output_path(output: Path, inputs: Sequence[Path]) -> None:
    """Refuse before any work is done when the output would overwrite an input or has no folder."""
    out = Path(output).expanduser().resolve()
    for item in inputs:
        if item is not None and Path(item).expanduser().resolve() == out:
            raise InputError(f"The output '{output}' is the input file: choose another output path; "
                             "MedDiffFM never overwrites its input.")
    if not out.parent.is_dir():
        raise InputError(f"The output folder '{out.parent}' does not exist. Create it first, or choose another output path.")


def read_input(path: Path, series: Optional[str] = None) -> sitk.Image:
    return read_volume(path, series_uid=series)


def write_output(image: sitk.Image, path: Path, inputs: Sequence[Path]) -> Path:
    return write_volume(image, path, inputs=[p for p in inputs if p is not None])


def finish(args: argparse.Namespace, outputs: Sequence[Path], summary: str) -> None:
    """Report success: a JSON line for the Slicer module, or a sentence on stderr."""
    if getattr(args, "progress", "bar") == "json":
        JsonProgress().emit({"stage": "done", "step": 1, "total": 1, "outputs": [str(p) for p in outputs]})
    else:
        print(summary, file=sys.stderr)

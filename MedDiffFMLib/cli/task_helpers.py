"""Plumbing shared by the task subcommands (anomaly, synthesize, superres, inpaint, lesion, batch):
progress with notes (and a case name in batch runs) and the option groups several tasks share."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Optional

from ..progress import JsonProgress, ProgressEvent
from . import common


class TaskProgress:
    """The user's progress display (``--progress bar|json|none``) plus notes.

    JSON: one object per event, ``{"stage", "step", "total"}`` (and ``"case"`` in a batch);
    a note is ``{"stage": "note", "message": ...}``. Bar/none: notes go to stderr as ``note: ...``.
    """

    def __init__(self, args: argparse.Namespace, case: Optional[str] = None) -> None:
        self.mode = getattr(args, "progress", "bar")
        self.case = case
        self.json = JsonProgress() if self.mode == "json" else None
        self.inner = common.make_progress(args) if self.mode == "bar" else None

    def _emit(self, payload: dict) -> None:
        if self.case is not None:
            payload["case"] = self.case
        assert self.json is not None
        self.json.emit(payload)

    def __call__(self, event: ProgressEvent) -> None:
        if self.json is not None:
            self._emit(asdict(event))
        elif self.inner is not None:
            self.inner(event)

    def note(self, message: str) -> None:
        if self.json is not None:
            self._emit({"stage": "note", "message": message})
        else:
            print(f"note: {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def add_region_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--region", choices=["head_neck", "chest", "abdomen"], default=None, required=required,
                        help="body region" + ("" if required else " (default: guessed from the image)"))


def add_ct_input_arguments(parser: argparse.ArgumentParser) -> None:
    """--region and --allow-non-hu (the options of a task that reads a CT); --series is added by
    :func:`common.add_input_arguments` for single-volume commands."""
    add_region_argument(parser)
    parser.add_argument("--allow-non-hu", action="store_true", help="skip the check that the input is CT in HU")


def add_regenerate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the RePaint tasks (inpaint, lesion)."""
    group = parser.add_argument_group("RePaint")
    group.add_argument("--resample", type=int, default=1,
                       help="RePaint repeats per step (1 = none; more blends the region better, costs more)")
    group.add_argument("--start-step", type=int, default=None,
                       help="diffusion step to start from (default: the last one, i.e. pure noise in the mask; "
                            "smaller keeps more of the original content)")
    group.add_argument("--label", type=int, default=None,
                       help="use only voxels with this label value in the mask (default: every non-zero voxel)")

"""Plumbing shared by the task subcommands (``task_command``, ``batch``, ``--server``):
progress with notes (and a case name in batch runs) and output path checks. The task options
themselves come from the registry (:mod:`.task_arguments`)."""

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



"""Progress reporting and cancellation shared by every long-running call."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Optional, TextIO

from .errors import CancelledError

LOG = logging.getLogger("MedDiffFMLib.tasks")


@dataclass(frozen=True)
class ProgressEvent:
    """One progress update: ``step`` of ``total`` in a named ``stage``."""

    stage: str
    step: int
    total: int


ProgressCallback = Callable[[ProgressEvent], None]
CancelCheck = Callable[[], bool]


def report(progress: Optional[ProgressCallback], stage: str, step: int, total: int) -> None:
    """Send an event to ``progress`` if there is one."""
    if progress is not None:
        progress(ProgressEvent(stage, step, total))


def check_cancel(cancel: Optional[CancelCheck]) -> None:
    """Raise :class:`CancelledError` when the user asked to stop."""
    if cancel is not None and cancel():
        raise CancelledError()


def notify(progress: Optional[ProgressCallback], message: str) -> None:
    """Tell the user something they should know (e.g. "the mask was resampled").

    The message is logged; a progress object with a ``note(message)`` method also gets it (the
    command line prints it, or emits ``{"stage": "note", "message": ...}`` with ``--progress json``).
    """
    note = getattr(progress, "note", None)
    if callable(note):
        LOG.info(message)  # the user sees it through the progress display
        note(message)
    else:
        LOG.warning(message)


class JsonProgress:
    """Prints one JSON object per event, for the Slicer module to parse."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: ProgressEvent) -> None:
        self.emit(asdict(event))

    def emit(self, payload: dict) -> None:
        self.stream.write(json.dumps(payload) + "\n")
        self.stream.flush()


class TqdmProgress:
    """A tqdm bar per stage, written to stderr so that stdout stays clean."""

    def __init__(self) -> None:
        self._bar = None
        self._stage: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm import tqdm

        if event.stage != self._stage or self._bar is None:
            self.close()
            self._stage = event.stage
            self._bar = tqdm(total=event.total, desc=event.stage, unit="step", file=sys.stderr, leave=True)
        self._bar.total = event.total
        self._bar.n = event.step
        self._bar.refresh()
        if event.step >= event.total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None

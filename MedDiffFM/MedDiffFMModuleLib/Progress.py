"""Parse the ``--progress json`` protocol of ``meddifffm``.

stdout carries one JSON object per line: ``{"stage": "sampling", "step": 3, "total": 20}``;
success ends with ``{"stage": "done", ..., "outputs": [...]}``, failure with
``{"stage": "error", "message": "..."}``. Any other line (stdout or stderr) is kept for the log only.

Pure Python: unit-tested without Slicer.
"""

import dataclasses
import json
from typing import List, Optional

from .I18n import _

STAGE_DONE = "done"
STAGE_ERROR = "error"


def stageLabel(stage: str) -> str:
    """A readable, translated name for a stage of the library."""
    labels = {
        "starting": _("Starting"),
        "loading": _("Loading model"),
        "load": _("Loading model"),
        "reading": _("Reading input"),
        "preprocessing": _("Preprocessing"),
        "encoding": _("Encoding"),
        "sampling": _("Sampling"),
        "denoising": _("Denoising"),
        "reconstructing": _("Reconstructing"),
        "postprocessing": _("Postprocessing"),
        "writing": _("Writing result"),
        "importing": _("Importing result"),
        STAGE_DONE: _("Done"),
        STAGE_ERROR: _("Error"),
    }
    if stage in labels:
        return labels[stage]
    return str(stage).replace("_", " ").replace("-", " ").strip().capitalize() or _("Working")


@dataclasses.dataclass(frozen=True)
class ProgressUpdate:
    """One progress line of the library."""

    stage: str
    step: int = 0
    total: int = 0
    message: str = ""
    outputs: tuple = ()

    @property
    def percent(self) -> int:
        """0..100 within the current stage (0 when the total is unknown)."""
        if self.total <= 0:
            return 100 if self.stage == STAGE_DONE else 0
        return int(round(100.0 * max(0, min(self.step, self.total)) / self.total))

    def text(self) -> str:
        """Text for the progress bar, e.g. ``"Sampling: step 3 of 20"``."""
        if self.stage == STAGE_ERROR:
            return _("Failed")
        if self.stage == STAGE_DONE:
            return _("Done")
        if self.total > 0:
            return _("{stage}: step {step} of {total}").format(
                stage=stageLabel(self.stage), step=self.step, total=self.total)
        return stageLabel(self.stage)


def parseProgressLine(line: str) -> Optional[ProgressUpdate]:
    """The progress update on ``line``, or ``None`` for any other line."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("stage"), str):
        return None

    def integer(key):
        try:
            return int(payload.get(key) or 0)
        except (TypeError, ValueError):
            return 0

    outputs = payload.get("outputs") or ()
    if not isinstance(outputs, (list, tuple)):
        outputs = (outputs,)
    return ProgressUpdate(
        stage=payload["stage"],
        step=integer("step"),
        total=integer("total"),
        message=str(payload.get("message") or ""),
        outputs=tuple(str(o) for o in outputs),
    )


class ProgressParser:
    """Accumulates the output of one run: latest progress, outputs, error message, log."""

    MAX_LOG_LINES = 5000

    def __init__(self):
        self.latest: Optional[ProgressUpdate] = None
        self.outputs: List[str] = []
        self.errorMessage: Optional[str] = None
        self.done = False
        self.logLines: List[str] = []
        self._stderrTail: List[str] = []

    def feed(self, line: str, stream: str = "stdout") -> Optional[ProgressUpdate]:
        """Take one output line; return its progress update if it is one."""
        line = line.rstrip("\r\n")
        update = parseProgressLine(line) if stream == "stdout" else None
        if update is None:
            if line.strip():
                self._appendLog(line if stream == "stdout" else f"[stderr] {line}")
                if stream == "stderr":
                    self._stderrTail = (self._stderrTail + [line.strip()])[-20:]
            return None
        self.latest = update
        if update.stage == STAGE_DONE:
            self.done = True
            self.outputs = list(update.outputs)
            self._appendLog(_("Finished."))
        elif update.stage == STAGE_ERROR:
            self.errorMessage = update.message or self.errorMessage
            self._appendLog(_("Error: {message}").format(message=update.message))
        return update

    def _appendLog(self, line: str) -> None:
        self.logLines.append(line)
        if len(self.logLines) > self.MAX_LOG_LINES:
            del self.logLines[: len(self.logLines) - self.MAX_LOG_LINES]

    def failureMessage(self, returnCode: Optional[int]) -> str:
        """The clearest message for a failed run: the library's JSON error message, else the end
        of stderr, else the exit code."""
        if self.errorMessage:
            return self.errorMessage
        tail = [line for line in self._stderrTail if line]
        if tail:
            # A Python traceback ends with the exception line: that is the useful part.
            return tail[-1] if len(tail) > 3 else "\n".join(tail)
        return _("The MedDiff-FM process stopped with exit code {code} and no message; see the log.").format(
            code=returnCode)

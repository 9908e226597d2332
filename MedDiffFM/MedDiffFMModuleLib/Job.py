"""A run of the ``meddifffm`` command for the module: what was asked, the process, what came back.

No ``slicer`` or ``qt`` import, so it is unit-tested on its own.
"""

import dataclasses
import os
import shutil
from typing import Callable, List, Optional

from .I18n import _
from .Process import ProcessRunner
from .Progress import ProgressParser, ProgressUpdate
from .Tasks import Task, TaskOptions, TaskPaths


class MedDiffFMModuleError(Exception):
    """A user-facing failure: bad selection, or the library's own message. Shown as is."""


class RunCancelled(MedDiffFMModuleError):
    def __init__(self, message: Optional[str] = None):
        super().__init__(message or _("Cancelled; the scene was not changed."))


@dataclasses.dataclass
class TaskRequest:
    """Everything one run needs. ``inputVolume`` is the reference volume (optional) for synthesis;
    ``anatomyVolume`` its anatomy label map (only for a model with anatomy channels)."""

    task: Task
    inputVolume: Optional[object] = None
    anatomyVolume: Optional[object] = None
    segmentationNode: Optional[object] = None
    segmentId: Optional[str] = None
    outputVolume: Optional[object] = None
    options: TaskOptions = dataclasses.field(default_factory=TaskOptions)
    keepHealthy: bool = False


@dataclasses.dataclass
class TaskResult:
    outputVolume: object
    segmentationNode: Optional[object] = None
    healthyVolume: Optional[object] = None
    seconds: float = 0.0
    seed: Optional[int] = None

    @property
    def nodes(self) -> list:
        return [n for n in (self.outputVolume, self.segmentationNode, self.healthyVolume) if n is not None]


class Job:
    """One running ``meddifffm`` process and what is needed to finish it."""

    def __init__(self, runner: ProcessRunner, tempDir: Optional[str] = None, request: Optional[TaskRequest] = None,
                 paths: Optional[TaskPaths] = None, kind: str = "task",
                 onProgress: Optional[Callable[[ProgressUpdate], None]] = None,
                 onLog: Optional[Callable[[str], None]] = None):
        self.runner = runner
        self.parser = ProgressParser()
        self.tempDir = tempDir
        self.request = request
        self.paths = paths
        self.kind = kind
        self.onProgress = onProgress
        self.onLog = onLog
        self.stdoutLines: List[str] = []
        self.finalized = False
        self.seed: Optional[int] = None

    @property
    def command(self) -> List[str]:
        return list(self.runner.args)

    def poll(self) -> List[ProgressUpdate]:
        """Read what the process printed since the last call; return the progress updates."""
        return self._handle(self.runner.poll())

    def _handle(self, lines) -> List[ProgressUpdate]:
        updates = []
        for stream, line in lines:
            if stream == "stdout":
                self.stdoutLines.append(line)
            logCount = len(self.parser.logLines)
            update = self.parser.feed(line, stream)
            if self.onLog:
                for logLine in self.parser.logLines[logCount:]:
                    self.onLog(logLine)
            if update is not None:
                updates.append(update)
                if self.onProgress:
                    self.onProgress(update)
        return updates

    def isFinished(self) -> bool:
        return self.runner.isFinished()

    @property
    def cancelled(self) -> bool:
        return self.runner.cancelled

    @property
    def returncode(self) -> Optional[int]:
        return self.runner.returncode

    @property
    def succeeded(self) -> bool:
        return self.isFinished() and not self.cancelled and self.returncode == 0 and not self.parser.errorMessage

    @property
    def errorMessage(self) -> Optional[str]:
        if not self.isFinished() or self.succeeded or self.cancelled:
            return None
        return self.parser.failureMessage(self.returncode)

    def cancel(self) -> None:
        self.runner.cancel()
        self.poll()

    def wait(self, processEvents: Optional[Callable[[], None]] = None, timeout: Optional[float] = None) -> Optional[int]:
        finished = self.runner.wait(timeout=timeout, onLines=self._handle, processEvents=processEvents)
        self.poll()
        return finished

    def cleanup(self) -> None:
        if self.tempDir and os.path.isdir(self.tempDir):
            shutil.rmtree(self.tempDir, ignore_errors=True)
        self.tempDir = None

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdoutLines)

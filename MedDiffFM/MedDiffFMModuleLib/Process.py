"""Run ``meddifffm`` in a separate process without blocking Slicer.

``ProcessRunner`` starts the command, reads stdout and stderr on two daemon threads into a queue,
and hands the lines over on ``poll()`` (called by the panel's ``qt.QTimer``, or by ``wait()`` for a
blocking console run). ``cancel()`` ends the whole process tree.

Pure Python (no ``slicer``, ``qt`` or ``vtk``).
"""

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

STDOUT = "stdout"
STDERR = "stderr"

Line = Tuple[str, str]
"""``(stream, text)`` with stream ``"stdout"`` or ``"stderr"``."""


def slicerPythonExecutable() -> str:
    """Slicer's own Python interpreter.

    Inside the Slicer application ``sys.executable`` is the application, not Python: Slicer puts its
    ``PythonSlicer`` launcher on PATH (``slicer.util.executePythonModule`` uses it the same way).
    Outside Slicer (tests, PythonSlicer itself) this is ``sys.executable``.
    """
    try:
        from slicer import app  # noqa: F401  (only the Slicer application has it)
    except ImportError:
        return sys.executable
    found = shutil.which("PythonSlicer")
    return found or sys.executable


def libraryRoot(moduleDir: str) -> Optional[str]:
    """The folder that contains the ``MedDiffFMLib`` package.

    Installed extension: ``MedDiffFMLib`` is installed next to ``MedDiffFM.py`` (see the top-level
    CMakeLists.txt). Source checkout: it is the repository root, one level up.
    """
    for candidate in (moduleDir, os.path.dirname(moduleDir)):
        if os.path.isfile(os.path.join(candidate, "MedDiffFMLib", "__init__.py")):
            return os.path.abspath(candidate)
    return None


def ensureLibraryImportable(moduleDir: str) -> Optional[str]:
    """Put the folder holding ``MedDiffFMLib`` on ``sys.path`` (for this Python) and return it."""
    root = libraryRoot(moduleDir)
    if root and root not in sys.path:
        sys.path.insert(0, root)
    return root


def defaultCommand() -> List[str]:
    """``PythonSlicer -m MedDiffFMLib.cli``: the library's CLI run by Slicer's Python."""
    return [slicerPythonExecutable(), "-m", "MedDiffFMLib.cli"]


def processEnvironment(libraryRootDir: Optional[str] = None, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of a run: this one, with the library on PYTHONPATH and unbuffered UTF-8 output."""
    env = dict(os.environ)
    if libraryRootDir:
        parts = [libraryRootDir] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    if extra:
        env.update(extra)
    return env


class ProcessRunner:
    """One child process whose output is collected without blocking.

    :param args: the full command line.
    :param env: its environment (default: this process's).
    :param cwd: its working folder.
    """

    def __init__(self, args: Sequence[str], env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None):
        self.args = [str(a) for a in args]
        self.env = env
        self.cwd = cwd
        self.process: Optional[subprocess.Popen] = None
        self.cancelled = False
        self._queue: "queue.Queue[Line]" = queue.Queue()
        self._threads: List[threading.Thread] = []
        self.startTime: Optional[float] = None
        self.endTime: Optional[float] = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "ProcessRunner":
        if self.process is not None:
            raise RuntimeError("The process was already started.")
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            # Own process group: cancel() can end the process and everything it started.
            kwargs["start_new_session"] = True
        self.startTime = time.monotonic()
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1, **kwargs)
        for stream, pipe in ((STDOUT, self.process.stdout), (STDERR, self.process.stderr)):
            thread = threading.Thread(target=self._read, args=(stream, pipe), daemon=True,
                                      name=f"MedDiffFM-{stream}-reader")
            thread.start()
            self._threads.append(thread)
        return self

    def _read(self, stream: str, pipe) -> None:
        try:
            for line in iter(pipe.readline, ""):
                self._queue.put((stream, line.rstrip("\r\n")))
        except (OSError, ValueError):
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    @property
    def started(self) -> bool:
        return self.process is not None

    @property
    def returncode(self) -> Optional[int]:
        return None if self.process is None else self.process.poll()

    def isRunning(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def isFinished(self) -> bool:
        """The process has exited and all its output has been read (and polled)."""
        if self.process is None or self.process.poll() is None:
            return False
        if any(t.is_alive() for t in self._threads):
            return False
        if self.endTime is None:
            self.endTime = time.monotonic()
        return self._queue.empty()

    def poll(self) -> List[Line]:
        """All output lines received since the last call (never blocks)."""
        lines: List[Line] = []
        while True:
            try:
                lines.append(self._queue.get_nowait())
            except queue.Empty:
                return lines

    def wait(self, timeout: Optional[float] = None, interval: float = 0.05,
             onLines: Optional[Callable[[List[Line]], None]] = None,
             processEvents: Optional[Callable[[], None]] = None) -> Optional[int]:
        """Block until the process ends (or ``timeout`` seconds), handing lines to ``onLines`` and
        calling ``processEvents`` (e.g. ``slicer.app.processEvents``) between polls."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lines = self.poll()
            if lines and onLines:
                onLines(lines)
            if self.isFinished():
                lines = self.poll()
                if lines and onLines:
                    onLines(lines)
                return self.returncode
            if deadline is not None and time.monotonic() > deadline:
                return None
            if processEvents:
                processEvents()
            time.sleep(interval)

    def cancel(self, gracePeriod: float = 5.0) -> None:
        """End the process and every process it started; wait until they are gone.

        SIGTERM first: the command line acts on it between two layers of the network (well under
        5 s on a 2-core CPU) and removes its temporary files; SIGKILL only after ``gracePeriod``.
        """
        self.cancelled = True
        process = self.process
        if process is None or process.poll() is not None:
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        else:
            self._signalGroup(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=gracePeriod)
            except subprocess.TimeoutExpired:
                pass
            # SIGKILL the group even when the leader exited: children may outlive it.
            self._signalGroup(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - the OS refused to end it
            process.kill()
        for thread in self._threads:
            thread.join(timeout=2)

    @staticmethod
    def _signalGroup(pid: int, sig) -> None:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

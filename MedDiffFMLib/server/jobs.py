"""Jobs and the queue: one worker thread per device runs one job at a time with a model loaded
once per device and reused; the other jobs wait in a bounded queue.

A job's events are the ``--progress json`` lines of a local run (``{"stage", "step", "total"}``,
notes as ``{"stage": "note", "message"}``), ending with ``{"stage": "done", "outputs": [...]}`` or
``{"stage": "error", "message", "exit"}`` where ``exit`` is the command line's exit code for it
(2: bad input or model, 130: cancelled, 1: a bug). Results are written by ``io.write_volume`` into
the job's own random folder and deleted after download or after the TTL.
"""

from __future__ import annotations

import collections
import logging
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

import SimpleITK as sitk

from ..engine import Engine, EngineOptions
from ..errors import CancelledError, MedDiffFMError
from ..io import write_volume
from ..progress import ProgressEvent, check_cancel
from ..tasks.registry import TaskEntry
from .settings import ServerSettings

LOG = logging.getLogger("MedDiffFMLib.server")
RESULT_EXT = ".mha"  # MetaImage keeps every pixel type and the geometry to the last bit (NRRD rounds an
# oblique spacing, NIfTI stores float32)
MAIN = "main"  # the name of the main output ("" in the task registry)
FINISHED = ("done", "failed", "cancelled")


class QueueFull(MedDiffFMError):
    """Too many jobs are waiting."""


def new_job_id() -> str:
    """A random, unguessable job id (128 bits)."""
    return secrets.token_hex(16)


@dataclass
class Job:
    """One submitted task run and everything the server keeps about it."""

    id: str
    entry: TaskEntry
    options: Any
    engine_options: EngineOptions  # model: a verified folder on the server; device: set by the worker
    folder: Path
    image: Optional[sitk.Image] = None
    mask: Optional[sitk.Image] = None
    extras: Tuple[str, ...] = ()
    state: str = "queued"
    events: List[dict] = field(default_factory=list)
    outputs: Dict[str, Path] = field(default_factory=dict)
    downloaded: set = field(default_factory=set)
    cancel_requested: bool = False
    finished_at: Optional[float] = None
    changed: threading.Condition = field(default_factory=threading.Condition)

    def cancelled(self) -> bool:
        """The job's cancel check, handed to the task like the command line's Ctrl-C flag."""
        return self.cancel_requested

    def add_event(self, payload: dict) -> None:
        with self.changed:
            self.events.append(payload)
            self.changed.notify_all()

    def finish(self, state: str, last: dict) -> None:
        with self.changed:
            self.state = state
            self.finished_at = time.monotonic()
            self.events.append(last)
            self.changed.notify_all()

    def wait_events(self, since: int, timeout: float) -> List[dict]:
        """The events from index ``since``, waiting up to ``timeout`` seconds for a first new one."""
        with self.changed:
            if len(self.events) <= since and self.state not in FINISHED and timeout > 0:
                self.changed.wait(timeout)
            return list(self.events[since:])

    def status(self, since: int = 0, events: Optional[List[dict]] = None) -> dict:
        events = self.events[since:] if events is None else events
        return {"id": self.id, "task": self.entry.name, "state": self.state, "events": events,
                "next": since + len(events), "outputs": sorted(self.outputs)}


class _JobProgress:
    """The task's progress callback: every event and note becomes one of the job's events."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def __call__(self, event: ProgressEvent) -> None:
        self.job.add_event(asdict(event))

    def note(self, message: str) -> None:
        self.job.add_event({"stage": "note", "message": message})


class JobManager:
    """The queue, the workers (one per device) and the job table."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.jobs: Dict[str, Job] = {}
        self.waiting: Deque[Job] = collections.deque()
        self.lock = threading.Condition()
        self.stopping = False
        self.threads: List[threading.Thread] = []
        self.running: Dict[str, Optional[Job]] = {}

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.settings.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for index, device in enumerate(self.settings.devices):
            name = f"{device}#{index}"
            self.running[name] = None
            thread = threading.Thread(target=self._worker, args=(name, device), name=f"meddifffm-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)
        sweeper = threading.Thread(target=self._sweeper, name="meddifffm-sweeper", daemon=True)
        sweeper.start()
        self.threads.append(sweeper)

    def stop(self) -> None:
        """Cancel every job, stop the workers and delete every job's files."""
        with self.lock:
            self.stopping = True
            for job in self.jobs.values():
                job.cancel_requested = True
            self.lock.notify_all()
        for thread in self.threads:
            thread.join(timeout=10)
        for job in list(self.jobs.values()):
            self.forget(job.id)

    # -- the table --------------------------------------------------------------------------------
    def _blocked(self) -> int:
        """Jobs queued that no idle worker is about to take (call with the lock held): a job submitted
        while a worker is free sits in the queue only until that worker wakes, so it never counts."""
        idle = sum(job is None for job in self.running.values())
        return max(0, len(self.waiting) - idle)

    def check_room(self) -> None:
        """QueueFull when no more jobs may wait (checked before an upload is read, and on submit)."""
        with self.lock:
            blocked = self._blocked()
            if blocked >= self.settings.max_queue:
                raise QueueFull(f"The server's queue is full ({blocked} jobs waiting, the limit is "
                                f"{self.settings.max_queue}). Try again in a few minutes.")

    def submit(self, job: Job) -> int:
        """Queue ``job``; returns how many jobs wait before it."""
        with self.lock:
            self.check_room()
            self.jobs[job.id] = job
            self.waiting.append(job)
            self.lock.notify_all()
            return len(self.waiting) - 1

    def get(self, job_id: str) -> Optional[Job]:
        with self.lock:
            return self.jobs.get(job_id)

    def cancel(self, job: Job) -> None:
        """Ask a running job to stop at its next step; a waiting one is cancelled at once."""
        with self.lock:
            job.cancel_requested = True
            if job in self.waiting:
                self.waiting.remove(job)
                job.image = job.mask = None
                job.finish("cancelled", _error_event(CancelledError(), 130))

    def forget(self, job_id: str) -> None:
        """Drop a job and delete its folder (a running job is cancelled and deleted when it stops)."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return
            del self.jobs[job_id]
            if job.state not in FINISHED:
                self.cancel(job)
                if job.state not in FINISHED:
                    return  # running: its worker deletes the folder once it has stopped
        shutil.rmtree(job.folder, ignore_errors=True)

    def downloaded(self, job: Job, key: str) -> None:
        """Record a download; once every output is downloaded the job and its files go."""
        job.downloaded.add(key)
        if set(job.outputs) <= job.downloaded:
            self.forget(job.id)

    def sweep(self, now: Optional[float] = None) -> int:
        """Delete finished jobs older than the TTL; returns how many went."""
        now = time.monotonic() if now is None else now
        with self.lock:
            old = [j.id for j in self.jobs.values()
                   if j.finished_at is not None and now - j.finished_at >= self.settings.result_ttl_s]
        for job_id in old:
            self.forget(job_id)
        return len(old)

    # -- the workers ------------------------------------------------------------------------------
    def _sweeper(self) -> None:
        period = max(0.5, min(30.0, self.settings.result_ttl_s / 4))
        while not self.stopping:
            time.sleep(period)
            self.sweep()

    def _next(self, name: str) -> Optional[Job]:
        with self.lock:
            while not self.waiting and not self.stopping:
                self.lock.wait(1.0)
            if self.stopping:
                return None
            job = self.waiting.popleft()
            job.state = "running"
            self.running[name] = job
            return job

    def _worker(self, name: str, device: str) -> None:
        engines: Dict[tuple, Engine] = {}  # one loaded model per (model, role) on this device, reused
        while True:
            job = self._next(name)
            if job is None:
                return
            try:
                self._run(job, engines, device)
            finally:
                with self.lock:
                    self.running[name] = None
                    forgotten = job.id not in self.jobs
                if forgotten:  # dropped while it ran
                    shutil.rmtree(job.folder, ignore_errors=True)

    def _run(self, job: Job, engines: Dict[tuple, Engine], device: str) -> None:
        entry = job.entry
        try:
            check_cancel(job.cancelled)
            engine = self._engine(engines, job, device)
            inputs = {name: image for name, image in ((entry.main_input, job.image), ("mask", job.mask))
                      if image is not None}
            outputs = entry.run(engine, inputs, job.options, _JobProgress(job), job.cancelled).images
            check_cancel(job.cancelled)
            for key, image in outputs.items():
                if key and key not in job.extras:
                    continue
                name = key or MAIN
                job.outputs[name] = write_volume(image, job.folder / f"result_{name}{RESULT_EXT}")
            del outputs
            job.finish("done", {"stage": "done", "step": 1, "total": 1, "outputs": sorted(job.outputs)})
        except CancelledError as error:
            job.finish("cancelled", _error_event(error, 130, job.folder))
        except MedDiffFMError as error:
            job.finish("failed", _error_event(error, 2, job.folder))
        except Exception as error:  # a bug: the client reports it as one (exit 1), the server keeps serving
            LOG.exception("job %s (%s) failed", job.id, entry.name)
            job.finish("failed", _error_event(RuntimeError(f"unexpected {type(error).__name__} on the server: "
                                                           f"{error}"), 1, job.folder))
        finally:
            job.image = job.mask = None  # the server's memory stays flat between jobs

    @staticmethod
    def _engine(engines: Dict[tuple, Engine], job: Job, device: str) -> Engine:
        wanted = job.engine_options
        key = (str(wanted.model), job.entry.role, job.entry.expect_task)
        engine = engines.get(key)
        if engine is None:
            engine = Engine(EngineOptions(model=wanted.model, device=device), role=job.entry.role,
                            expect_task=job.entry.expect_task)
            engines[key] = engine
        # Per-job settings that do not change the loaded model (one job at a time per device).
        engine.options.batch_size, engine.options.overlap, engine.options.sampler = (
            wanted.batch_size, wanted.overlap, wanted.sampler)
        return engine


def _error_event(error: BaseException, exit_code: int, folder: Optional[Path] = None) -> dict:
    message = str(error)
    if folder is not None:  # never show the server's own paths
        message = message.replace(f"{folder}/", "").replace(str(folder), "<job folder>")
    return {"stage": "error", "message": message, "exit": exit_code}

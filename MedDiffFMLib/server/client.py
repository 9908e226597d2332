"""The client of ``meddifffm serve`` (httpx): submit a job with its uploads, follow its events,
cancel it, download its results. Every failure is a one-paragraph MedDiffFMError: the server's own
message for a refused job (exit 2), :class:`ServerLost` when the server goes away (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import httpx

from ..errors import CancelledError, InputError, MedDiffFMError
from .settings import API, upload_too_large

LONG_POLL_S = 1.0  # how long one status request waits for news; Ctrl-C is seen within this


class ServerLost(MedDiffFMError):
    """The server could not be reached, or went away during a job."""


class RemoteBug(RuntimeError):
    """The server hit an unexpected error (a bug): the command line reports it with exit 1."""


class ServerClient:
    """A connection to one server (``url`` like ``http://gpu-box:8765``) with its bearer token."""

    def __init__(self, url: str, token: Optional[str], timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise InputError(f"--server must be an http:// or https:// URL, e.g. http://127.0.0.1:8765; got '{url}'.")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.limits: Optional[dict] = None
        self.http = httpx.Client(base_url=self.url + API, headers=headers,
                                 timeout=httpx.Timeout(timeout_s, connect=10.0))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "ServerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------
    def _call(self, method: str, path: str, job: Optional[str] = None, **kwargs) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise self._lost(error, job) from None
        self._raise_for(response)
        return response

    def _lost(self, error: Exception, job: Optional[str]) -> ServerLost:
        during = f" while job {job} was running" if job else ""
        return ServerLost(f"Lost the connection to the server {self.url}{during} ({type(error).__name__}: "
                          f"{error or 'no answer'}). Nothing was written. Check that `meddifffm serve` is running there "
                          "and reachable, then run the command again.")

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        if not isinstance(detail, str):
            detail = response.text[:300] or response.reason_phrase
        if response.status_code == 401:
            raise InputError(f"The server {self.url} refused the token (401): {detail}")
        if response.status_code >= 500 and response.status_code != 503:
            raise RemoteBug(f"the server {self.url} failed ({response.status_code}): {detail}")
        raise InputError(detail if response.status_code in (400, 413, 503) else
                         f"The server {self.url} answered {response.status_code}: {detail}")

    # -- the API ----------------------------------------------------------------------------------
    def info(self) -> dict:
        return self._call("GET", "/info").json()

    def _limits(self) -> dict:
        if self.limits is None:
            self.limits = self._call("GET", "/limits").json()
        return self.limits

    def submit(self, task: str, options: dict, engine: dict, extras: Sequence[str] = (),
               volume: Optional[Path] = None, mask: Optional[Path] = None) -> str:
        """Upload the inputs and queue the job; returns its id."""
        data = {"task": task, "options": json.dumps(options), "engine": json.dumps(engine),
                "extras": json.dumps(list(extras))}
        # Checked before sending: a server that refuses a large body early may only reset the
        # connection while it is still being sent, and its 413 message would be lost.
        size = sum(Path(p).stat().st_size for p in (volume, mask) if p is not None)
        limit = self._limits()["max_upload_bytes"]
        if size > limit:
            raise InputError(upload_too_large(size, limit))
        with _Uploads({"volume": volume, "mask": mask}) as files:
            return self._call("POST", "/jobs", data=data, files=files).json()["id"]

    def follow(self, job: str, on_event: Callable[[dict], None], cancel: Callable[[], bool]) -> dict:
        """Pass every event to ``on_event`` until the job ends; ``cancel()`` true cancels it.
        Returns the last event (``done``); raises the job's error, CancelledError or ServerLost."""
        since, cancel_sent = 0, False
        while True:
            if cancel() and not cancel_sent:
                self._call("POST", f"/jobs/{job}/cancel", job=job)
                cancel_sent = True
            status = self._call("GET", f"/jobs/{job}", job=job, params={"since": since, "wait": LONG_POLL_S}).json()
            for event in status["events"]:
                if event.get("stage") in ("done", "error"):
                    return _ending(event)
                on_event(event)
            since = status["next"]

    def download(self, job: str, name: str, target: Path) -> Path:
        try:
            with self.http.stream("GET", f"/jobs/{job}/results/{name}") as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                with open(target, "wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
        except httpx.HTTPError as error:
            raise self._lost(error, job) from None
        return target

    def forget(self, job: str) -> None:
        """Delete a job on the server (best effort: it also goes after its TTL)."""
        try:
            self.http.delete(f"/jobs/{job}")
        except httpx.HTTPError:
            pass


def _ending(event: dict) -> dict:
    if event.get("stage") == "done":
        return event
    message, code = str(event.get("message", "the job failed")), event.get("exit", 2)
    if code == 130:
        raise CancelledError(message)
    if code == 1:
        raise RemoteBug(message)
    raise InputError(message)


class _Uploads:
    """The open files of a submit, closed afterwards."""

    def __init__(self, paths: Dict[str, Optional[Path]]) -> None:
        self.paths = {k: Path(v) for k, v in paths.items() if v is not None}
        self.handles: list = []

    def __enter__(self) -> dict:
        files = {}
        for field, path in self.paths.items():
            handle = open(path, "rb")
            self.handles.append(handle)
            files[field] = (path.name, handle, "application/octet-stream")
        return files

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.close()

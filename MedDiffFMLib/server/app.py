"""The FastAPI app of ``meddifffm serve``.

Endpoints (all under ``/v1``, all need ``Authorization: Bearer TOKEN``):

* ``GET  /info``: versions, devices, models and the task registry as ``meddifffm info --json``
  exports it (without the server's paths), plus the server's limits; ``GET /limits``: the limits.
* ``POST /jobs``: multipart form: ``task``, ``options`` (JSON object of option fields),
  ``engine`` (JSON: ``model`` name, ``batch_size``, ``overlap``, ``sampler``), ``extras`` (JSON
  list of extra outputs, e.g. ``["mask", "healthy"]``), files ``volume`` and ``mask`` (NIfTI, NRRD
  or MetaImage). Options, model and inputs are checked before the job is queued: 400 with the
  command line's message, 413 for a body or volume over the limits, 503 when the queue is full.
* ``GET  /jobs/{id}?since=N&wait=S``: state and the events from N (long poll up to S seconds).
* ``GET  /jobs/{id}/events``: the events as a stream of JSON lines (``--progress json``).
* ``POST /jobs/{id}/cancel``; ``DELETE /jobs/{id}``.
* ``GET  /jobs/{id}/results/{name}``: an output (MetaImage .mha); the job's files go once all are fetched.

A client never names a server path: uploads are stored under fixed names in a random job folder
(only the extension of the client's file name is used) and models are found by name.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Optional

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from .. import __version__
from ..engine import EngineOptions
from ..errors import InputError, MedDiffFMError
from ..io import read_volume
from ..io.formats import SUPPORTED_TEXT, file_extension
from ..models.loading import model_for_task
from ..models.registry import search_dirs
from ..models.weights import MANIFEST
from ..sampling.tiling import DEFAULT_OVERLAP
from ..tasks.registry import task_entry
from .auth import token_matches
from .jobs import FINISHED, Job, JobManager, QueueFull, new_job_id
from .options import options_from_json
from .settings import API, ServerSettings, upload_too_large

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
EXTRA_NAME = re.compile(r"[a-z][a-z_]{0,31}")
MAX_WAIT_S = 10.0


class Refused(Exception):
    """A request refused with an HTTP status and a one-paragraph message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(settings: ServerSettings) -> FastAPI:
    """The app; its job manager starts and stops with the app (``app.state.jobs``)."""
    jobs = JobManager(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs.start()
        try:
            yield
        finally:
            await run_in_threadpool(jobs.stop)

    app = FastAPI(title="MedDiffFM server", version=__version__, lifespan=lifespan)
    app.state.jobs = jobs

    def authorised(request: Request) -> None:
        if not token_matches(settings.token, request.headers.get("authorization")):
            raise HTTPException(401, "A valid bearer token is required (Authorization: Bearer TOKEN). The client "
                                "reads it from $MEDDIFFFM_SERVER_TOKEN or --token-file.",
                                headers={"WWW-Authenticate": "Bearer"})

    def job_of(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"No job '{job_id[:64]}' on this server: its results were downloaded, "
                                f"it was deleted, or it ended more than {settings.result_ttl_s:.0f} s ago.")
        return job

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.get(f"{API}/info", dependencies=[Depends(authorised)])
    def info() -> dict:
        from ..cli.info import collect

        data = collect()
        data.pop("model_dirs", None)
        for model in data["models"]:
            model.pop("path", None)
        data["server"] = {"devices": settings.devices, "max_upload_bytes": settings.max_upload_bytes,
                          "max_queue": settings.max_queue, "max_voxels": settings.max_voxels,
                          "result_ttl_s": settings.result_ttl_s}
        return data

    @app.get(f"{API}/limits", dependencies=[Depends(authorised)])
    def limits() -> dict:
        """The limits alone (cheap): a client checks its upload against them before sending it."""
        return {"max_upload_bytes": settings.max_upload_bytes, "max_queue": settings.max_queue,
                "max_voxels": settings.max_voxels, "result_ttl_s": settings.result_ttl_s}

    @app.post(f"{API}/jobs", status_code=201, dependencies=[Depends(authorised)])
    async def submit(request: Request) -> dict:
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise Refused(411, "The upload needs a Content-Length header.")
        if int(length) > settings.max_upload_bytes:
            raise Refused(413, upload_too_large(int(length), settings.max_upload_bytes))
        try:
            jobs.check_room()
        except QueueFull as error:
            raise Refused(503, str(error)) from None
        form = await request.form(max_files=2, max_fields=8)
        try:
            job = await run_in_threadpool(_prepare, settings, form)
        finally:
            await form.close()
        try:
            ahead = jobs.submit(job)
        except QueueFull as error:
            shutil.rmtree(job.folder, ignore_errors=True)
            raise Refused(503, str(error)) from None
        return {"id": job.id, "state": job.state, "ahead": ahead}

    @app.get(f"{API}/jobs/{{job_id}}", dependencies=[Depends(authorised)])
    def status(job_id: str, since: int = 0, wait: float = 0.0) -> dict:
        job = job_of(job_id)
        since = max(0, since)
        return job.status(since, job.wait_events(since, min(max(wait, 0.0), MAX_WAIT_S)))

    @app.get(f"{API}/jobs/{{job_id}}/events", dependencies=[Depends(authorised)])
    def events(job_id: str, since: int = 0) -> StreamingResponse:
        job = job_of(job_id)

        def lines():
            index = max(0, since)
            while True:
                new = job.wait_events(index, 1.0)
                for event in new:
                    yield json.dumps(event) + "\n"
                index += len(new)
                if job.state in FINISHED and index >= len(job.events):
                    return

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.post(f"{API}/jobs/{{job_id}}/cancel", dependencies=[Depends(authorised)])
    def cancel(job_id: str) -> dict:
        job = job_of(job_id)
        jobs.cancel(job)
        return {"id": job.id, "state": job.state}

    @app.delete(f"{API}/jobs/{{job_id}}", dependencies=[Depends(authorised)])
    def delete(job_id: str) -> dict:
        jobs.forget(job_of(job_id).id)
        return {"id": job_id, "state": "deleted"}

    @app.get(f"{API}/jobs/{{job_id}}/results/{{name}}", dependencies=[Depends(authorised)])
    def result(job_id: str, name: str) -> FileResponse:
        job = job_of(job_id)
        path = job.outputs.get(name) if job.state == "done" else None
        if path is None:
            raise HTTPException(404, f"Job '{job.id}' has no output '{name[:64]}' (state {job.state}; outputs: "
                                f"{', '.join(sorted(job.outputs)) or 'none'}).")
        return FileResponse(path, media_type="application/octet-stream", filename=path.name,
                            background=BackgroundTask(jobs.downloaded, job, name))

    return app


def _prepare(settings: ServerSettings, form) -> Job:
    """Check the submitted task, options, model and uploads, and read the inputs: a Job ready to
    queue, or Refused (400/413) with the command line's own message."""
    job_id = new_job_id()
    folder = settings.work_dir / job_id
    folder.mkdir(mode=0o700)
    try:
        return _prepare_in(settings, form, job_id, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _prepare_in(settings: ServerSettings, form, job_id: str, folder: Path) -> Job:
    try:
        entry = task_entry(str(form.get("task", "")))
        options = options_from_json(entry, _json_field(form, "options", {}))
        engine_options = _engine_options(entry, _json_field(form, "engine", {}))
        extras = _json_field(form, "extras", [])
        if not isinstance(extras, list) or not all(isinstance(e, str) and EXTRA_NAME.fullmatch(e) for e in extras):
            raise InputError("'extras' must be a JSON list of output names such as [\"mask\", \"healthy\"].")
        unknown = sorted(set(form.keys()) - {"task", "options", "engine", "extras", "volume", "mask"})
        if unknown:
            raise InputError(f"Unknown form field(s) {unknown}.")
        # The volume is the entry's main input: required when the command takes it as a path
        # argument (not synthesis' optional anatomy map), named as the command line names it.
        wants_volume = entry.main_input in entry.positionals
        image = _read_upload(settings, form, "volume", folder, entry.input_label(entry.main_input),
                             required=wants_volume)
        mask = _read_upload(settings, form, "mask", folder, "mask", required=entry.needs_mask) \
            if entry.needs_mask else None
        if not entry.needs_mask and form.get("mask") is not None:
            raise InputError(f"Task '{entry.name}' takes no mask.")
        size = getattr(options, "size", None) if not wants_volume and image is None else None
        if size is not None and len(size) == 3:
            _check_voxels(settings, int(size[0]) * int(size[1]) * int(size[2]), "The requested synthesis grid")
    except MedDiffFMError as error:
        raise Refused(400, str(error)) from None
    return Job(id=job_id, entry=entry, options=options, engine_options=engine_options, folder=folder,
               image=image, mask=mask, extras=tuple(extras))


def _json_field(form, name: str, default: Any) -> Any:
    raw = form.get(name)
    if raw is None:
        return default
    if not isinstance(raw, str):
        raise InputError(f"The form field '{name}' must be JSON text.")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise InputError(f"The form field '{name}' is not valid JSON ({error}).") from None


def _engine_options(entry, values: Any) -> EngineOptions:
    """The engine options of a job; the model is a *name* installed on the server (never a path)."""
    if not isinstance(values, dict) or set(values) - {"model", "batch_size", "overlap", "sampler"}:
        raise InputError("'engine' must be a JSON object with 'model', 'batch_size', 'overlap' and 'sampler'.")
    options = EngineOptions(model=_model_folder(values.get("model")), batch_size=values.get("batch_size"),
                            overlap=values.get("overlap", DEFAULT_OVERLAP), sampler=values.get("sampler"))
    if options.sampler is not None:
        from ..sampling import SAMPLERS

        if options.sampler not in SAMPLERS:
            raise InputError(f"--sampler must be one of {', '.join(sorted(SAMPLERS))}; got {options.sampler!r}.")
    options.validate()
    options.model = model_for_task(options.model, entry.role, entry.expect_task, entry.name).path
    return options


def _model_folder(name: Optional[str]) -> Optional[Path]:
    if name is None:
        return None  # the default model of the task's role
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise InputError(f"--model with --server must be the name of a model installed on the server (see "
                         f"`meddifffm info --server URL`), not a path; got {str(name)[:80]!r}.")
    for folder in search_dirs():
        if (folder / name / MANIFEST).is_file():
            return folder / name
    raise InputError(f"The server has no model '{name}'. `meddifffm info --server URL` lists its models.")


def _read_upload(settings: ServerSettings, form, field: str, folder: Path, name: str, required: bool):
    upload = form.get(field)
    if upload is None or isinstance(upload, str):
        if required:
            raise InputError(f"The upload '{field}' (the {name}) is missing.")
        return None
    # Only the extension of the client's file name is used: the file is stored under a fixed name.
    ext = file_extension(Path(Path(upload.filename or "").name.replace("\\", "/").split("/")[-1] or "x"))
    if ext is None or ext in (".mhd", ".nhdr"):
        raise InputError(f"The {name} must be uploaded as one file in {SUPPORTED_TEXT} (without a separate data "
                         f"file); got '{str(upload.filename)[:80]}'.")
    path = folder / f"{field}{ext}"
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
    try:
        image = read_volume(path, name=name)
    except MedDiffFMError as error:
        # The command line's message, with the upload's name where the server's path would be.
        raise type(error)(str(error).replace(str(path), f"<{field}>")) from None
    _check_voxels(settings, image.GetNumberOfPixels(), f"The {name}")
    return image


def _check_voxels(settings: ServerSettings, voxels: int, what: str) -> None:
    if voxels > settings.max_voxels:
        raise Refused(413, f"{what} has {voxels:,} voxels; this server takes at most {settings.max_voxels:,} "
                      "(meddifffm serve --max-voxels). Crop it first, or ask the server's owner to raise the limit.")

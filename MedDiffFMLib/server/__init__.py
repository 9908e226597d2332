"""``meddifffm serve``: run the tasks for remote clients on this machine's GPU(s), and the client
that the command line's ``--server URL`` uses.

A FastAPI app (:mod:`.app`) with a job queue per device (:mod:`.jobs`), bearer-token auth
(:mod:`.auth`) and limits (:mod:`.settings`); the client (:mod:`.client`) uses httpx. Task options
are checked by the task registry's types and ``validate()``; inputs are read by ``io.read_volume``
and outputs written by ``io.write_volume``, so a remote run fails and succeeds like a local one.
These modules need the optional extra ``server`` (``pip install "meddifffm[server]"``).
"""

from __future__ import annotations

from ..errors import InputError

EXTRA_HINT = 'pip install "meddifffm[server]"  (FastAPI, uvicorn, httpx)'


def require_server_packages(what: str, modules=("fastapi", "uvicorn", "httpx", "multipart")) -> None:
    """InputError naming the missing packages when the optional ``server`` extra is not installed."""
    import importlib.util

    missing = [m if m != "multipart" else "python-multipart" for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"{what} needs the optional packages {', '.join(missing)}, which are not installed. "
                         f"Install them with: {EXTRA_HINT}.")

"""The server's settings and limits, with the check that keeps a token-less server on loopback."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..errors import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
API = "/v1"
# The limits' defaults, here once: ServerSettings' fields and ``meddifffm serve``'s options both read them.
DEFAULT_DEVICES = ("auto",)
DEFAULT_MAX_UPLOAD_MB = 1024.0
DEFAULT_MAX_QUEUE = 8
DEFAULT_MAX_VOXELS = 512 * 512 * 1024
DEFAULT_RESULT_TTL_S = 3600.0


@dataclass
class ServerSettings:
    """How the server runs and what it accepts.

    Attributes:
        token: the bearer token every request must carry (None: no auth, loopback only).
        devices: one worker (one job at a time) per device, e.g. ``["cuda:0", "cuda:1"]``.
        work_dir: where uploads and results live while a job exists (one random folder per job).
        max_upload_bytes: a request body larger than this gets 413.
        max_queue: jobs waiting for a busy device (not running, not about to start) beyond this get 503.
        max_voxels: an input (or a synthesis grid) with more voxels gets 413.
        result_ttl_s: a finished job's files are deleted this long after it ends, downloaded or not.
    """

    token: Optional[str]
    work_dir: Path
    devices: List[str] = field(default_factory=lambda: list(DEFAULT_DEVICES))
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20)
    max_queue: int = DEFAULT_MAX_QUEUE
    max_voxels: int = DEFAULT_MAX_VOXELS
    result_ttl_s: float = DEFAULT_RESULT_TTL_S


def upload_too_large(size: int, limit: int) -> str:
    """The message of a refused upload (the server's 413, and the client's check before sending)."""
    return (f"The upload is {size / 2**20:.1f} MiB; this server takes at most {limit / 2**20:.1f} MiB "
            "(meddifffm serve --max-upload-mb). Crop the volume, or ask the server's owner to raise the limit.")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: Optional[str]) -> None:
    """Refuse to listen beyond this machine without a token (InputError, exit 2)."""
    if not token and not is_loopback(host):
        raise InputError(f"Refusing to listen on '{host}' without a token: anyone who can reach this machine could "
                         "run jobs and read the results. Drop --no-token (a token is then required and generated "
                         "at first start), or bind to 127.0.0.1.")

"""The server's bearer token: generated at first start into a 0600 file, compared in constant time.

The client reads it from ``$MEDDIFFFM_SERVER_TOKEN`` or a file, never from the command line (argv
is visible to every user in ``ps``).
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Optional, Tuple

from ..errors import InputError

TOKEN_ENV = "MEDDIFFFM_SERVER_TOKEN"
TOKEN_FILE_ENV = "MEDDIFFFM_SERVER_TOKEN_FILE"


def default_token_file() -> Path:
    """``$XDG_CONFIG_HOME/meddifffm/server-token`` (``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "meddifffm" / "server-token"


def load_or_create_token(path: Path) -> Tuple[str, bool]:
    """(token, created): the token in ``path``, or a new random one written there with mode 0600."""
    path = path.expanduser()
    if path.is_file():
        token = path.read_text().strip()
        if not token:
            raise InputError(f"The token file '{path}' is empty. Delete it to have a new token generated, or write "
                             "a token into it.")
        return token, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL + mode 0600 at creation: the token is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, True


def client_token(token_file: Optional[Path] = None) -> Optional[str]:
    """The client's token: ``$MEDDIFFFM_SERVER_TOKEN``, else ``token_file`` (or
    ``$MEDDIFFFM_SERVER_TOKEN_FILE``, or the server's default file on this machine); None if none."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    named = token_file or (Path(os.environ[TOKEN_FILE_ENV]) if os.environ.get(TOKEN_FILE_ENV) else None)
    path = (named or default_token_file()).expanduser()
    if path.is_file():
        return path.read_text().strip() or None
    if named is not None:
        raise InputError(f"The token file '{path}' does not exist. Copy the server's token file there, or set "
                         f"{TOKEN_ENV}.")
    return None


def token_matches(expected: Optional[str], authorization: Optional[str]) -> bool:
    """Whether an ``Authorization: Bearer ...`` header carries ``expected`` (constant-time compare)."""
    if expected is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())

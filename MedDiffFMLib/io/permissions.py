"""Permissions of files written through a temporary name."""

from __future__ import annotations

import os
from pathlib import Path


def make_shareable(path: str | os.PathLike) -> None:
    """Give ``path`` the permissions of a normal write: rw-r--r-- for a file; rwxr-xr-x for a folder
    and rw-r--r-- for its files; less whatever the user's umask removes.

    ``tempfile.mkstemp``/``mkdtemp`` create private (0600/0700) entries and the atomic rename keeps
    that, which would hide outputs, caches and models from the rest of a team.
    """
    umask = os.umask(0)
    os.umask(umask)
    path = Path(path)
    if path.is_dir():
        path.chmod(0o755 & ~umask)
        for child in path.iterdir():
            if child.is_file():
                child.chmod(0o644 & ~umask)
    else:
        path.chmod(0o644 & ~umask)

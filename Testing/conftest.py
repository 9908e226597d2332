"""Shared pytest helpers: where the real CT lives, and how to skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pytest

_REPO = Path(__file__).resolve().parent.parent


def shared_ct_path() -> Optional[Path]:
    """The shared real-CT folder, or None when it is not there: env MEDDIFFFM_SHARED_DATA when
    set (only that, so setting it to a missing path skips the shared-data tests), else
    <repo>/../shared/data/ct."""
    env = os.environ.get("MEDDIFFFM_SHARED_DATA")
    path = Path(env) if env else _REPO.parent / "shared" / "data" / "ct"
    return path if path.is_dir() else None


_SKIP_REASON = (
    "shared real CT not found (set MEDDIFFFM_SHARED_DATA or put it at <repo>/../shared/data/ct)"
)


def requires_shared_data(test):
    """Decorator: mark a test ``shared_data`` and skip it when the shared CT is absent."""
    test = pytest.mark.shared_data(test)
    return pytest.mark.skipif(shared_ct_path() is None, reason=_SKIP_REASON)(test)


@pytest.fixture
def shared_ct() -> Path:
    """Path to the shared real-CT folder; skips the test when it is absent."""
    path = shared_ct_path()
    if path is None:
        pytest.skip(_SKIP_REASON)
    return path

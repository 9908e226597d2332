"""Shared pytest helpers: where the real CT lives, and how to skip when it is absent."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import pytest

_REPO = Path(__file__).resolve().parent.parent
# The repository root: the tests import the tools (tools/) and benchmarks beside the library.
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))


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


@pytest.fixture(scope="session", autouse=True)
def _real_parser_for_the_fake_cli(tmp_path_factory):
    """The fake ``meddifffm`` (Testing/slicer_helpers) rebuilds the real parser from this JSON, written
    once per session from ``MedDiffFMLib.cli.build_parser()``, so its arguments cannot drift."""
    import sys

    sys.path.insert(0, str(_REPO / "Testing"))
    from slicer_helpers.cli_spec import write_spec

    path = write_spec(tmp_path_factory.mktemp("cli") / "meddifffm_parser.json")
    previous = os.environ.get("FAKE_MEDDIFFFM_PARSER")
    os.environ["FAKE_MEDDIFFFM_PARSER"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("FAKE_MEDDIFFFM_PARSER", None)
    else:
        os.environ["FAKE_MEDDIFFFM_PARSER"] = previous

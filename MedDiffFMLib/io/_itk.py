"""Small helpers around ITK's messages: short reasons for users, silenced warnings."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator, List

import SimpleITK as sitk


def short_reason(exc: BaseException, limit: int = 200) -> str:
    """The last non-empty line of ``exc``'s text, trimmed to ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def quiet_itk() -> Iterator[None]:
    """Silence ITK warnings on stderr for conditions we turn into clear errors ourselves."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


@contextmanager
def captured_native_stderr() -> Iterator[List[str]]:
    """Send what C/C++ code prints on the process's stderr (file descriptor 2) to a list for the
    block: the NIfTI library reports a short write there ("NWAD: wrote only 0 of N bytes") and
    returns success, so the caller reads the words back instead of the user seeing stray lines."""
    lines: List[str] = []
    sys.stderr.flush()
    try:
        saved = os.dup(2)
        sink = tempfile.TemporaryFile()
    except OSError:  # no descriptor or no temporary space: run the block uncaptured
        yield lines
        return
    try:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())
    finally:
        os.close(saved)
        sink.close()

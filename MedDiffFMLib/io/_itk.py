"""Small helpers around ITK's messages: short reasons for users, silenced warnings."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

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

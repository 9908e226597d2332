"""The Python API: one call per task.

Each call takes a ``SimpleITK.Image`` or a numpy array in (z, y, x) order with ``spacing``,
``origin`` and ``direction`` (SimpleITK's (x, y, z) conventions), and returns the same kind of
object on exactly the input's grid. ``progress`` receives :class:`ProgressEvent` s and ``cancel``
is polled between steps (return True to stop; :class:`CancelledError` is raised).

Pass ``engine=`` (a :class:`~MedDiffFMLib.tasks.Engine`) to reuse a loaded model across calls.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .io import to_image
from .progress import CancelCheck, ProgressCallback
from .tasks.denoise import DenoiseOptions, denoise_image
from .tasks.engine import Engine, EngineOptions

ImageLike = Union[sitk.Image, np.ndarray]


def _as_image(image: ImageLike, spacing, origin, direction) -> sitk.Image:
    return to_image(image, spacing=spacing, origin=origin, direction=direction)


def _like_input(result: sitk.Image, original: ImageLike) -> ImageLike:
    return sitk.GetArrayFromImage(result) if isinstance(original, np.ndarray) else result


def _engine(engine: Optional[Engine], model, device: str, role: str = "base", expect_task: Optional[str] = None) -> Engine:
    return engine or Engine(EngineOptions(model=model, device=device), role=role, expect_task=expect_task)


def denoise(
    image: ImageLike,
    *,
    spacing: Optional[Sequence[float]] = None,
    origin: Optional[Sequence[float]] = None,
    direction: Optional[Sequence[float]] = None,
    model: Optional[str] = None,
    device: str = "auto",
    strength: float = 1.0,
    steps: int = 10,
    noise_hu: Optional[float] = None,
    lam: float = 10.0,
    seed: Optional[int] = 0,
    region: Optional[str] = None,
    allow_non_hu: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    engine: Optional[Engine] = None,
) -> ImageLike:
    """Denoise a CT in HU (zero-shot DiffPIR); see :class:`~MedDiffFMLib.tasks.denoise.DenoiseOptions`."""
    source = _as_image(image, spacing, origin, direction)
    options = DenoiseOptions(strength=strength, steps=steps, noise_hu=noise_hu, lam=lam, seed=seed, region=region,
                             allow_non_hu=allow_non_hu)
    result = denoise_image(source, _engine(engine, model, device), options, progress, cancel)
    return _like_input(result.image, image)

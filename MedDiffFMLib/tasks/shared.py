"""Small steps every task shares: model-dependent option checks, time-step planning with its note,
progress over several passes, and output pixel types."""

from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..engine import Engine
from ..models.config import UNKNOWN_REGION
from ..progress import ProgressCallback, ProgressEvent, notify
from ..sampling import Sampler


def check_region(engine: Engine, region: Optional[str], required: bool = False) -> Optional[str]:
    """Return ``region`` if the model knows it (or, unless ``required``, it is ``"unknown"``); InputError
    naming the choices otherwise."""
    known = tuple(engine.config.regions)
    if region is None:
        if required:
            raise InputError(f"A body region is required: pass one of {', '.join(known)} (--region).")
        return None
    if region == UNKNOWN_REGION and not required:
        return region
    if region not in known:
        extra = "" if required else f", or '{UNKNOWN_REGION}' for none"
        raise InputError(f"Unknown region '{region}'. This model knows: {', '.join(known)}{extra} (--region).")
    return region


def sampling_timesteps(sampler: Sampler, steps: int, start_step: Optional[int],
                       progress: Optional[ProgressCallback]) -> list[int]:
    """Plan the sampler's time steps (:meth:`Sampler.set_timesteps`), with a note when ``steps`` had to be
    capped because the start step leaves fewer distinct steps."""
    timesteps = list(sampler.set_timesteps(steps, start_step=start_step))
    note_capped_steps(steps, timesteps, progress)
    return timesteps


def note_capped_steps(steps: int, timesteps: list, progress: Optional[ProgressCallback]) -> None:
    """A note when the planned ``timesteps`` are fewer than the ``steps`` asked for (the start step
    leaves fewer distinct steps down to 0)."""
    if len(timesteps) < int(steps):
        start = timesteps[0]
        notify(progress, f"--steps {steps} capped at {len(timesteps)}: sampling starts at step t={start}, "
                         f"which leaves only {start + 1} distinct steps down to 0.")


def check_start_step(engine: Engine, start_step: Optional[int]) -> Optional[int]:
    """None (start from pure noise) or a step in [1, T - 1]."""
    if start_step is None:
        return None
    total = engine.config.num_train_timesteps
    if not 1 <= int(start_step) <= total - 1:
        raise InputError(f"--start-step must be between 1 and {total - 1} for this model (got {start_step}).")
    return int(start_step)


class PassProgress:
    """Maps the progress of pass ``index`` of ``passes`` identical passes onto one running total,
    so that several samples (anomaly maps) show as one bar that reaches its end once."""

    def __init__(self, progress: Optional[ProgressCallback], index: int, passes: int) -> None:
        self.progress = progress
        self.index = index
        self.passes = passes

    def __call__(self, event: ProgressEvent) -> None:
        if self.progress is not None:
            total = event.total * self.passes
            self.progress(ProgressEvent(event.stage, event.step + self.index * event.total, total))

    def note(self, message: str) -> None:
        forward = getattr(self.progress, "note", None)
        if callable(forward):
            forward(message)


_INTEGER_RANGES = {
    sitk.sitkInt8: np.iinfo(np.int8),
    sitk.sitkUInt8: np.iinfo(np.uint8),
    sitk.sitkInt16: np.iinfo(np.int16),
    sitk.sitkUInt16: np.iinfo(np.uint16),
    sitk.sitkInt32: np.iinfo(np.int32),
    sitk.sitkUInt32: np.iinfo(np.uint32),
    sitk.sitkInt64: np.iinfo(np.int64),
    sitk.sitkUInt64: np.iinfo(np.uint64),
}


def as_input_type(result: sitk.Image, original: sitk.Image) -> sitk.Image:
    """``result`` (float) in ``original``'s pixel type (rounded and clamped for integer CT), so that
    an int16 scan stays int16 and unchanged voxels stay bit-identical."""
    out = sitk.GetImageFromArray(as_pixel_type(sitk.GetArrayFromImage(result), original.GetPixelID()))
    out.CopyInformation(result)
    return out


def as_pixel_type(values: np.ndarray, pixel_id: int) -> np.ndarray:
    """``values`` in the numpy type of a SimpleITK pixel type: integers are rounded and clipped to
    the type's range, floats keep their value (float64 stays float64)."""
    if pixel_id in _INTEGER_RANGES:
        info = _INTEGER_RANGES[pixel_id]
        return np.clip(np.rint(values), info.min, info.max).astype(info.dtype)
    if pixel_id == sitk.sitkFloat64:
        return np.asarray(values, dtype=np.float64)
    return np.asarray(values, dtype=np.float32)

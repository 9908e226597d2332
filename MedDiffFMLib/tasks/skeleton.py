"""The skeleton every sampling task follows, written once:

1. **prepare** the CT: validate it, the HU check, the body region (:func:`prepare_task_ct`);
2. **preprocessing** stage: the model space and the task's own inputs (:func:`preprocessing`);
3. **plan** the time steps, with the capped-steps note, and seed the generator (:func:`plan_sampling`);
4. the **initial sample** (:meth:`SamplingPlan.noise` / :meth:`SamplingPlan.noised`);
5. **run** the sampler with the task's hooks (:meth:`SamplingPlan.run`);
6. **postprocessing** stage: back to the input grid and pixel type (:func:`postprocessing`).

Progress stages ("preprocessing", the task's sampling stage, "postprocessing") and cancellation
(after preprocessing, before postprocessing, and at every sampler step) are handled here; a task
supplies only what differs (its grid, conditions, hooks and output). Composable functions rather
than a base class: the tasks differ in where the grid comes from (input, anatomy, thin-slice grid)
and in how many passes they run (anomaly averages several), which a template method would have to
re-open with flags.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator, Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from ..device import check_fits_in_memory
from ..engine import Engine
from ..errors import InputError
from ..io import validate_volume
from ..models.config import UNKNOWN_REGION
from ..preprocessing import check_extent, check_hu, guess_region
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from ..sampling import Sampler, SamplingHooks, VolumeNoisePredictor, run_sampler
from .shared import check_region, sampling_timesteps


def prepare_ct(
    image: sitk.Image, *, region: Optional[str] = None, allow_non_hu: bool = False, name: str = "input",
    model_spacing_xyz: Sequence[float] = (1.0, 1.0, 1.0),
) -> tuple[sitk.Image, Optional[str]]:
    """Validate a CT volume (its physical size against the model's ``model_spacing_xyz`` grid included)
    and settle its body region: the given one, None for ``"unknown"`` (no guess), or guessed from the
    image when None."""
    validate_volume(image, name)
    check_extent(image, model_spacing_xyz, name)
    # The input, its float copy, the resampled copies and the result live at once.
    check_fits_in_memory(int(np.prod(image.GetSize())), 6, f"Processing the {name} volume")
    if not allow_non_hu:
        check_hu(image, name)
    if region == UNKNOWN_REGION:
        return image, None
    if region is None:
        region = guess_region(image)
    return image, region


def prepare_task_ct(engine: Engine, image: sitk.Image, region: Optional[str],
                    allow_non_hu: bool) -> tuple[sitk.Image, Optional[str]]:
    """Step 1: the region checked against the model, then :func:`prepare_ct`."""
    return prepare_ct(image, region=check_region(engine, region), allow_non_hu=allow_non_hu,
                      model_spacing_xyz=engine.config.spacing_mm[::-1])


def volume_tensor(array) -> torch.Tensor:
    """(z, y, x) numpy array -> (1, 1, z, y, x) float32 tensor on the CPU."""
    tensor = torch.as_tensor(array, dtype=torch.float32)
    if tensor.ndim != 3:
        raise InputError(f"Expected a 3D volume, got an array of shape {tuple(tensor.shape)}.")
    return tensor[None, None].contiguous()


@contextmanager
def preprocessing(progress: Optional[ProgressCallback], cancel: Optional[CancelCheck]) -> Iterator[None]:
    """Step 2: the "preprocessing" stage (0 then 1 of 1) around the body; cancel is checked after it."""
    report(progress, "preprocessing", 0, 1)
    yield
    report(progress, "preprocessing", 1, 1)
    check_cancel(cancel)


@contextmanager
def postprocessing(progress: Optional[ProgressCallback], cancel: Optional[CancelCheck]) -> Iterator[None]:
    """Step 6: cancel is checked, then the "postprocessing" stage (0 then 1 of 1) around the body."""
    check_cancel(cancel)
    report(progress, "postprocessing", 0, 1)
    yield
    report(progress, "postprocessing", 1, 1)


@dataclass
class SamplingPlan:
    """Steps 3-5: the sampler, its planned time steps (``timesteps[0]`` is the start) and the
    generator every random draw of the run comes from."""

    sampler: Sampler
    timesteps: list[int]
    generator: torch.Generator

    @property
    def schedule(self):
        return self.sampler.schedule

    def reseeded(self, seed: Optional[int]) -> "SamplingPlan":
        """The same plan with a fresh generator (one per anomaly sample)."""
        return replace(self, generator=Engine.generator(seed))

    def noise(self, shape: Sequence[int]) -> torch.Tensor:
        """Step 4 from pure noise: a standard normal float32 sample of ``shape``."""
        return torch.randn(tuple(shape), generator=self.generator, dtype=torch.float32)

    def noised(self, x0: torch.Tensor) -> torch.Tensor:
        """Step 4 from an image: ``x0`` noised to the start step."""
        return self.schedule.add_noise(x0, self.timesteps[0], self.generator)

    def run(
        self,
        predictor: VolumeNoisePredictor,
        x: torch.Tensor,
        *,
        stage: str,
        hooks: Optional[SamplingHooks] = None,
        resample_repeats: int = 1,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelCheck] = None,
    ) -> torch.Tensor:
        """Step 5: the shared sampler loop (progress as ``stage``, cancel at every step)."""
        return run_sampler(predictor, self.sampler, x, hooks=hooks, resample_repeats=resample_repeats,
                           generator=self.generator, progress=progress, cancel=cancel, stage=stage)


def plan_sampling(engine: Engine, *, steps: int, start_step: Optional[int], eta: float, seed: Optional[int],
                  progress: Optional[ProgressCallback]) -> SamplingPlan:
    """Step 3: the engine's sampler with ``eta``, ``steps`` time steps from ``start_step`` (None: from
    pure noise; a note when the steps had to be capped) and a generator seeded with ``seed``."""
    sampler = engine.sampler(eta)
    timesteps = sampling_timesteps(sampler, int(steps), start_step, progress)
    return SamplingPlan(sampler, timesteps, engine.generator(seed))

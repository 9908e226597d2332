"""Healthy reconstructions of a CT from several noise levels (and seeds), and their residuals on the
input grid: what the anomaly map (:mod:`.anomaly`) and its calibration (:mod:`.anomaly_calibration`)
both start from, written once.

Each pass noises the image (model units) to a level ``t`` and runs the shared sampler ``steps`` DDIM
steps from ``t`` down to 0 (``steps = 1``: a single prediction of the clean image). Pass ``k`` of a
level draws its noise from ``seed + k``, so the map is reproducible and every level sees fresh noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..engine import Engine
from ..preprocessing.model_masks import body_mask, body_on_model_grid
from ..progress import CancelCheck, ProgressCallback, check_cancel
from ..sampling import Conditions
from .anomaly_scoring import smooth
from .shared import PassProgress, check_start_step
from .skeleton import plan_sampling, preprocessing, volume_tensor


@dataclass
class Reconstructions:
    """Residuals of one CT: ``residuals[level]`` is the list (one per seed) of Gaussian-smoothed
    ``|input - reconstruction|`` in HU, float32 ``(z, y, x)`` on the input grid."""

    source: np.ndarray  # float32 HU (z, y, x)
    spacing_zyx: tuple
    body: np.ndarray  # bool: :func:`body_mask` of ``source``, found once for the patch skip and the scoring
    residuals: dict[int, list[np.ndarray]]
    healthy: np.ndarray  # the mean reconstruction over every pass, float32 HU
    in_window: np.ndarray  # bool: voxels the model sees (inside the region's HU window)
    steps: int  # sampler steps actually run per pass


def reconstruct_levels(
    image: sitk.Image,
    engine: Engine,
    region: Optional[str],
    levels: Sequence[int],
    *,
    steps: int,
    samples: int,
    seed: Optional[int],
    eta: float,
    smooth_mm: float,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> Reconstructions:
    """Reconstruct ``image`` (a prepared CT in HU) from every level in ``levels``, ``samples`` times each;
    progress runs as one "reconstruction" stage over all passes."""
    with preprocessing(progress, cancel):
        space = engine.model_space(image, region)
    y = volume_tensor(space.model_array)
    source = sitk.GetArrayFromImage(image).astype(np.float32)
    spacing_zyx = tuple(float(s) for s in reversed(image.GetSpacing()))
    body = body_mask(source, spacing_zyx)
    # Air and couch are never scored (the map keeps the eroded body), so their patches skip the network:
    # outside the body the reconstruction is the input (with one step, the body's values are unchanged).
    near_body = body_on_model_grid(space, source, body=body)
    conditions = Conditions(region=engine.region_index(region)).held_outside(near_body, y[0, 0])
    predictor = engine.predictor(space, conditions)
    window = engine.window(region)
    passes = len(levels) * int(samples)
    residuals: dict[int, list[np.ndarray]] = {}
    healthy_sum: Optional[np.ndarray] = None
    steps_run = 0
    index = 0
    for level in levels:
        start = check_start_step(engine, int(level))
        for k in range(int(samples)):
            plan = plan_sampling(engine, steps=steps, start_step=start, eta=eta,
                                 seed=None if seed is None else int(seed) + k, progress=progress if index == 0 else None)
            steps_run = len(plan.timesteps)
            recon = plan.run(predictor, plan.noised(y), stage="reconstruction",
                             progress=PassProgress(progress, index, passes), cancel=cancel)
            check_cancel(cancel)
            healthy = sitk.GetArrayFromImage(space.to_input_grid(recon[0, 0].numpy())).astype(np.float32, copy=False)
            difference = np.subtract(source, healthy, dtype=np.float32)
            np.abs(difference, out=difference)
            residuals.setdefault(int(level), []).append(smooth(difference, spacing_zyx, smooth_mm))
            healthy_sum = healthy if healthy_sum is None else healthy_sum + healthy
            index += 1
    assert healthy_sum is not None
    if passes > 1:
        healthy_sum /= passes
    in_window = (source >= window.low) & (source <= window.high)
    return Reconstructions(source, spacing_zyx, body, residuals, healthy_sum, in_window, steps_run)

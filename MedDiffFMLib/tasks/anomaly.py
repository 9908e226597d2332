"""Zero-shot anomaly maps (paper: noise to t = 950 of 1000, reconstruct, take the difference).

The image (model units) is noised to ``start_step`` and the shared sampler reconstructs a
"healthy" image from there: what the foundation model cannot explain (a lesion, an implant)
changes most. The map is

    map = G_sigma * |input - reconstruction|    (HU of absolute difference, on the input grid)

with G_sigma a Gaussian of ``smooth_mm`` mm (standard deviation, per axis in voxels = mm / spacing;
0 turns smoothing off), averaged over ``samples`` reconstructions with seeds seed, seed + 1, ...
Voxels outside the model's HU window are taken from the input by the reconstruction, so their
difference is 0. ``body_only`` zeroes the map outside the body
(:func:`~MedDiffFMLib.preprocessing.model_masks.body_mask`);
``threshold`` (HU) gives a binary mask map >= threshold. ``score`` is the 99th percentile of the
map (inside the body with ``body_only``): an image-level anomaly score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import option_checks as checks
from ..engine import Engine
from ..io import image_from_array
from ..preprocessing.model_masks import body_mask
from ..progress import CancelCheck, ProgressCallback, check_cancel
from ..sampling import Conditions
from .shared import PassProgress, check_start_step
from .skeleton import plan_sampling, postprocessing, prepare_task_ct, preprocessing, volume_tensor

PAPER_START_STEP = 950  # of T = 1000


@dataclass
class AnomalyOptions:
    """Anomaly-map settings.

    Attributes:
        start_step: diffusion step the image is noised to (None: the paper's 950 of T = 1000,
            scaled to the model's T when T differs).
        steps: sampler steps from ``start_step`` down to 0.
        samples: reconstructions averaged (different seeds).
        smooth_mm: Gaussian smoothing of the map, standard deviation in mm (0: none).
        threshold: HU of absolute difference at or above which a voxel is anomalous (None: no mask).
        body_only: restrict the map (and mask) to the body (connected region above -500 HU).
        eta: DDIM stochasticity.
        seed: random seed of the first sample.
        region: body region (None: guessed).
        allow_non_hu: skip the Hounsfield-unit check.
    """

    start_step: Optional[int] = None
    steps: int = 20
    samples: int = 1
    smooth_mm: float = 2.0
    threshold: Optional[float] = None
    body_only: bool = False
    eta: float = 0.0
    seed: Optional[int] = 0
    region: Optional[str] = None
    allow_non_hu: bool = False

    def validate(self) -> None:
        """Raise InputError (one paragraph) on a value out of range; needs no input and no model."""
        checks.check_start(self.start_step)
        checks.check_steps(self.steps)
        checks.check_int(self.samples, "--samples", 1, why=" (reconstructions to average)")
        checks.check_number(self.smooth_mm, "--smooth-mm", 0.0, why=" (Gaussian standard deviation in mm; 0 = none)")
        if self.threshold is not None:
            checks.check_number(self.threshold, "--threshold", 0.0, why=" (HU of absolute difference)")
        checks.check_eta(self.eta)
        checks.check_seed(self.seed, count=self.samples if isinstance(self.samples, int) else 1)


@dataclass
class AnomalyResult:
    anomaly_map: sitk.Image  # float32 HU of absolute difference
    mask: Optional[sitk.Image]  # uint8 0/1 when a threshold was given
    healthy: sitk.Image  # the (mean) reconstruction, float32 HU
    score: float
    start_step: int
    steps: int
    region: Optional[str]


def _start_step(engine: Engine, start_step: Optional[int]) -> int:
    total = engine.config.num_train_timesteps
    if start_step is None:
        start_step = PAPER_START_STEP
        if total != 1000:
            start_step = int(round(PAPER_START_STEP * total / 1000))
    return check_start_step(engine, start_step)  # type: ignore[return-value]


def anomaly_map_image(
    image: sitk.Image,
    engine: Engine,
    options: Optional[AnomalyOptions] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> AnomalyResult:
    """Anomaly map of a CT (HU) on the input's exact grid; see the module doc for the definition."""
    options = options or AnomalyOptions()
    options.validate()
    steps, samples = int(options.steps), int(options.samples)
    start = _start_step(engine, options.start_step)
    image, region = prepare_task_ct(engine, image, options.region, options.allow_non_hu)
    with preprocessing(progress, cancel):
        space = engine.model_space(image, region)

    plan = plan_sampling(engine, steps=steps, start_step=start, eta=options.eta, seed=options.seed, progress=progress)
    timesteps = plan.timesteps
    y = volume_tensor(space.model_array)
    predictor = engine.predictor(space, Conditions(region=engine.region_index(region)))
    source = sitk.GetArrayFromImage(image).astype(np.float32)
    spacing_zyx = tuple(reversed(image.GetSpacing()))
    # float32 and no accumulators for one sample: a 512^3 CT is 0.5 GB per float32 copy.
    total_map: Optional[np.ndarray] = None
    total_healthy: Optional[np.ndarray] = None
    for index in range(samples):
        if index > 0:  # sample k draws from seed + k
            plan = plan.reseeded(None if options.seed is None else int(options.seed) + index)
        recon = plan.run(predictor, plan.noised(y), stage="reconstruction",
                         progress=PassProgress(progress, index, samples), cancel=cancel)
        check_cancel(cancel)
        healthy = sitk.GetArrayFromImage(space.to_input_grid(recon[0, 0].numpy())).astype(np.float32, copy=False)
        difference = np.subtract(source, healthy, dtype=np.float32)
        np.abs(difference, out=difference)
        smoothed = _smooth(difference, spacing_zyx, options.smooth_mm)
        del difference
        if total_map is None or total_healthy is None:
            total_map, total_healthy = smoothed, healthy
        else:
            total_map += smoothed
            total_healthy += healthy
        del smoothed, healthy

    with postprocessing(progress, cancel):
        assert total_map is not None and total_healthy is not None
        if samples > 1:
            total_map /= samples
            total_healthy /= samples
        amap, healthy = total_map, total_healthy
        inside = body_mask(source, spacing_zyx) if options.body_only else None
        if inside is not None:
            amap[~inside] = 0.0
        values = amap[inside] if inside is not None and inside.any() else amap.ravel()
        score = float(np.percentile(values, 99)) if values.size else 0.0
        geometry = (image.GetSpacing(), image.GetOrigin(), image.GetDirection())
        mask = None
        if options.threshold is not None:
            binary = amap >= float(options.threshold)
            if inside is not None:
                binary &= inside
            mask = image_from_array(binary.astype(np.uint8), *geometry)
    return AnomalyResult(image_from_array(amap, *geometry), mask, image_from_array(healthy, *geometry), score,
                         int(timesteps[0]), len(timesteps), region)


def _smooth(values: np.ndarray, spacing_zyx, sigma_mm: float) -> np.ndarray:
    if sigma_mm <= 0:
        return values
    sigma = [float(sigma_mm) / float(s) for s in spacing_zyx]
    return ndimage.gaussian_filter(values, sigma=sigma, mode="nearest")

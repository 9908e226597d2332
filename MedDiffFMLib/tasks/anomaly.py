"""Zero-shot anomaly maps: where a CT differs from what the foundation model reconstructs as healthy.

Two methods (``method``):

* ``"ensemble"`` (default): the image (model units) is noised to moderate levels (250 and 500 of
  T = 1000, scaled to the model's T) and reconstructed with ``steps`` DDIM steps from each (1: a single
  prediction of the clean image), ``samples`` seeds per level. Each residual ``|input - reconstruction|``
  (HU, Gaussian ``smooth_mm``) is divided by the residual healthy tissue of the same local structure
  gives (HU class x local gradient, :mod:`.anomaly_scoring`), the ratios are averaged, median-filtered
  and kept inside the eroded body and the model's HU window (0 elsewhere). The map is dimensionless:
  1 is a typical healthy voxel of its structure. The table of expected residuals and the default
  ``threshold`` (the score 1 % of healthy body voxels exceed) come from the model folder's
  calibration (:mod:`.anomaly_calibration`); a model without one is normalised by the scan's own
  per-structure medians, and its mask needs an explicit threshold.
* ``"residual"``: the paper's map, kept for comparison: noise to ``start_step`` (default 950 of
  1000), reconstruct with ``steps`` steps (the former default was 20), ``G_sigma * |input -
  reconstruction|`` in HU (``smooth_mm`` default 2 mm), averaged over ``samples`` seeds;
  ``body_only`` zeroes it outside the body; the mask needs an explicit ``threshold`` (HU).

``mask`` = map >= threshold, inside the (eroded) body, without connected parts smaller than
``min_component_ml``. ``score`` is the 99th percentile of the map inside the body: an image-level score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk

from .. import option_checks as checks
from ..engine import Engine
from ..errors import InputError
from ..io import image_from_array
from ..progress import CancelCheck, ProgressCallback, notify
from .anomaly_calibration import (ScoringSettings, ensemble_score, expected_from, load_calibration, scale_levels,
                                  structure_view)
from .anomaly_reconstruction import reconstruct_levels
from .anomaly_scoring import remove_small_components
from .shared import check_start_step
from .skeleton import postprocessing, prepare_task_ct

PAPER_START_STEP = 950  # of T = 1000
METHODS = ("ensemble", "residual")
RESIDUAL_SMOOTH_MM = 2.0


@dataclass
class AnomalyOptions:
    """Anomaly-map settings.

    Attributes:
        method: "ensemble" (moderate noise levels, structure-normalised score) or "residual" (the
            paper's |input - reconstruction| from t = 950, in HU).
        start_step: "residual" only: diffusion step the image is noised to (None: 950 of T = 1000,
            scaled to the model's T).
        steps: sampler steps from each start step down to 0 (1: one prediction of the clean image).
        samples: reconstructions per noise level (seeds seed, seed + 1, ...).
        smooth_mm: Gaussian smoothing of each residual, standard deviation in mm (None: the method's
            default, 2 mm for "residual", the calibration's for "ensemble"; 0: none).
        threshold: map value at or above which a voxel is anomalous (None: the model's calibrated
            default with "ensemble", no mask with "residual").
        min_component_ml: mask parts smaller than this (millilitres) are dropped.
        body_only: "residual" only: zero the map outside the body ("ensemble" always keeps the eroded body).
        eta: DDIM stochasticity.
        seed: random seed of the first sample.
        region: body region (None: guessed).
        allow_non_hu: skip the Hounsfield-unit check.
    """

    method: str = "ensemble"
    start_step: Optional[int] = None
    steps: int = 1
    samples: int = 1
    smooth_mm: Optional[float] = None
    threshold: Optional[float] = None
    min_component_ml: float = 0.1
    body_only: bool = False
    eta: float = 0.0
    seed: Optional[int] = 0
    region: Optional[str] = None
    allow_non_hu: bool = False

    def validate(self) -> None:
        """Raise InputError (one paragraph) on a value out of range; needs no input and no model."""
        if self.method not in METHODS:
            raise InputError(f"--method must be one of {', '.join(METHODS)} (got '{self.method}').")
        checks.check_start(self.start_step)
        checks.check_steps(self.steps)
        checks.check_int(self.samples, "--samples", 1, why=" (reconstructions per noise level)")
        if self.smooth_mm is not None:
            checks.check_number(self.smooth_mm, "--smooth-mm", 0.0, why=" (Gaussian standard deviation in mm; 0 = none)")
        if self.threshold is not None:
            checks.check_number(self.threshold, "--threshold", 0.0, why=" (map value: HU with --method residual, "
                                "times the healthy residual with --method ensemble)")
        checks.check_number(self.min_component_ml, "--min-component-ml", 0.0, why=" (millilitres)")
        checks.check_eta(self.eta)
        checks.check_seed(self.seed, count=self.samples if isinstance(self.samples, int) else 1)


@dataclass
class AnomalyResult:
    anomaly_map: sitk.Image  # float32: HU of absolute difference ("residual") or times the healthy residual
    mask: Optional[sitk.Image]  # uint8 0/1 when a threshold was given or calibrated
    healthy: sitk.Image  # the (mean) reconstruction, float32 HU
    score: float
    start_step: int  # the highest noise level
    steps: int  # sampler steps per pass
    region: Optional[str]
    method: str = "ensemble"
    threshold: Optional[float] = None  # the threshold the mask used
    calibrated: bool = False  # the map was normalised by the model's shipped healthy statistics


def _start_step(engine: Engine, start_step: Optional[int]) -> int:
    total = engine.config.num_train_timesteps
    if start_step is None:
        start_step = PAPER_START_STEP
        if total != 1000:
            start_step = int(round(PAPER_START_STEP * total / 1000))
    return check_start_step(engine, start_step)  # type: ignore[return-value]


def default_threshold(engine: Engine, method: str = "ensemble") -> Optional[float]:
    """The threshold ``--mask-out`` uses without ``--threshold``: the calibrated one of the model's
    "ensemble" map, or None (the "residual" map and uncalibrated models have none)."""
    if method != "ensemble":
        return None
    calibration = load_calibration(engine)
    return None if calibration is None else calibration.threshold


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
    calibration = load_calibration(engine) if options.method == "ensemble" else None
    if options.method == "ensemble":
        settings = calibration.settings if calibration is not None else ScoringSettings(
            levels=scale_levels(engine, ScoringSettings.levels))
        levels = tuple(settings.levels)
        smooth_mm = settings.smooth_mm if options.smooth_mm is None else float(options.smooth_mm)
    else:
        settings = None
        levels = (_start_step(engine, options.start_step),)
        smooth_mm = RESIDUAL_SMOOTH_MM if options.smooth_mm is None else float(options.smooth_mm)
    for level in levels:
        check_start_step(engine, level)
    image, region = prepare_task_ct(engine, image, options.region, options.allow_non_hu)
    recons = reconstruct_levels(image, engine, region, levels, steps=int(options.steps), samples=int(options.samples),
                                seed=options.seed, eta=options.eta, smooth_mm=smooth_mm, progress=progress,
                                cancel=cancel)
    spacing_zyx = recons.spacing_zyx
    with postprocessing(progress, cancel):
        threshold = options.threshold
        if settings is not None:
            view = structure_view(recons, settings)
            if calibration is not None:
                expected = calibration.expected
                threshold = calibration.threshold if threshold is None else threshold
            else:
                notify(progress, f"Model '{engine.model_name}' ships no anomaly calibration: the map is normalised by "
                                 "this scan's own per-structure residuals, and a mask needs --threshold.")
                expected, _ = expected_from([(recons, view)], settings)
            amap = ensemble_score(recons, view, expected, settings)
            inside: Optional[np.ndarray] = view.scored
        else:
            amap = np.mean([r for rs in recons.residuals.values() for r in rs], axis=0).astype(np.float32)
            inside = recons.body if options.body_only else None
            if inside is not None:
                amap[~inside] = 0.0
        values = amap[inside] if inside is not None and inside.any() else amap.ravel()
        score = float(np.percentile(values, 99)) if values.size else 0.0
        geometry = (image.GetSpacing(), image.GetOrigin(), image.GetDirection())
        mask = None
        if threshold is not None:
            binary = amap >= float(threshold)
            if inside is not None:
                binary &= inside
            binary = remove_small_components(binary, spacing_zyx, float(options.min_component_ml))
            mask = image_from_array(binary.astype(np.uint8), *geometry)
    return AnomalyResult(image_from_array(amap, *geometry), mask, image_from_array(recons.healthy, *geometry), score,
                         int(max(levels)), recons.steps, region, options.method,
                         None if threshold is None else float(threshold), calibration is not None)


"""Healthy statistics for the anomaly map, shipped in the model folder (``anomaly_calibration.json``,
listed in its sha256 manifest) and made by ``meddifffm calibrate-anomaly`` from healthy CTs.

The file holds, for the model's weights (their fingerprint):

* the settings the map must use to match them: noise ``levels``, sampler ``steps`` per level, the
  residual's Gaussian ``smooth_mm``, the structure bins' ``hu_edges`` / ``gradient_edges`` and
  ``gradient_sigma_mm``, the score's ``median_mm`` and the body's ``erode_mm``;
* ``expected[level]``: the median healthy residual (HU) per structure bin (HU class x gradient class);
* ``threshold``: the score that ``1 - quantile`` (1 %) of the healthy calibration voxels inside the
  eroded body and the model's HU window exceed: the default cut of ``--mask-out`` and of the Slicer
  segment. A map value of 1 is a typical healthy voxel of its structure; the threshold says how
  many times that a voxel must differ before it is called anomalous.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..engine import Engine
from ..errors import ModelError
from ..models.weights import ModelFiles
from ..preprocessing.model_masks import body_mask
from ..progress import CancelCheck, ProgressCallback, notify
from .anomaly_reconstruction import Reconstructions, reconstruct_levels
from .anomaly_scoring import (bin_medians, eroded_body, fill_table, local_gradient, median_filtered,
                              normalised_residual, structure_bins)
from .skeleton import prepare_task_ct

CALIBRATION_FILE = "anomaly_calibration.json"
FORMAT = "meddifffm-anomaly-calibration/1"
DEFAULT_LEVELS = (250, 500)  # of T = 1000: moderate noise (AnoDDPM 250, pDDPM 500), scaled for another T
HU_EDGES = (-500.0, -200.0, -50.0, 20.0, 80.0, 150.0, 300.0, 700.0)
GRADIENT_EDGES = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0)  # HU per mm
HEALTHY_QUANTILE = 0.99
MIN_BIN_VOXELS = 200


@dataclass
class ScoringSettings:
    """How residuals become the map; the calibration file records the ones its statistics belong to."""

    levels: tuple = DEFAULT_LEVELS
    steps: int = 1
    smooth_mm: float = 1.0
    gradient_sigma_mm: float = 1.5
    median_mm: float = 3.0
    erode_mm: float = 3.0
    hu_edges: tuple = HU_EDGES
    gradient_edges: tuple = GRADIENT_EDGES

    @property
    def table_shape(self) -> tuple[int, int]:
        return len(self.hu_edges) + 1, len(self.gradient_edges) + 1


@dataclass
class AnomalyCalibration:
    """The healthy statistics of one model's weights (see the module doc)."""

    settings: ScoringSettings
    expected: dict[int, np.ndarray]  # level -> (hu classes, gradient classes) median healthy residual, HU
    threshold: float
    quantile: float = HEALTHY_QUANTILE
    fingerprint: str = ""
    cases: list = field(default_factory=list)
    made: str = ""

    def to_json(self) -> str:
        settings = asdict(self.settings)
        settings = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
        return json.dumps({
            "format": FORMAT, "fingerprint": self.fingerprint, "made": self.made, "settings": settings,
            "threshold": round(float(self.threshold), 4), "quantile": self.quantile,
            "expected": {str(level): np.round(table, 3).tolist() for level, table in self.expected.items()},
            "cases": self.cases,
        }, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "calibration") -> "AnomalyCalibration":
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT:
                raise ValueError(f"format '{doc.get('format')}', this MedDiffFM reads '{FORMAT}'")
            raw = dict(doc["settings"])
            settings = ScoringSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
            expected = {int(level): np.asarray(table, dtype=np.float64) for level, table in doc["expected"].items()}
            for level, table in expected.items():
                if table.shape != settings.table_shape:
                    raise ValueError(f"the table of level {level} is {table.shape}, not {settings.table_shape}")
            return cls(settings, expected, float(doc["threshold"]), float(doc.get("quantile", HEALTHY_QUANTILE)),
                       str(doc.get("fingerprint", "")), list(doc.get("cases", [])), str(doc.get("made", "")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ModelError(f"The anomaly calibration '{source}' is unreadable ({error}). Make it again with "
                             "`meddifffm calibrate-anomaly`.") from error


def load_calibration(engine: Engine) -> Optional[AnomalyCalibration]:
    """The calibration shipped with the engine's model (see :func:`calibration_of`)."""
    return calibration_of(engine.loaded.files)


def calibration_of(files: ModelFiles) -> Optional[AnomalyCalibration]:
    """The calibration of a verified model folder: only a file its manifest lists (so its checksum was
    verified) and made for these weights; None otherwise."""
    if CALIBRATION_FILE not in files.files:
        return None
    calibration = AnomalyCalibration.from_json((Path(files.path) / CALIBRATION_FILE).read_text(),
                                               str(Path(files.path) / CALIBRATION_FILE))
    if calibration.fingerprint and calibration.fingerprint != files.fingerprint:
        return None
    return calibration


def scale_levels(engine: Engine, levels: Sequence[int]) -> tuple:
    """Levels given for T = 1000 on the model's own T."""
    total = engine.config.num_train_timesteps
    return tuple(int(round(level * total / 1000)) for level in levels)


@dataclass
class StructureView:
    """A CT's structure bins and the voxels scored (inside the eroded body and the model's window)."""

    bins: np.ndarray
    scored: np.ndarray


def structure_view(recons: Reconstructions, settings: ScoringSettings) -> StructureView:
    gradient = local_gradient(recons.source, recons.spacing_zyx, settings.gradient_sigma_mm)
    bins = structure_bins(recons.source, gradient, settings.hu_edges, settings.gradient_edges)
    body = eroded_body(recons.body, recons.spacing_zyx, settings.erode_mm)
    return StructureView(bins, body & recons.in_window)


def ensemble_score(recons: Reconstructions, view: StructureView, expected: dict[int, np.ndarray],
                   settings: ScoringSettings) -> np.ndarray:
    """The map: the mean over levels and seeds of residual / expected healthy residual of the voxel's
    structure, median-filtered, 0 outside the scored voxels."""
    total = np.zeros(recons.source.shape, dtype=np.float32)
    count = 0
    for level, residuals in recons.residuals.items():
        for residual in residuals:
            total += normalised_residual(residual, view.bins, expected[level])
            count += 1
    total /= max(count, 1)
    score = median_filtered(total, recons.spacing_zyx, settings.median_mm)
    score[~view.scored] = 0.0
    return score.astype(np.float32, copy=False)


def expected_from(items: Sequence[tuple[Reconstructions, StructureView]], settings: ScoringSettings
                  ) -> tuple[dict[int, np.ndarray], int]:
    """The per-level table of median healthy residuals over the scored voxels of ``items``; and the voxels."""
    hu_classes, gradient_classes = settings.table_shape
    expected: dict[int, np.ndarray] = {}
    voxels = 0
    for level in settings.levels:
        values = np.concatenate([r[view.scored] for recons, view in items for r in recons.residuals[level]])
        bins = np.concatenate([view.bins[view.scored] for recons, view in items for _ in recons.residuals[level]])
        medians, _ = bin_medians(values, bins, hu_classes * gradient_classes, MIN_BIN_VOXELS)
        fallback = float(np.median(values)) if values.size else 1.0
        expected[level] = fill_table(medians, hu_classes, gradient_classes, fallback)
        voxels = int(sum(view.scored.sum() for _, view in items))
    return expected, voxels


def calibrate(
    images: Sequence[tuple[str, sitk.Image]],
    engine: Engine,
    *,
    settings: Optional[ScoringSettings] = None,
    region: Optional[str] = None,
    seed: int = 0,
    quantile: float = HEALTHY_QUANTILE,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> AnomalyCalibration:
    """Healthy statistics from ``images`` (name, CT in HU without lesions): reconstruct each from the
    settings' levels, tabulate the median residual per structure bin, then score the same voxels with
    that table and take the ``quantile`` as the default threshold."""
    settings = settings or ScoringSettings(levels=scale_levels(engine, DEFAULT_LEVELS))
    items: list[tuple[Reconstructions, StructureView]] = []
    cases = []
    for name, image in images:
        image, case_region = prepare_task_ct(engine, image, region, False)
        notify(progress, f"Calibrating on {name} (region {case_region or 'none'}).")
        recons = reconstruct_levels(image, engine, case_region, settings.levels, steps=settings.steps, samples=1,
                                    seed=seed, eta=0.0, smooth_mm=settings.smooth_mm, progress=progress,
                                    cancel=cancel)
        view = structure_view(recons, settings)
        items.append((recons, view))
        cases.append({"name": name, "region": case_region, "size_zyx": list(recons.source.shape),
                      "scored_voxels": int(view.scored.sum())})
    expected, _ = expected_from(items, settings)
    scores = np.concatenate([ensemble_score(recons, view, expected, settings)[view.scored] for recons, view in items])
    threshold = float(np.quantile(scores, quantile)) if scores.size else float("nan")
    if not np.isfinite(threshold):
        raise ModelError("No healthy voxel inside the body and the model's HU window: nothing to calibrate on.")
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    return AnomalyCalibration(settings, expected, threshold, quantile, engine.loaded.files.fingerprint, cases, made)


def body_centred_crop(image: sitk.Image, size_mm: float) -> sitk.Image:
    """A box of at most ``size_mm`` mm per axis around the centre of the body's bounding box: calibration
    on a CPU stays affordable while the box still holds the body's typical structures."""
    hu = sitk.GetArrayFromImage(image)
    spacing_zyx = np.asarray(image.GetSpacing()[::-1], dtype=float)
    body = body_mask(hu, spacing_zyx)
    where = np.argwhere(body) if body.any() else np.argwhere(np.ones(hu.shape, bool))
    centre = (where.min(axis=0) + where.max(axis=0)) / 2.0
    half = np.floor(float(size_mm) / spacing_zyx / 2.0).astype(int)
    low = np.clip(np.round(centre).astype(int) - half, 0, None)
    high = np.minimum(low + 2 * half + 1, hu.shape)
    low = np.maximum(high - (2 * half + 1), 0)
    index = [int(v) for v in low[::-1]]
    size = [int(v) for v in (high - low)[::-1]]
    return sitk.RegionOfInterest(image, size, index)

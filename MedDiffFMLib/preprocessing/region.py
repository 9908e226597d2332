"""Guess the body region of a CT (in HU) from a few coarse features; None when unsure.

On a 4 mm copy, slice by slice along the axis closest to head-feet: the body is the largest
connected region above -400 HU and its convex hull (scipy) stands for the body cross-section
(it also closes a body cut by a crop). Features: the fraction of the hull that is air (< -400 HU: lungs,
bowel gas), the median hull area, and the fraction of the body that is dense bone (> 700 HU).

Rules (calibrated on the shared CT set; the caller lets the user override with --region):
- chest: air >= 15 % of the body (chest scans and crops 20-35 %; abdomen 3-6 %; limbs <= 10 %);
- head_neck: dense bone >= 6 % of the body (skull: 9 %; others <= 4 %) and area <= 350 cm^2;
- abdomen: area >= 450 cm^2 (abdomen 720-810 cm^2; limb crops <= 390 cm^2), little air and bone;
- otherwise None (e.g. limbs, neck, small crops).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ..io import geometry_of
from .resample import grid_for_spacing, resample_like

WORK_SPACING_MM = 4.0
BODY_HU = -400.0
BONE_HU = 700.0
CHEST_MIN_AIR = 0.15
HEAD_MIN_BONE = 0.06
HEAD_MAX_AREA_CM2 = 350.0
ABDOMEN_MIN_AREA_CM2 = 450.0


@dataclass(frozen=True)
class RegionFeatures:
    """What :func:`guess_region` measured (fractions in [0, 1], area in cm^2)."""

    air_in_body: float
    bone_in_body: float
    median_area_cm2: float


def _slices_first(image: sitk.Image, array: np.ndarray) -> np.ndarray:
    # Index axis (x, y, z) most aligned with world z (head-feet) -> numpy axis 2 - index.
    direction = geometry_of(image).direction_matrix
    axis_xyz = int(np.argmax(np.abs(direction[2, :])))
    return np.moveaxis(array, 2 - axis_xyz, 0)


def _convex_fill(region: np.ndarray) -> np.ndarray:
    """Fill the convex hull of a 2D boolean region (pixel centres; scipy, no scikit-image)."""
    points = np.argwhere(region).astype(float)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):  # fewer than 3 points, or all on one line
        return region
    grid = np.indices(region.shape).reshape(2, -1).T.astype(float)
    inside = np.all(grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9, axis=1)
    return inside.reshape(region.shape) | region


def _body_hull(body_slice: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(body_slice)
    if n == 0:
        return body_slice
    largest = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return _convex_fill(largest)


def region_features(image: sitk.Image) -> Optional[RegionFeatures]:
    """Measure the features :func:`guess_region` uses; None when no body is found."""
    grid = grid_for_spacing(image, WORK_SPACING_MM)
    coarse = resample_like(sitk.Cast(image, sitk.sitkFloat32), grid, "linear", -1000.0, True)
    a = _slices_first(coarse, sitk.GetArrayFromImage(coarse))
    body = a > BODY_HU
    hull = np.stack([_body_hull(s) for s in body])
    if not hull.any():
        return None
    areas = hull.sum(axis=(1, 2))
    area_cm2 = float(np.median(areas[areas > 0])) * WORK_SPACING_MM**2 / 100.0
    return RegionFeatures(
        air_in_body=float(np.count_nonzero(hull & (a < BODY_HU))) / float(hull.sum()),
        bone_in_body=float(np.count_nonzero(a > BONE_HU)) / float(max(body.sum(), 1)),
        median_area_cm2=area_cm2,
    )


def guess_region(image: sitk.Image) -> Optional[str]:
    """"chest", "head_neck", "abdomen" or None (unsure) for a CT in HU; see the module doc."""
    f = region_features(image)
    if f is None:
        return None
    if f.air_in_body >= CHEST_MIN_AIR:
        return "chest"
    if f.bone_in_body >= HEAD_MIN_BONE and f.median_area_cm2 <= HEAD_MAX_AREA_CM2:
        return "head_neck"
    if f.median_area_cm2 >= ABDOMEN_MIN_AREA_CM2 and f.bone_in_body < HEAD_MIN_BONE:
        return "abdomen"
    return None

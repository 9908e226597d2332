"""Anomaly scoring that discounts anatomy's own edges: residuals divided by what healthy tissue of the
same local structure gives, then a median filter, an eroded body mask and small-component removal.

Pure numpy / SciPy on the input grid; the reconstructions come from :mod:`.anomaly`, the table of
expected healthy residuals from :mod:`.anomaly_calibration`. A voxel's *structure bin* is its HU class
(``hu_edges``) crossed with its local gradient class (``gradient_edges``, the Gaussian gradient magnitude
in HU/mm at ``gradient_sigma_mm``): a lung border, the skin or a bone edge are high-gradient bins where
healthy reconstructions differ a lot, so the same residual there scores low; a residual inside
homogeneous soft tissue scores high. Published for orientation: Meissen et al. (MIDL 2022) on edges
swamping residual maps; Behrendt et al. (2024) on normalised multi-level scores.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

# Below this (HU of absolute difference) an expected residual is not trusted as a divisor.
MIN_EXPECTED_HU = 1.0


def voxel_sigma(spacing_zyx: Sequence[float], mm: float) -> list[float]:
    """A length in mm as a per-axis standard deviation in voxels."""
    return [float(mm) / float(s) for s in spacing_zyx]


def smooth(values: np.ndarray, spacing_zyx: Sequence[float], sigma_mm: float) -> np.ndarray:
    """Gaussian smoothing with a standard deviation of ``sigma_mm`` mm (0: unchanged)."""
    if sigma_mm <= 0:
        return values
    return ndimage.gaussian_filter(values, sigma=voxel_sigma(spacing_zyx, sigma_mm), mode="nearest")


def local_gradient(hu: np.ndarray, spacing_zyx: Sequence[float], sigma_mm: float) -> np.ndarray:
    """Gaussian gradient magnitude of ``hu`` in HU per mm (derivatives scaled by each axis' spacing)."""
    sigma = voxel_sigma(spacing_zyx, sigma_mm)
    hu = np.asarray(hu, dtype=np.float32)
    total = np.zeros(hu.shape, dtype=np.float32)
    for axis, step in enumerate(spacing_zyx):
        order = [0, 0, 0]
        order[axis] = 1
        derivative = ndimage.gaussian_filter(hu, sigma=sigma, order=order, mode="nearest") / np.float32(step)
        total += derivative * derivative
    return np.sqrt(total, out=total)


def structure_bins(hu: np.ndarray, gradient: np.ndarray, hu_edges: Sequence[float],
                   gradient_edges: Sequence[float]) -> np.ndarray:
    """Flat bin index per voxel: ``hu_class * (len(gradient_edges) + 1) + gradient_class``."""
    hu_class = np.digitize(hu, np.asarray(hu_edges, dtype=np.float32))
    gradient_class = np.digitize(gradient, np.asarray(gradient_edges, dtype=np.float32))
    return (hu_class * (len(gradient_edges) + 1) + gradient_class).astype(np.int32)


def bin_medians(values: np.ndarray, bins: np.ndarray, count: int, min_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(median, voxels)`` of ``values`` per bin index in ``[0, count)``; NaN where a bin has fewer than
    ``min_voxels`` voxels."""
    order = np.argsort(bins, kind="stable")
    sorted_bins, sorted_values = bins[order], values[order]
    starts = np.searchsorted(sorted_bins, np.arange(count))
    ends = np.searchsorted(sorted_bins, np.arange(count), side="right")
    medians = np.full(count, np.nan, dtype=np.float64)
    for index, (start, end) in enumerate(zip(starts, ends)):
        if end - start >= min_voxels:
            medians[index] = float(np.median(sorted_values[start:end]))
    return medians, (ends - starts).astype(np.int64)


def fill_table(medians: np.ndarray, hu_classes: int, gradient_classes: int, fallback: float) -> np.ndarray:
    """Complete a (hu_classes x gradient_classes) table of expected residuals with too few healthy voxels
    in some cells: an empty cell takes the largest filled value of lower gradient in its HU class (a
    sharper edge never expects less), else the HU class's largest, else ``fallback``."""
    table = np.asarray(medians, dtype=np.float64).reshape(hu_classes, gradient_classes).copy()
    for row in table:
        known = row[np.isfinite(row)]
        running = np.nan
        for index in range(gradient_classes):
            if np.isfinite(row[index]):
                running = row[index] if not np.isfinite(running) else max(running, row[index])
                row[index] = running
            elif np.isfinite(running):
                row[index] = running
            elif known.size:
                row[index] = float(known.max())
    table[~np.isfinite(table)] = fallback
    return np.maximum(table, MIN_EXPECTED_HU)


def normalised_residual(residual: np.ndarray, bins: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``residual / expected[bin]``: 1 is a typical healthy voxel of that structure."""
    expected = np.asarray(table, dtype=np.float32).ravel()[bins]
    return np.divide(residual, expected, dtype=np.float32)


def eroded_body(body: np.ndarray, spacing_zyx: Sequence[float], erode_mm: float) -> np.ndarray:
    """``body`` shrunk by ``erode_mm`` mm (an ellipsoid per the spacing): the skin and the body outline
    are edges every reconstruction misses a little, never the lesions a reader is after."""
    if erode_mm <= 0 or not body.any():
        return body
    radius = [int(np.floor(float(erode_mm) / float(s))) for s in spacing_zyx]
    if not any(radius):
        return body
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g / max(r, 1)) ** 2 for g, r in zip(grid, radius)) <= 1.0
    return ndimage.binary_erosion(body, structure=ball)


def median_filtered(values: np.ndarray, spacing_zyx: Sequence[float], size_mm: float) -> np.ndarray:
    """Median filter over a box of about ``size_mm`` mm (an odd number of voxels per axis, at least 1)."""
    if size_mm <= 0:
        return values
    size = [max(1, int(round(float(size_mm) / float(s))) | 1) for s in spacing_zyx]
    if all(s == 1 for s in size):
        return values
    return ndimage.median_filter(values, size=size, mode="nearest")


def remove_small_components(mask: np.ndarray, spacing_zyx: Sequence[float], min_ml: float) -> np.ndarray:
    """``mask`` without connected components (26-connected) smaller than ``min_ml`` millilitres."""
    if min_ml <= 0 or not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    sizes = np.bincount(labels.ravel())[1:] * voxel_ml
    keep = np.zeros(count + 1, dtype=bool)
    keep[1:] = sizes >= float(min_ml)
    return keep[labels]

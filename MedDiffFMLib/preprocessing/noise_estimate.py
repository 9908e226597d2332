"""Estimate the noise standard deviation of a CT from the image itself."""

from __future__ import annotations

import numpy as np

# Soft tissue is nearly flat at CT resolution, so voxel-to-voxel differences there are mostly noise.
SOFT_TISSUE_HU = (-150.0, 250.0)


def estimate_noise_hu(hu: np.ndarray, tissue_range: tuple[float, float] = SOFT_TISSUE_HU) -> float:
    """Robust noise std (HU) of a (z, y, x) volume.

    Uses the median absolute deviation of neighbour differences along each axis, restricted to
    pairs of voxels that both lie in soft tissue; differences of independent noise have std
    sqrt(2) sigma, and the MAD ignores the few edges that slip through. The smallest of the
    per-axis estimates is kept (correlated noise along a thick-slice axis overestimates).
    Returns 0 when there is too little soft tissue to tell.
    """
    hu = np.asarray(hu, dtype=np.float32)
    low, high = tissue_range
    inside = (hu >= low) & (hu <= high)
    estimates = []
    for axis in range(3):
        if hu.shape[axis] < 2:
            continue
        a = np.moveaxis(hu, axis, 0)
        m = np.moveaxis(inside, axis, 0)
        pair = m[1:] & m[:-1]
        if pair.sum() < 500:
            continue
        diffs = (a[1:] - a[:-1])[pair]
        mad = np.median(np.abs(diffs - np.median(diffs)))
        estimates.append(1.4826 * mad / np.sqrt(2.0))
    return float(min(estimates)) if estimates else 0.0

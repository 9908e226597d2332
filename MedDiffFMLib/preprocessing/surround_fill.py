"""A smooth fill of a masked region from the values around it (the start of healthy inpainting).

RePaint from pure noise must invent the region's intensity from the model's prior alone; a model
without a body region (or an under-trained one) can then fill muscle with fat or air. Starting
instead from this fill noised to an intermediate step keeps the surrounding tissue's intensity and
lets the model add only texture and structure (SDEdit-style start, see :mod:`..tasks.inpaint`).

Normalised convolution at growing scales: every unknown voxel takes the Gaussian-weighted mean of
the known voxels at the smallest scale that reaches it, so voxels near the border follow their
neighbours and the centre of a large region takes a wider mean. Written here because neither SciPy
nor SimpleITK offers a masked (normalised) fill; skimage's biharmonic inpainting would do it but is
not a dependency and solves a sparse system far slower on 3D volumes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# A voxel counts as reached at a scale once its known weight is this fraction of a full neighbourhood.
MIN_WEIGHT = 1e-2


def surround_fill(values: np.ndarray, known: np.ndarray, first_sigma: float = 2.0) -> np.ndarray:
    """``values`` (any shape) with every voxel where ``known`` is False replaced by a smooth fill from
    the known voxels; known voxels are returned unchanged (float32 copy).

    Raises ValueError when no voxel is known (nothing to fill from).
    """
    known = np.asarray(known, dtype=bool)
    if known.shape != values.shape:
        raise ValueError(f"known mask shape {known.shape} differs from the values' {values.shape}")
    if not known.any():
        raise ValueError("no known voxel to fill from")
    out = np.array(values, dtype=np.float32, copy=True)
    weight = known.astype(np.float32)
    weighted = np.where(known, out, 0.0).astype(np.float32)
    todo = ~known
    sigma = float(first_sigma)
    largest = 4.0 * max(values.shape)
    while todo.any() and sigma <= largest:
        total = ndimage.gaussian_filter(weight, sigma, mode="nearest")
        reached = todo & (total > MIN_WEIGHT)
        if reached.any():
            mean = ndimage.gaussian_filter(weighted, sigma, mode="nearest")
            out[reached] = mean[reached] / total[reached]
            todo &= ~reached
        sigma *= 2.0
    if todo.any():  # a scale beyond the volume's size: the mean of everything known
        out[todo] = float(out[known].mean())
    return out

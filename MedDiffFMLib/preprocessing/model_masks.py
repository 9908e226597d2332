"""Masks for the tasks (built on :mod:`.masks`): user masks checked and put on the image grid, their model-grid versions,
and the body mask.

A mask drawn in Slicer often lives on another grid than the image (a segmentation's own
geometry): it is resampled by physical position (nearest neighbour) and the user is told so.
An empty mask, or one that misses the image, is an :class:`~MedDiffFMLib.errors.InputError`.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..io import Geometry
from ..progress import ProgressCallback, notify
from .masks import mask_on_grid
from .model_space import ModelSpace

BODY_HU = -500.0


def mask_for_image(
    mask: Union[sitk.Image, np.ndarray, None],
    image: sitk.Image,
    *,
    name: str = "mask",
    label: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
) -> tuple[np.ndarray, bool]:
    """``(inside, resampled)``: a bool ``(z, y, x)`` mask on ``image``'s grid (any non-zero voxel,
    or ``label``) and whether it had to be resampled.

    A mask on another grid is resampled (nearest neighbour, by physical position) with a note
    to the user; an empty mask or one outside the image raises InputError.
    """
    if mask is None:
        raise InputError(f"This task needs a {name}: pass a label volume (or Slicer segment) marking the region.")
    inside, resampled = mask_on_grid(mask, image, name=name, label=label)
    if resampled:
        notify(
            progress,
            f"The {name} is on a different grid from the image (size, spacing, origin or direction differ); "
            f"it was resampled onto the image grid by physical position (nearest neighbour): "
            f"{int(inside.sum())} image voxels are inside.",
        )
    return inside, resampled


def covering_mask(space: ModelSpace, mask: np.ndarray) -> np.ndarray:
    """Model-grid voxels whose cell touches ``mask`` (bool, input grid): a superset of the mask.

    Linear resampling alone misses a small mask lying between coarse model voxel centres, so the
    mask is first dilated by half a model voxel (the two grids share their direction).
    """
    mask = np.asarray(mask, dtype=bool)
    spacing_in = np.asarray(space.input_geometry.spacing[::-1], dtype=float)  # (z, y, x)
    spacing_model = np.asarray(space.model_geometry.spacing[::-1], dtype=float)
    radius = np.ceil(spacing_model / (2.0 * spacing_in)).astype(int)
    dilated = ndimage.maximum_filter(mask, size=tuple(2 * radius + 1)) if radius.any() else mask
    return space.mask_to_model(dilated, threshold=1e-3)


def shape_mask(space: ModelSpace, mask: np.ndarray) -> np.ndarray:
    """The mask's shape on the model grid (voxels at least half covered), or its covering mask
    when the mask is too small to cover half of any model voxel."""
    inside = space.mask_to_model(np.asarray(mask, dtype=bool), threshold=0.5)
    return inside if inside.any() else covering_mask(space, mask)


def body_mask(hu: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0), threshold: float = BODY_HU) -> np.ndarray:
    """The body: the connected region(s) above ``threshold`` HU large enough to be the patient
    (the largest one and any at least 30 % of its size, e.g. the other leg; the table,
    clothes and noise are smaller), with enclosed air (lungs, bowel gas) filled in, slice by slice and in 3D.
    """
    hu = np.asarray(hu)
    above = hu > threshold
    # A one-voxel opening (along axes finer than 2 mm) cuts thin bridges to the table and speckle.
    radius = (np.asarray(spacing_zyx, dtype=float) <= 2.0).astype(int)
    opened = ndimage.binary_opening(above, structure=np.ones(tuple(2 * r + 1 for r in radius), bool))
    if not opened.any():
        opened = above
    labels, count = ndimage.label(opened)
    if count == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= 0.3 * sizes.max()) + 1
    body = np.isin(labels, keep)
    body = np.stack([ndimage.binary_fill_holes(s) for s in body])
    return ndimage.binary_fill_holes(body)


# The network still runs this far beyond the skin, so the body's edge is restored as before.
BODY_MARGIN_MM = 10.0


def body_on_model_grid(space: ModelSpace, hu: np.ndarray, margin_mm: float = BODY_MARGIN_MM,
                       geometry: Optional[Geometry] = None, body: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """Where the network's answer is needed for a restoration task (bool, ``space.model_array``'s shape):
    the model-grid voxels within ``margin_mm`` (a box) of :func:`body_mask` of ``hu`` (unclipped HU on
    the input's own grid, or on ``geometry``; ``body``: that mask, when the caller has it already). None
    when no body is found: then the network runs everywhere."""
    grid = geometry or space.input_geometry
    if body is None:
        body = body_mask(hu, grid.spacing[::-1])
    if not body.any():
        return None
    covering = space.mask_to_model(body, threshold=1e-3, geometry=grid)
    radius = np.ceil(margin_mm / np.asarray(space.model_geometry.spacing[::-1], dtype=float)).astype(int)
    # maximum_filter with a box runs axis by axis: fast on a whole CT, unlike a ball's dilation.
    return ndimage.maximum_filter(covering, size=tuple(2 * radius + 1)) if radius.any() else covering


def region_of_interest(
    mask: np.ndarray, margin: Sequence[int], min_size: Sequence[int]
) -> tuple[slice, slice, slice]:
    """The box around ``mask`` (bool, z, y, x) grown by ``margin`` voxels per side and to at least
    ``min_size``, clipped to the array. Sampling only this box makes a small lesion fast on a
    whole CT; the margin gives the network the surrounding anatomy as context."""
    shape = np.asarray(mask.shape)
    where = np.argwhere(mask)
    low = where.min(axis=0) - np.asarray(margin)
    high = where.max(axis=0) + 1 + np.asarray(margin)
    for axis, need in enumerate(min_size):
        short = int(need) - int(high[axis] - low[axis])
        if short > 0:
            low[axis] -= short // 2
            high[axis] += short - short // 2
    low = np.clip(low, 0, None)
    high = np.minimum(high, shape)
    # Clipping at one border may leave the box short: extend it on the other side.
    for axis, need in enumerate(min_size):
        if high[axis] - low[axis] < need:
            if low[axis] == 0:
                high[axis] = min(shape[axis], int(need))
            else:
                low[axis] = max(0, int(high[axis]) - int(need))
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))  # type: ignore[return-value]

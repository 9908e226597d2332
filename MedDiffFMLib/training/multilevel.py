"""MedDiff-FM's multi-level integrated sampling: one training sample from one cached case.

Each sample is, with the configured chances (paper: equal), one of

* level 0 ``image``: the whole image resized to the patch size;
* level 1 ``double``: a crop of twice the patch size resized down to the patch size;
* level 2 ``patch``: a crop at the patch size (what sliding-window inference sees).

A crop is a box of *model-grid* voxel indices ``starts``..``stops`` (first and last voxel centres,
possibly beyond the image: those voxels are air, -1, as inference's padding) sampled with ``shape``
voxels. Its whole-image position embedding is ``grid_coordinates(starts, stops, shape, model_shape)``,
exactly what :class:`~MedDiffFMLib.sampling.VolumeNoisePredictor` computes for a patch at inference.
The image values are interpolated from the cache grid (linear; a box pre-filter when a crop is
shrunk, so resized levels are not aliased; nearest for label maps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy.ndimage import correlate1d

LEVELS = ("image", "double", "patch")


@dataclass
class Box:
    """A crop on the model grid: voxel-centre indices of its first/last voxel per axis (z, y, x)."""

    starts: tuple[float, float, float]
    stops: tuple[float, float, float]
    shape: tuple[int, int, int]
    model_shape: tuple[int, int, int]
    level: int
    flip_x: bool = False

    def positions(self, axis: int) -> np.ndarray:
        """Model-grid indices of the box's voxels along ``axis``."""
        return np.linspace(self.starts[axis], self.stops[axis], self.shape[axis]) if self.shape[axis] > 1 else \
            np.array([float(self.starts[axis])])

    @property
    def step(self) -> tuple[float, ...]:
        return tuple((b - a) / max(n - 1, 1) for a, b, n in zip(self.starts, self.stops, self.shape))


def _axis_start(full: int, extent: int, rng: np.random.Generator, focus: Optional[float]) -> int:
    """First index of a crop of ``extent`` voxels on an axis of ``full`` voxels (pads when too small)."""
    if full >= extent:
        if focus is None:
            return int(rng.integers(0, full - extent + 1))
        jitter = int(rng.integers(-(extent // 4), extent // 4 + 1))
        return int(np.clip(round(focus - (extent - 1) / 2) + jitter, 0, full - extent))
    # Smaller than the crop: the image sits somewhere inside it, padded with air around.
    return int(rng.integers(full - extent, 1))


def choose_box(
    level: int,
    model_shape: Sequence[int],
    patch: Sequence[int],
    rng: np.random.Generator,
    focus: Optional[Sequence[float]] = None,
    flip_x: bool = False,
) -> Box:
    """Draw the crop box of a sample at ``level`` (0 image, 1 double, 2 patch).

    ``focus`` (z, y, x model-grid index) centres crops on it (lesions); ``flip_x`` mirrors the image
    left-right *before* the box is chosen, so the box and its coordinates live in the mirrored image.
    """
    model_shape = tuple(int(n) for n in model_shape)
    patch = tuple(int(p) for p in patch)
    if focus is not None and flip_x:
        focus = (focus[0], focus[1], model_shape[2] - 1 - focus[2])
    if level == 0:
        starts = (0.0, 0.0, 0.0)
        stops = tuple(float(max(n - 1, 0)) for n in model_shape)
    else:
        starts_l, stops_l = [], []
        for axis, (full, p) in enumerate(zip(model_shape, patch)):
            extent = p if level == 2 else min(2 * p, max(full, p))
            start = _axis_start(full, extent, rng, None if focus is None else float(focus[axis]))
            starts_l.append(float(start))
            stops_l.append(float(start + extent - 1))
        starts, stops = tuple(starts_l), tuple(stops_l)
    return Box(starts, stops, patch, model_shape, level, flip_x)  # type: ignore[arg-type]


def _needed_range(positions: np.ndarray, n: int, margin: int) -> tuple[int, int]:
    inside = positions[(positions > -1.0) & (positions < n)]
    if inside.size == 0:
        return 0, 1
    lo = max(0, int(np.floor(inside.min())) - margin)
    hi = min(n, int(np.ceil(inside.max())) + 1 + margin)
    return lo, max(hi, lo + 1)


def _interp_axis(array: np.ndarray, axis: int, pos: np.ndarray, nearest: bool, pad: float) -> np.ndarray:
    n = array.shape[axis]
    # Within half a voxel of the edge: the edge value (inference resamples with extrapolation too).
    valid = (pos >= -0.5) & (pos <= n - 0.5)
    clipped = np.clip(pos, 0, n - 1)
    if nearest:
        out = np.take(array, np.rint(clipped).astype(np.int64), axis=axis)
    else:
        i0 = np.floor(clipped).astype(np.int64)
        i1 = np.minimum(i0 + 1, n - 1)
        w = (clipped - i0).astype(np.float32)
        shape = [1] * array.ndim
        shape[axis] = -1
        w = w.reshape(shape)
        out = np.take(array, i0, axis=axis) * (1 - w) + np.take(array, i1, axis=axis) * w
    if not valid.all():
        shape = [1] * array.ndim
        shape[axis] = -1
        out = np.where(valid.reshape(shape), out, np.asarray(pad, dtype=out.dtype))
    return out


def sample_box(
    array: np.ndarray,
    box: Box,
    cache_spacing: Sequence[float],
    model_spacing: Sequence[float],
    *,
    nearest: bool = False,
    pad: float = -1.0,
    convert=None,
) -> np.ndarray:
    """Values of ``array`` (on the cache grid) at the voxels of ``box`` (on the model grid), float32.

    ``convert`` maps the cropped raw values to float32 (e.g. HU -> model units) before interpolation.
    """
    scale = [t / c for t, c in zip(model_spacing, cache_spacing)]  # model index -> cache index
    positions = []
    for axis in range(3):
        pos = box.positions(axis)
        if axis == 2 and box.flip_x:
            pos = (box.model_shape[2] - 1) - pos
        positions.append(pos * scale[axis])
    widths = [abs(s) * k for s, k in zip(box.step, scale)]
    slices, shifted = [], []
    for axis in range(3):
        margin = int(np.ceil(widths[axis])) if widths[axis] > 1.3 else 1
        lo, hi = _needed_range(positions[axis], array.shape[axis], margin)
        slices.append(slice(lo, hi))
        shifted.append(positions[axis] - lo)
    work = np.asarray(array[tuple(slices)])
    work = convert(work) if convert is not None else work.astype(np.float32)
    for axis in range(3):
        if not nearest and widths[axis] > 1.3 and box.step[axis] > 1.3:
            # Shrinking: average over the footprint of one output voxel first (no aliasing).
            work = correlate1d(work, _box_kernel(widths[axis]), axis=axis, mode="nearest")
        work = _interp_axis(work, axis, shifted[axis], nearest, pad)
    return np.ascontiguousarray(work, dtype=np.float32)


def _box_kernel(width: float) -> np.ndarray:
    """A centred box of about ``width`` voxels (odd length; an even width gets half-weight ends)."""
    size = max(1, int(round(width)))
    if size % 2:
        kernel = np.ones(size, np.float32)
    else:
        kernel = np.ones(size + 1, np.float32)
        kernel[[0, -1]] = 0.5
    return kernel / kernel.sum()


def choose_level(weights: Sequence[float], rng: np.random.Generator) -> int:
    w = np.asarray(weights, dtype=np.float64)
    return int(rng.choice(len(w), p=w / w.sum()))

"""The smooth fill from the surroundings that healthy inpainting starts from."""

from __future__ import annotations

import numpy as np
import pytest

from MedDiffFMLib.preprocessing.surround_fill import surround_fill


def _ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def test_known_voxels_unchanged_and_constant_surround_fills_with_it():
    rng = np.random.default_rng(0)
    values = np.full((24, 24, 24), 0.3, np.float32)
    hole = _ball(values.shape, (12, 12, 12), 7)
    values[hole] = rng.normal(5.0, 1.0, hole.sum())  # whatever was there must not leak into the fill
    out = surround_fill(values, ~hole)
    assert out.dtype == np.float32
    assert np.array_equal(out[~hole], values[~hole])
    np.testing.assert_allclose(out[hole], 0.3, atol=1e-5)


def test_fill_follows_the_nearest_tissue_and_stays_within_the_known_range():
    # Left half at -1, right half at +1, a hole across the boundary.
    values = np.where(np.arange(32)[None, None, :] < 16, -1.0, 1.0) * np.ones((16, 16, 32), np.float32)
    hole = _ball(values.shape, (8, 8, 16), 6)
    filled = surround_fill(np.where(hole, 0.0, values).astype(np.float32), ~hole)
    inside = filled[hole]
    assert inside.min() >= -1.0 - 1e-6 and inside.max() <= 1.0 + 1e-6
    # Voxels of the hole next to each side take that side's value; the fill rises from left to right.
    assert filled[8, 8, 11] < -0.5 and filled[8, 8, 21] > 0.5
    row = filled[8, 8, 11:22]
    assert np.all(np.diff(row) >= -1e-6)


def test_a_hole_wider_than_every_scale_still_gets_the_known_mean():
    values = np.zeros((8, 8, 8), np.float32)
    known = np.zeros(values.shape, bool)
    known[0, 0, 0] = True
    values[0, 0, 0] = 2.0
    out = surround_fill(values, known)
    np.testing.assert_allclose(out, 2.0, atol=1e-5)


def test_nothing_known_or_mismatched_shapes_are_errors():
    with pytest.raises(ValueError, match="no known voxel"):
        surround_fill(np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 4), bool))
    with pytest.raises(ValueError, match="shape"):
        surround_fill(np.zeros((4, 4, 4), np.float32), np.ones((4, 4, 5), bool))

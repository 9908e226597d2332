"""Resampling keeps the physical placement: origin, direction, extent."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import oblique_ct

from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import geometry_of, image_from_array, same_geometry
from MedDiffFMLib.preprocessing import grid_for_spacing, resample_like, resample_to_spacing


def test_resample_to_spacing_keeps_origin_direction_and_extent():
    image = oblique_ct((10, 24, 20))  # spacing (0.8, 0.7, 2.5)
    out = resample_to_spacing(image, 1.5)
    g, h = geometry_of(image), geometry_of(out)
    assert h.origin == g.origin and h.direction == g.direction
    assert h.spacing == (1.5, 1.5, 1.5)
    assert h.size == (11, 11, 17)  # round(20*0.8/1.5), round(24*0.7/1.5), round(10*2.5/1.5)
    assert out.GetPixelID() == sitk.sitkFloat32  # linear on int16 is not truncated


def test_anisotropic_target_and_nearest_keeps_type():
    image = oblique_ct((10, 24, 20))
    out = resample_to_spacing(image, (1.6, 1.4, 5.0), interpolator="nearest")
    assert out.GetSize() == (10, 12, 5) and out.GetPixelID() == sitk.sitkInt16
    # nearest on an exact 2x grid picks existing values only
    picked = set(np.unique(sitk.GetArrayViewFromImage(out)))
    assert picked <= set(np.unique(sitk.GetArrayViewFromImage(image)))


def test_linear_resampling_is_exact_for_a_linear_ramp():
    z, y, x = np.meshgrid(np.arange(6), np.arange(8), np.arange(10), indexing="ij")
    ramp = image_from_array((2.0 * x + 3.0 * y + 5.0 * z).astype(np.float32), (1.0, 1.0, 2.0))
    out = resample_to_spacing(ramp, 0.5)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in reversed(out.GetSize())), indexing="ij")
    inside = (xx * 0.5 <= 9) & (yy * 0.5 <= 7) & (zz * 0.25 <= 5)
    expected = 2.0 * xx * 0.5 + 3.0 * yy * 0.5 + 5.0 * zz * 0.25
    values = sitk.GetArrayFromImage(out)
    np.testing.assert_allclose(values[inside], expected[inside], atol=1e-4)
    # the half voxel beyond the last centre takes the nearest voxel, not a default value
    assert values[~inside].min() > 0 and values.max() <= 2 * 9 + 3 * 7 + 5 * 5


def test_resample_like_reference_and_geometry():
    image = oblique_ct()
    grid = grid_for_spacing(image, 2.0)
    a = resample_like(image, grid, default_value=-1000)
    assert same_geometry(a, grid)
    b = resample_like(a, image, interpolator="bspline")
    assert same_geometry(b, image) and b.GetPixelID() == sitk.sitkFloat32


def test_bad_arguments():
    with pytest.raises(InputError, match="target spacing"):
        resample_to_spacing(oblique_ct(), 0)
    with pytest.raises(ValueError):
        resample_to_spacing(oblique_ct(), 1.0, interpolator="cubic")

"""numpy <-> SimpleITK conversion and geometry helpers."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import ANISO_SPACING, OBLIQUE_DIRECTION, ODD_ORIGIN, ct_like_array, oblique_ct

from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import (
    Geometry,
    blank_image,
    copy_geometry,
    geometry_of,
    image_from_array,
    same_geometry,
    to_image,
)


def test_image_from_array_keeps_order_and_geometry():
    arr = ct_like_array((3, 5, 7))
    image = image_from_array(arr, ANISO_SPACING, ODD_ORIGIN, np.reshape(OBLIQUE_DIRECTION, (3, 3)))
    g = geometry_of(image)
    assert g.size == (7, 5, 3) and g.shape == (3, 5, 7)
    assert g.spacing == pytest.approx(ANISO_SPACING) and g.origin == pytest.approx(ODD_ORIGIN)
    assert g.direction == pytest.approx(OBLIQUE_DIRECTION)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), arr)


def test_defaults_and_types():
    image = to_image(np.zeros((2, 3, 4), dtype=bool))
    assert image.GetPixelID() == sitk.sitkUInt8
    g = geometry_of(image)
    assert g.spacing == (1.0, 1.0, 1.0) and g.origin == (0.0, 0.0, 0.0)
    assert g.direction == tuple(np.eye(3).ravel())
    assert to_image(np.zeros((2, 3, 4)), spacing=2.0).GetSpacing() == (2.0, 2.0, 2.0)


def test_to_image_passes_images_through():
    image = oblique_ct()
    assert to_image(image) is image
    with pytest.raises(ValueError):
        to_image(image, spacing=1.0)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"spacing": (1.0, 0.0, 1.0)}, "spacing must be positive"),
    ({"spacing": (1.0, -1.0, 1.0)}, "spacing must be positive"),
    ({"spacing": (1.0, 1.0)}, "one number or three"),
    ({"direction": np.zeros((3, 3))}, "singular"),
    ({"direction": [1, 0, 0, 1]}, "3x3"),
])
def test_bad_geometry_is_input_error(kwargs, pattern):
    with pytest.raises(InputError, match=pattern):
        image_from_array(np.zeros((2, 3, 4)), **kwargs)


def test_non_3d_array_is_input_error():
    with pytest.raises(InputError, match="3D array"):
        image_from_array(np.zeros((3, 4)))


def test_same_and_copy_geometry():
    a = oblique_ct((3, 5, 7))
    b = sitk.GetImageFromArray(np.zeros((3, 5, 7), np.float32))
    assert not same_geometry(a, b)
    assert copy_geometry(a, b) is b and same_geometry(a, b)
    c = sitk.Image(b)
    c.SetOrigin(tuple(o + 1e-3 for o in a.GetOrigin()))
    assert not same_geometry(a, c) and same_geometry(a, c, tol=1e-2)
    assert not same_geometry(a, oblique_ct((3, 5, 8)))
    with pytest.raises(ValueError):
        copy_geometry(a, oblique_ct((3, 5, 8)))


def test_geometry_is_frozen_and_blank_image_uses_it():
    g = geometry_of(oblique_ct((3, 5, 7)))
    with pytest.raises(Exception):
        g.size = (1, 1, 1)  # type: ignore[misc]
    blank = blank_image(g, value=-1000.0)
    assert same_geometry(blank, g) and float(sitk.GetArrayViewFromImage(blank).max()) == -1000.0
    assert isinstance(geometry_of(g), Geometry)

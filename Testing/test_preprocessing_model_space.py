"""ModelSpace: to the model grid and back without losing the input."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import BONE, oblique_ct

from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import geometry_of, same_geometry
from MedDiffFMLib.preprocessing import REGION_WINDOWS, HUWindow, ModelSpace

SOFT = HUWindow(40, 400)  # clips air, lung and bone of the phantom


def arr(image):
    return sitk.GetArrayFromImage(image)


def test_model_grid_and_range():
    image = oblique_ct((10, 24, 20))
    space = ModelSpace.from_image(image, 1.5, SOFT)
    assert space.model_array.dtype == np.float32
    assert space.model_array.shape == (17, 11, 11)
    assert space.model_array.min() >= -1 and space.model_array.max() <= 1
    np.testing.assert_array_equal(space.model_array, SOFT.hu_to_model(space.model_hu))
    assert space.model_hu.min() >= SOFT.low and space.model_hu.max() <= SOFT.high
    assert space.model_geometry.origin == geometry_of(image).origin
    assert space.model_geometry.direction == geometry_of(image).direction


@pytest.mark.parametrize("window", [SOFT, REGION_WINDOWS["chest"], REGION_WINDOWS["abdomen"]])
def test_identity_change_gives_back_the_input_exactly(window):
    image = oblique_ct((10, 24, 20))
    space = ModelSpace.from_image(image, (1.3, 1.1, 2.0), window)
    out = space.to_input_grid(space.model_array.copy())
    assert out.GetPixelID() == sitk.sitkFloat32
    assert same_geometry(out, image, tol=0)  # exact same grid, oblique and anisotropic
    np.testing.assert_array_equal(arr(out), arr(image).astype(np.float32))


def test_window_clipped_voxels_come_back_exactly():
    image = oblique_ct((10, 24, 20))
    space = ModelSpace.from_image(image, 1.5, SOFT)
    rng = np.random.default_rng(1)
    change = rng.uniform(-1, 1, space.model_array.shape).astype(np.float32)
    out, src = arr(space.to_input_grid(change)), arr(image).astype(np.float32)
    clipped = (src < SOFT.low) | (src > SOFT.high)
    assert clipped.any() and (src == BONE).any()
    np.testing.assert_array_equal(out[clipped], src[clipped])
    assert not np.array_equal(out[~clipped], src[~clipped])  # the change did land elsewhere


def test_constant_change_is_added_in_hu_keeping_fine_detail():
    image = oblique_ct((10, 24, 20))
    wide = HUWindow(0, 4000)  # nothing clipped, model values within [-0.5, 0.6]
    space = ModelSpace.from_image(image, 2.0, wide)  # coarser than the input
    out = arr(space.to_input_grid(space.model_array + 0.1))  # 0.1 * width / 2 = 200 HU
    src = arr(image).astype(np.float32)
    np.testing.assert_allclose(out - src, 200.0, atol=1e-3)  # every fine detail kept


def test_min_size_padding_is_recorded_and_undone():
    image = oblique_ct((10, 24, 20))
    space = ModelSpace.from_image(image, 1.5, SOFT, min_size=(20, 16, 11))
    assert space.model_array.shape == (20, 16, 11)
    assert space.padding == ((1, 2), (2, 3), (0, 0))
    (z0, _), (y0, _), _ = space.padding
    assert np.all(space.model_hu[:z0] == SOFT.low) and np.all(space.model_array[:, :y0] == -1)
    out = space.to_input_grid(space.model_array)
    assert same_geometry(out, image, tol=0)
    np.testing.assert_array_equal(arr(out), arr(image).astype(np.float32))
    # the padded grid places the content where the unpadded grid does
    padded = space.padded_geometry
    assert padded.size == (11, 16, 20)
    inner = space.model_grid_image(space.model_array)[:, y0:y0 + 11, z0:z0 + 17]
    np.testing.assert_allclose(inner.GetOrigin(), space.model_geometry.origin, atol=1e-9)


def test_wrong_output_shape_is_a_programming_error():
    space = ModelSpace.from_image(oblique_ct(), 1.5, SOFT)
    with pytest.raises(ValueError):
        space.to_input_grid(np.zeros((3, 3, 3), np.float32))


def test_invalid_input_is_rejected():
    with pytest.raises(InputError, match="2D image"):
        ModelSpace.from_image(sitk.Image([8, 8], sitk.sitkInt16), 1.0, SOFT)


def test_replace_mask_takes_the_model_output():
    image = oblique_ct((10, 24, 20))
    space = ModelSpace.from_image(image, 1.5, SOFT)
    mask = np.zeros(arr(image).shape, bool)
    mask[3:7, 8:16, 6:14] = True
    out = arr(space.to_input_grid(np.zeros_like(space.model_array), replace_mask=mask))
    np.testing.assert_allclose(out[mask], SOFT.center, atol=1e-3)  # model 0 -> window centre
    src = arr(image).astype(np.float32)
    clipped = ((src < SOFT.low) | (src > SOFT.high)) & ~mask
    np.testing.assert_array_equal(out[clipped], src[clipped])


def test_mask_to_model_grid():
    image = oblique_ct((10, 24, 20))
    space = ModelSpace.from_image(image, 1.5, SOFT, min_size=(20, 16, 16))
    mask = np.zeros(arr(image).shape, bool)
    mask[2:8, 6:18, 5:15] = True
    on_model = space.mask_to_model(mask)
    assert on_model.shape == space.model_array.shape and on_model.dtype == bool
    volume_in = mask.sum() * np.prod(image.GetSpacing())
    volume_model = on_model.sum() * 1.5**3
    assert volume_model == pytest.approx(volume_in, rel=0.35)
    assert not on_model[: space.padding[0][0]].any()


def test_for_grid_synthesis_returns_model_output_on_the_reference_grid():
    reference = oblique_ct((10, 24, 20))
    space = ModelSpace.for_grid(geometry_of(reference), 2.0, SOFT, min_size=(16, 16, 16))
    assert space.model_array.shape == (16, 16, 16) and np.all(space.model_array == -1)
    out = space.to_input_grid(np.full(space.model_array.shape, 0.5, np.float32))
    assert same_geometry(out, reference, tol=0)
    np.testing.assert_allclose(arr(out), SOFT.model_to_hu(np.float32(0.5)), atol=1e-3)


def test_footprint_marks_the_input_and_not_the_padding():
    image = sitk.Image([6, 5, 4], sitk.sitkInt16) - 1000
    image.SetSpacing((2.0, 2.0, 2.0))
    space = ModelSpace.from_image(image, 2.0, HUWindow(0.0, 2000.0), min_size=(8, 8, 8))
    footprint = space.footprint()
    assert footprint.shape == space.model_array.shape == (8, 8, 8)
    assert footprint.sum() == 4 * 5 * 6
    crop = tuple(slice(a, a + n) for (a, _), n in zip(space.padding, (4, 5, 6)))
    assert footprint[crop].all()

"""mask_on_grid: masks on the image grid, on other grids, and bad masks."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import requires_shared_data
from helpers.volumes import make_image, oblique_ct

from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import read_volume
from MedDiffFMLib.preprocessing import mask_on_grid

IDENTITY = tuple(np.eye(3).ravel())


def _reference():
    return make_image(np.zeros((20, 30, 30), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), IDENTITY)


def test_same_grid_is_not_resampled_and_labels_count():
    image = oblique_ct()
    labels = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    labels[2:4, 5:9, 5:9] = 1
    labels[6:8, 10:12, 10:12] = 3
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    inside, resampled = mask_on_grid(mask, image)
    assert not resampled and inside.dtype == bool and inside.sum() == 32 + 8
    only3, _ = mask_on_grid(mask, image, label=3)
    assert only3.sum() == 8
    from_array, resampled = mask_on_grid(labels > 0, image)
    assert not resampled and from_array.sum() == 40


def test_coarser_shifted_mask_is_resampled_by_position():
    reference = _reference()  # 1 mm voxels from (0, 0, 0)
    coarse = np.zeros((10, 15, 15), np.uint8)
    coarse[2:5, 3:6, 4:8] = 7  # 2 mm voxels, grid shifted by (+1, +2, +3) mm
    mask = make_image(coarse, (2.0, 2.0, 2.0), (1.0, 2.0, 3.0), IDENTITY)
    inside, resampled = mask_on_grid(mask, reference)
    assert resampled and inside.shape == (20, 30, 30)
    # coarse voxel i covers [origin + 2i - 1, origin + 2i + 1) mm: x 8-15 -> 1 mm voxels 8..15
    zz, yy, xx = np.nonzero(inside)
    assert (xx.min(), xx.max()) == (8, 15) and (yy.min(), yy.max()) == (7, 12)
    assert (zz.min(), zz.max()) == (6, 11)
    assert inside.sum() == 8 * 6 * 6


def test_empty_mask():
    reference = _reference()
    with pytest.raises(InputError, match="The lesion is empty"):
        mask_on_grid(np.zeros((20, 30, 30), bool), reference, name="lesion")


def test_missing_label_lists_present_ones():
    reference = _reference()
    labels = np.zeros((20, 30, 30), np.uint8)
    labels[1, 1, 1], labels[2, 2, 2] = 2, 5
    with pytest.raises(InputError, match=r"no voxel with label 4; labels present: \[2, 5\]"):
        mask_on_grid(labels, reference, label=4)


def test_mask_outside_the_image():
    far = make_image(np.ones((4, 4, 4), np.uint8), (1, 1, 1), (500.0, 0.0, 0.0), IDENTITY)
    with pytest.raises(InputError, match="does not overlap the image"):
        mask_on_grid(far, _reference())


def test_non_3d_and_wrong_shape_masks():
    with pytest.raises(InputError, match="3D single-channel"):
        mask_on_grid(sitk.Image([30, 30], sitk.sitkUInt8), _reference())
    with pytest.raises(InputError, match="shape"):
        mask_on_grid(np.ones((3, 3, 3), bool), _reference())


@requires_shared_data
def test_real_labels_with_flipped_axes(shared_ct):
    image = read_volume(shared_ct / "abdomen" / "upper_abdomen_dicom")
    labels = read_volume(shared_ct / "abdomen" / "upper_abdomen_dicom_labels.nii.gz")
    inside, resampled = mask_on_grid(labels, image)
    assert resampled  # same physical grid, but the y axis is flipped
    assert inside.sum() == int((sitk.GetArrayViewFromImage(labels) != 0).sum())

"""validate_volume rejects what no task can use, with a message naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import oblique_ct

from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import validate_volume


def test_valid_volume_passes():
    validate_volume(oblique_ct())


@pytest.mark.parametrize(
    "image,pattern",
    [
        (sitk.Image([8, 8], sitk.sitkInt16), "2D image"),
        (sitk.Image([4, 4, 4, 2], sitk.sitkInt16), "4D image"),
        (sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3), "3 values per voxel"),
        (sitk.Image([4, 4, 0], sitk.sitkInt16), "empty or flat"),
        (sitk.Image([1, 1, 1], sitk.sitkInt16), "empty or flat"),
        (sitk.Image([16, 16, 1], sitk.sitkInt16), "empty or flat"),
    ],
)
def test_bad_shapes(image, pattern):
    with pytest.raises(InputError, match=pattern):
        validate_volume(image, name="scan")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_counted(bad):
    arr = np.zeros((4, 5, 6), np.float32)
    arr[0, 0, :3] = bad
    with pytest.raises(InputError, match=r"input has 3 voxels that are NaN or infinite"):
        validate_volume(sitk.GetImageFromArray(arr))


def test_name_is_used():
    with pytest.raises(InputError, match="The mask is a 2D image"):
        validate_volume(sitk.Image([8, 8], sitk.sitkUInt8), "mask")

"""check_hu: real CT in HU passes, raw values / normalised / 8-bit volumes do not."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import ct_like_array, make_image, oblique_ct

from MedDiffFMLib.errors import InputError
from MedDiffFMLib.preprocessing import check_hu


def test_phantom_in_hu_passes():
    check_hu(oblique_ct())


def test_soft_tissue_crop_without_air_passes():
    rng = np.random.default_rng(0)
    arr = np.where(rng.random((8, 16, 16)) < 0.3, -100, 50) + rng.normal(0, 10, (8, 16, 16))
    check_hu(make_image(arr.astype(np.int16)))


def test_raw_scanner_values_fail_with_an_explanation():
    raw = ct_like_array() .astype(np.int32) + 1024
    raw[raw < 100] = 0  # air near 0, like the shared head DICOM
    with pytest.raises(InputError) as err:
        check_hu(make_image(raw.astype(np.int16)), name="scan")
    message = str(err.value)
    assert "The scan does not look like CT in Hounsfield units" in message
    assert "1st percentile is 0" in message and "median" in message
    assert "raw scanner values" in message and "--allow-non-hu" in message


def test_normalised_volume_fails():
    hu = ct_like_array().astype(np.float32)
    normalised = (hu - hu.min()) / (hu.max() - hu.min())
    with pytest.raises(InputError, match="looks normalised"):
        check_hu(make_image(normalised))


def test_uint8_volume_fails():
    hu = ct_like_array().astype(np.float32)
    as_uint8 = np.clip((hu + 1000) / 2200 * 255, 0, 255).astype(np.uint8)
    with pytest.raises(InputError, match="8-bit image cannot hold HU"):
        check_hu(make_image(as_uint8))


def test_all_nan_volume_fails():
    with pytest.raises(InputError, match="no finite voxel"):
        check_hu(sitk.GetImageFromArray(np.full((4, 4, 4), np.nan, np.float32)))

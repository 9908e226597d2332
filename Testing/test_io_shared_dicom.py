"""Real DICOM from the shared CT set (skipped when it is absent)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from conftest import requires_shared_data

from MedDiffFMLib.io import read_volume, write_volume


@requires_shared_data
def test_read_upper_abdomen_dicom_in_hu(shared_ct):
    image = read_volume(shared_ct / "abdomen" / "upper_abdomen_dicom")
    assert image.GetSize() == (512, 512, 20)
    np.testing.assert_allclose(image.GetSpacing(), (0.977, 0.977, 2.0), atol=1e-3)
    values = sitk.GetArrayViewFromImage(image)
    assert values.min() <= -1000  # air in HU, i.e. rescale intercept applied
    assert -200 < np.median(values[values > -500]) < 200  # soft tissue near 0 HU


@requires_shared_data
def test_real_dicom_round_trips_through_our_writer(shared_ct, tmp_path):
    image = read_volume(shared_ct / "abdomen" / "upper_abdomen_dicom")
    image = image[100:164, 200:248, :6]  # keep it small and fast
    back = read_volume(write_volume(image, tmp_path / "copy"))
    assert back.GetSize() == image.GetSize()
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))

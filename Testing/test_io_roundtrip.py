"""Geometry and voxel values survive a write + read in every supported format."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import oblique_ct

from MedDiffFMLib.io import geometry_of, read_volume, write_volume

TOL = 1e-5


def assert_same_grid(a: sitk.Image, b: sitk.Image, tol: float = TOL) -> None:
    ga, gb = geometry_of(a), geometry_of(b)
    assert ga.size == gb.size
    np.testing.assert_allclose(gb.spacing, ga.spacing, rtol=0, atol=tol)
    np.testing.assert_allclose(gb.origin, ga.origin, rtol=0, atol=tol)
    np.testing.assert_allclose(gb.direction, ga.direction, rtol=0, atol=tol)


@pytest.mark.parametrize(
    "name", ["ct.nii", "ct.nii.gz", "ct.nrrd", "ct.nhdr", "ct.mha", "ct.mhd", "ct_dicom", "ct_dicom/"]
)
def test_int16_round_trip_keeps_grid_and_values(tmp_path, name):
    image = oblique_ct()
    written = write_volume(image, str(tmp_path / name))
    assert written.exists()
    back = read_volume(written)
    assert_same_grid(image, back)
    assert back.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))


def test_dicom_into_existing_empty_folder(tmp_path):
    image = oblique_ct((4, 8, 6))
    target = tmp_path / "out.series"  # a dot in the name: the existing folder decides
    target.mkdir()
    written = write_volume(image, target)
    assert written == target.resolve() and len(list(target.iterdir())) == 4
    assert_same_grid(image, read_volume(target))


@pytest.mark.parametrize("name", ["f.nii.gz", "f.nrrd", "f.mha"])
def test_float32_round_trip_is_exact(tmp_path, name):
    image = sitk.Cast(oblique_ct((4, 8, 6)), sitk.sitkFloat32) + 0.25
    back = read_volume(write_volume(image, tmp_path / name))
    assert back.GetPixelID() == sitk.sitkFloat32
    assert_same_grid(image, back)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))


def test_dicom_from_float_rounds_to_int16(tmp_path):
    image = sitk.Cast(oblique_ct((4, 8, 6)), sitk.sitkFloat32) + 0.4
    back = read_volume(write_volume(image, tmp_path / "dcm"))
    expected = np.rint(sitk.GetArrayFromImage(image)).astype(np.int16)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), expected)


def test_dicom_slices_carry_new_uids_and_tags(tmp_path):
    write_volume(oblique_ct((3, 8, 6)), tmp_path / "a", dicom_tags={"0010|0010": "Test^Patient"})
    write_volume(oblique_ct((3, 8, 6)), tmp_path / "b")

    def tags(folder):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(sorted(folder.iterdir())[0]))
        reader.ReadImageInformation()
        return {k: reader.GetMetaData(k).strip() for k in reader.GetMetaDataKeys()}

    a, b = tags(tmp_path / "a"), tags(tmp_path / "b")
    assert a["0010|0010"] == "Test^Patient" and a["0008|0060"] == "CT"
    assert a["0020|000e"] != b["0020|000e"] and a["0020|000d"] != b["0020|000d"]

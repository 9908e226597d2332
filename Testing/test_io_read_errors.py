"""read_volume: every unusable input gives an InputError that names the problem."""

from __future__ import annotations

import gzip

import pytest
from helpers.volumes import oblique_ct, two_series_folder

from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import list_dicom_series, read_volume, write_volume


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "nothing.nii.gz")


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(InputError, match="its folder .* does not exist either"):
        read_volume(tmp_path / "no_dir" / "ct.nii.gz")


@pytest.mark.parametrize("name,content", [("bad.nii.gz", gzip.compress(b"not nifti" * 50)),
                                          ("bad.nrrd", b"NRRD0004\ntype: what\n\n"),
                                          ("bad.mha", b"\x00\x01garbage")])
def test_corrupt_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_volume(path)
    assert str(path) in str(err.value) and "damaged" in str(err.value)


def test_truncated_file(tmp_path):
    path = write_volume(oblique_ct(), tmp_path / "ct.nii.gz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="incomplete.*ends early"):
        read_volume(path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="extension is not a supported format"):
        read_volume(path)


def test_single_dicom_file_points_to_its_folder(tmp_path):
    folder = write_volume(oblique_ct((3, 8, 6)), tmp_path / "dcm")
    with pytest.raises(InputError, match="single DICOM file"):
        read_volume(sorted(folder.iterdir())[0])


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="No DICOM series found"):
        read_volume(tmp_path)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match=r"No DICOM series found.*1 files"):
        read_volume(tmp_path)


def test_two_series_are_listed_and_one_can_be_picked(tmp_path):
    folder = tmp_path / "mixed"
    series = two_series_folder(folder)
    with pytest.raises(InputError) as err:
        read_volume(folder)
    message = str(err.value)
    assert "holds 2 series" in message and "--series" in message and "series_uid=" in message
    for uid, n in series:
        assert f"{uid} ({n} slices" in message
    assert '"phantom 0"' in message and '"phantom 1"' in message
    for uid, n in series:
        assert read_volume(folder, series_uid=uid).GetSize()[2] == n
    assert sorted(len(s.files) for s in list_dicom_series(folder)) == [5, 7]


def test_unknown_series_uid(tmp_path):
    folder = write_volume(oblique_ct((3, 8, 6)), tmp_path / "dcm")
    with pytest.raises(InputError, match=r"no series with UID 1\.2\.3.*3 slices"):
        read_volume(folder, series_uid="1.2.3")


def test_damaged_dicom_slice_is_not_silently_dropped(tmp_path):
    folder = write_volume(oblique_ct((3, 8, 6)), tmp_path / "dcm")
    victim = sorted(folder.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-40])  # pixel data cut short: GDCM skips the file
    with pytest.raises(InputError, match=rf"1 file\(s\) in the DICOM folder .*{victim.name}"):
        read_volume(folder)


def test_missing_dicom_slice(tmp_path):
    folder = write_volume(oblique_ct((6, 8, 6)), tmp_path / "dcm")
    sorted(folder.iterdir())[2].unlink()
    with pytest.raises(InputError, match="missing or unevenly spaced slices"):
        read_volume(folder)

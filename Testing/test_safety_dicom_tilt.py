"""DICOM with gantry tilt (series built with pydicom): detected, resampled onto a regular grid so that
a straight rod stays straight at its true physical place, with a note; uneven tilted series refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.safety import digests, run_cli
from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import read_volume
from MedDiffFMLib.io.dicom_tilt import NOTE_KEY

ROD_X, ROD_Y = 15.0, 20.0  # mm: a rod along the patient axis z, radius 4 mm


def tilted_series(folder: Path, tilt_deg: float, nz: int = 12, ny: int = 40, nx: int = 30, dz: float = 2.5,
                  skip: int = -1) -> None:
    """A CT series whose slice k lies at z = k dz, shifted by k dz tan(tilt) in y (a tilted gantry),
    showing the rod at (ROD_X, ROD_Y) in every slice. ``skip``: leave out that slice."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    shift = dz * math.tan(math.radians(tilt_deg))
    rows, cols = np.mgrid[0:ny, 0:nx]
    for k in range(nz):
        if k == skip:
            continue
        y0 = k * shift
        pixels = np.full((ny, nx), -1000, np.int16)
        pixels[(y0 + rows - ROD_Y) ** 2 + (cols - ROD_X) ** 2 <= 16] = 300
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Tilt^Test", "tilt"
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = series, study, frame
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, float(y0), float(k * dz)]
        ds.PixelSpacing, ds.SliceThickness, ds.GantryDetectorTilt = [1.0, 1.0], dz, tilt_deg
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = pixels.tobytes()
        ds.save_as(str(folder / f"s{k:03d}.dcm"), enforce_file_format=True)
    assert pydicom


def _rod_centres(image: sitk.Image) -> np.ndarray:
    """Physical (x, y) of the rod's centre in every slice."""
    array = sitk.GetArrayFromImage(image)
    centres = []
    for k in range(array.shape[0]):
        weights = np.clip(array[k].astype(float) + 1000.0, 0, None)
        j, i = (np.argwhere(weights > 0) * weights[weights > 0][:, None]).sum(0) / weights.sum()
        centres.append(image.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k)))[:2])
    return np.asarray(centres)


@pytest.mark.parametrize("tilt", [8.0, 15.0, -12.0])
def test_a_tilted_series_is_resampled_onto_its_true_geometry(tmp_path, tilt):
    folder = tmp_path / "tilted"
    tilted_series(folder, tilt)
    before = digests([folder])
    image = read_volume(folder)
    assert image.GetSpacing()[2] == pytest.approx(2.5)
    assert np.allclose(np.asarray(image.GetDirection()).reshape(3, 3), np.eye(3))
    centres = _rod_centres(image)
    assert np.abs(centres - [ROD_X, ROD_Y]).max() < 0.3, centres  # straight, at its place
    note = image.GetMetaData(NOTE_KEY)
    assert "gantry tilt" in note and f"{abs(tilt):.1f} degrees" in note
    assert digests([folder]) == before


def test_an_untilted_series_is_read_as_it_is(tmp_path):
    folder = tmp_path / "straight"
    tilted_series(folder, 0.0)
    image = read_volume(folder)
    assert not image.HasMetaDataKey(NOTE_KEY) and image.GetSize() == (30, 40, 12)
    assert np.abs(_rod_centres(image) - [ROD_X, ROD_Y]).max() < 0.3


def test_a_tilted_series_with_a_missing_slice_is_refused(tmp_path):
    folder = tmp_path / "gap"
    tilted_series(folder, 15.0, skip=5)
    with pytest.raises(InputError, match="gantry tilt.*not evenly spaced"):
        read_volume(folder)


def test_the_command_line_shows_the_note(tmp_path, capsys):
    from MedDiffFMLib.cli.common import read_input

    folder = tmp_path / "tilted"
    tilted_series(folder, 15.0)
    image = read_input(folder)
    assert "note:" in capsys.readouterr().err and not image.HasMetaDataKey(NOTE_KEY)
    code, err = run_cli(["denoise", folder, tmp_path / "o.nii.gz", "--overlap", "2"], capsys)
    assert code == 2 and "--overlap" in err  # options first, before the (tilted) read

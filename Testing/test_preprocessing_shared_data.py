"""check_hu and guess_region over every volume of the shared real CT set (skipped if absent)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
import SimpleITK as sitk
from conftest import requires_shared_data, shared_ct_path

from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import read_volume, same_geometry
from MedDiffFMLib.preprocessing import REGION_WINDOWS, ModelSpace, check_hu, guess_region

RAW_HEAD = "head/head_raw_values_dicom"
EXPECTED_REGION = {"chest": "chest", "abdomen": "abdomen", "sarcoma": None}


def _is_label_map(path: Path) -> bool:
    # The manifest stores CT as int16 and every mask/label map as uint8: the header tells.
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader.GetPixelID() == sitk.sitkUInt8


def shared_ct_volumes() -> List[str]:
    root = shared_ct_path()
    if root is None:
        return []
    files = [p for p in sorted(root.glob("*/*.nii.gz")) if not _is_label_map(p)]
    folders = [p for p in sorted(root.glob("*/*")) if p.is_dir()]
    return [p.relative_to(root).as_posix() for p in files + folders]


HU_VOLUMES = [v for v in shared_ct_volumes() if v != RAW_HEAD]


@requires_shared_data
@pytest.mark.parametrize("relative", HU_VOLUMES)
def test_real_ct_passes_and_region_is_guessed(shared_ct, relative):
    image = read_volume(shared_ct / relative)
    check_hu(image, name=relative)
    folder = relative.split("/")[0]
    if folder in EXPECTED_REGION:
        assert guess_region(image) == EXPECTED_REGION[folder]


@requires_shared_data
def test_every_kind_of_shared_volume_was_seen():
    folders = {v.split("/")[0] for v in HU_VOLUMES}
    assert {"chest", "abdomen", "sarcoma"} <= folders and len(HU_VOLUMES) >= 40


@requires_shared_data
def test_raw_values_head_fails_and_is_a_head_once_in_hu(shared_ct):
    image = read_volume(shared_ct / RAW_HEAD)
    with pytest.raises(InputError, match="1st percentile is 0 .*raw scanner values"):
        check_hu(image)
    in_hu = sitk.Cast(image, sitk.sitkFloat32) - 1024.0
    check_hu(in_hu)
    assert guess_region(in_hu) == "head_neck"


@requires_shared_data
def test_model_space_identity_on_real_ct(shared_ct):
    image = read_volume(shared_ct / "chest" / "lung_crop_lowres.nii.gz")  # 2.73 x 2.73 x 5 mm
    space = ModelSpace.from_image(image, 1.5, REGION_WINDOWS["abdomen"], min_size=(224, 160, 112))
    out = space.to_input_grid(space.model_array)
    assert same_geometry(out, image, tol=0)
    assert (sitk.GetArrayViewFromImage(out) == sitk.GetArrayViewFromImage(image)).all()

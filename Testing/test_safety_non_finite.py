"""Non-finite voxels (NaN, +inf, -inf) are refused with their count and where they are, never turned
into numbers; an all-NaN volume is called NaN."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import tiny_models  # noqa: F401  (fixture)
from helpers.safety import assert_refused
from helpers.task_tools import box_mask, task_ct
from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io import read_volume, validate_volume


def _float_ct(values=None, where=(slice(3, 5), slice(4, 6), 7)):
    image = sitk.Cast(task_ct(), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    if values is not None:
        array[where] = values
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


@pytest.mark.parametrize("bad,kind", [(np.nan, "4 NaN"), (np.inf, "4 +inf"), (-np.inf, "4 -inf")])
def test_non_finite_voxels_are_refused_with_count_and_place(tmp_path, bad, kind):
    image = _float_ct(bad)
    path = tmp_path / "ct.nrrd"
    sitk.WriteImage(image, str(path))
    for call in (lambda: read_volume(path), lambda: validate_volume(image)):
        with pytest.raises(InputError) as error:
            call()
        message = str(error.value)
        assert "4 voxels that are NaN or infinite" in message and kind in message, message
        assert "(7, 4, 3)" in message and "(7, 5, 4)" in message and " mm" in message, message


def test_an_all_nan_volume_says_nan(tmp_path):
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(_float_ct(np.nan, where=slice(None)), str(path))
    with pytest.raises(InputError, match=r"Every voxel .* is NaN") as error:
        read_volume(path)
    assert "normalised" not in str(error.value)


def test_commands_and_prepare_refuse_nan(tmp_path, tiny_models, capsys):  # noqa: F811
    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(_float_ct(np.nan), str(ct))
    good = tmp_path / "good.nrrd"
    sitk.WriteImage(task_ct(), str(good))
    mask = tmp_path / "mask.nrrd"
    values = box_mask(task_ct()).astype(np.float32)
    values[0, 0, 0] = np.inf
    mask_image = sitk.GetImageFromArray(values)
    mask_image.CopyInformation(task_ct())
    sitk.WriteImage(mask_image, str(mask))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"cases": [{"id": "c0", "image": "ct.nrrd", "region": "chest"}]}))
    model = ["--model", tiny_models.base, "--steps", "1", "--progress", "none"]
    inputs = [ct, good, mask, manifest]
    for argv, words in ((["denoise", ct, tmp_path / "o.nii.gz", *model], "input"),
                        (["inpaint", good, mask, tmp_path / "o.nii.gz", *model], "mask"),
                        (["prepare", manifest, tmp_path / "cache", "--config", "tiny", "--progress", "none"], "c0")):
        message = assert_refused(argv, capsys, tmp_path, inputs)
        assert "NaN or infinite" in message and words in message, message

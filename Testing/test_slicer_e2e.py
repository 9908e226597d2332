"""End to end: the module logic on a real MRML scene running the real library command
(``python -m MedDiffFMLib.cli``) with a tiny randomly initialised model on CPU."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slicer_helpers import paths  # noqa: E402
from slicer_helpers.scene import (  # noqa: E402,F401  (mrmlScene is a fixture)
    addCtVolume, addSegmentOnGrid, mrmlScene, slicer, volumeMatrix)

from MedDiffFMModuleLib.Logic import Logic, MedDiffFMModuleError  # noqa: E402

REAL_COMMAND = [sys.executable, "-m", "MedDiffFMLib.cli"]


@pytest.fixture(scope="module")
def tinyModel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    Logic(command=REAL_COMMAND).createTinyModel(str(folder))
    assert (folder / "config.json").is_file()
    return str(folder)


@pytest.fixture
def logic(mrmlScene, tmp_path):
    return Logic(command=REAL_COMMAND, applicationLogic=mrmlScene.appLogic, tempRoot=str(tmp_path))


def test_denoise_with_the_real_library_keeps_geometry(mrmlScene, logic, tinyModel, tmp_path):
    volume, array = addCtVolume(shape=(8, 24, 24))
    output = logic.denoise(volume, strength=0.3, steps=2, seed=1, model=tinyModel, device="cpu")
    assert output.GetName() == "CT denoised"
    assert output.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
    assert np.allclose(volumeMatrix(output), volumeMatrix(volume), atol=1e-9)
    result = slicer.util.arrayFromVolume(output)
    assert np.isfinite(result).all()
    assert np.array_equal(slicer.util.arrayFromVolume(volume), array)  # the input is untouched
    assert os.listdir(tmp_path) == []  # temporary files deleted


def test_library_error_reaches_the_user_and_changes_nothing(mrmlScene, logic, tmp_path):
    volume, _ = addCtVolume(shape=(8, 24, 24))
    before = mrmlScene.nodeIds()
    with pytest.raises(MedDiffFMModuleError) as error:
        logic.denoise(volume, steps=2, model=str(tmp_path / "no-such-model"), device="cpu")
    message = str(error.value)
    assert message and "Traceback" not in message
    assert mrmlScene.nodeIds() == before


def test_real_model_list_parses(mrmlScene, logic):
    info = logic.listModels()
    assert info.version
    assert "cpu" in info.devices


def test_inpaint_with_the_real_library(mrmlScene, logic, tinyModel):
    volume, array = addCtVolume(shape=(8, 24, 24))
    mask = np.zeros(array.shape, np.uint8)
    mask[3:6, 8:14, 8:14] = 1
    segmentation, segmentId = addSegmentOnGrid(mrmlScene.scene, mask, volumeMatrix(volume))
    output = logic.inpaint(volume, segmentation, segmentId, steps=2, seed=1, model=tinyModel, device="cpu")
    assert output.GetName() == "CT with generated tissue"
    result = slicer.util.arrayFromVolume(output)
    assert result.shape == array.shape
    assert np.allclose(result[mask == 0], array[mask == 0], atol=1.0)  # only the segment changes

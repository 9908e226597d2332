"""Anomaly scoring that discounts edges, and the healthy statistics shipped in the model folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import single_torch_thread, tiny_engines, tiny_models  # noqa: F401  (fixtures)
from helpers.task_tools import task_ct
from MedDiffFMLib.engine import Engine, EngineOptions
from MedDiffFMLib.errors import ModelChecksumError, ModelError
from MedDiffFMLib.models.weights import add_model_files, verify_model_folder
from MedDiffFMLib.tasks.anomaly import AnomalyOptions, anomaly_map_image, default_threshold
from MedDiffFMLib.tasks.anomaly_calibration import (CALIBRATION_FILE, AnomalyCalibration, ScoringSettings,
                                                    body_centred_crop, calibrate, load_calibration)
from MedDiffFMLib.tasks.anomaly_scoring import (fill_table, local_gradient, normalised_residual,
                                                remove_small_components, structure_bins)


def test_edges_expect_more_residual_than_flat_tissue():
    table = fill_table(np.array([2.0, np.nan, 8.0, np.nan, np.nan, np.nan]), 2, 3, fallback=5.0)
    # A sharper edge never expects less; an empty HU class takes the fallback.
    np.testing.assert_allclose(table, [[2.0, 2.0, 8.0], [5.0, 5.0, 5.0]])
    hu = np.zeros((1, 1, 40), np.float32)
    hu[..., 20:] = 400.0  # one edge
    gradient = local_gradient(hu, (1.0, 1.0, 1.0), 1.0)
    assert gradient[0, 0, 20] > 100 and gradient[0, 0, 2] < 1
    bins = structure_bins(hu, gradient, [200.0], [50.0])
    expected = np.array([[2.0, 40.0], [2.0, 40.0]])
    residual = np.full(hu.shape, 20.0, np.float32)
    score = normalised_residual(residual, bins, expected)
    # The same 20 HU residual scores 10 in flat tissue and 0.5 on the edge.
    assert score[0, 0, 2] == pytest.approx(10.0) and score[0, 0, 20] == pytest.approx(0.5)


def test_small_components_are_dropped_by_volume():
    mask = np.zeros((10, 10, 10), bool)
    mask[1:4, 1:4, 1:4] = True  # 27 voxels of 2 mm^3 = 0.054 ml
    mask[6:9, 6:9, 5:9] = True  # 36 voxels = 0.072 ml
    kept = remove_small_components(mask, (2.0, 1.0, 1.0), 0.06)
    assert not kept[1:4, 1:4, 1:4].any() and kept[6:9, 6:9, 5:9].all()
    assert np.array_equal(remove_small_components(mask, (2.0, 1.0, 1.0), 0.0), mask)


@pytest.fixture()
def calibrated_model(tmp_path, tiny_models):
    """A copy of the tiny base model with healthy statistics from two phantom CTs."""
    folder = tmp_path / "tiny-base-calibrated"
    shutil.copytree(tiny_models.base, folder)
    engine = Engine(EngineOptions(model=str(folder), device="cpu"), role="base")
    calibration = calibrate([("a", task_ct(shape=(12, 32, 28), seed=1)), ("b", task_ct(shape=(12, 32, 28), seed=2))],
                            engine, region="chest")
    add_model_files(folder, {CALIBRATION_FILE: calibration.to_json().encode()})
    return folder, calibration


def test_calibration_ships_in_the_manifest_and_sets_the_default_threshold(calibrated_model):
    folder, calibration = calibrated_model
    files = verify_model_folder(folder)
    assert CALIBRATION_FILE in files.files and files.fingerprint == calibration.fingerprint
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"config.json", "model.safetensors", "MODEL_CARD.md", CALIBRATION_FILE}
    again = AnomalyCalibration.from_json(calibration.to_json())
    assert again.threshold == pytest.approx(calibration.threshold, abs=1e-4) and again.settings == calibration.settings
    assert calibration.threshold > 1.0  # the 99th percentile of scores whose median is about 1
    assert [c["name"] for c in calibration.cases] == ["a", "b"]
    engine = Engine(EngineOptions(model=str(folder), device="cpu"), role="base")
    assert load_calibration(engine) is not None and default_threshold(engine) == pytest.approx(calibration.threshold,
                                                                                            abs=1e-4)
    assert default_threshold(engine, "residual") is None
    # On a healthy CT the calibrated threshold flags few voxels (about 1 % of those it was made from).
    result = anomaly_map_image(task_ct(shape=(12, 32, 28), seed=1), engine, AnomalyOptions(region="chest",
                                                                                           min_component_ml=0.0))
    assert result.calibrated and result.threshold == pytest.approx(calibration.threshold, abs=1e-4)
    mask = sitk.GetArrayFromImage(result.mask).astype(bool)
    amap = sitk.GetArrayFromImage(result.anomaly_map)
    assert mask.sum() <= 0.05 * (amap > 0).sum()


def test_a_changed_calibration_file_fails_the_checksum(calibrated_model):
    folder, _ = calibrated_model
    path = folder / CALIBRATION_FILE
    path.write_text(path.read_text().replace('"threshold": ', '"threshold": 1'))
    with pytest.raises(ModelChecksumError, match=CALIBRATION_FILE):
        verify_model_folder(folder)


def test_weights_and_config_cannot_be_replaced_as_side_files(calibrated_model):
    folder, _ = calibrated_model
    for name in ("model.safetensors", "config.json", "manifest.json", "../x.json"):
        with pytest.raises(ModelError):
            add_model_files(folder, {name: b"{}"})
    verify_model_folder(folder)  # untouched


def test_calibration_of_other_weights_is_ignored(calibrated_model, tiny_models, tmp_path):
    folder, calibration = calibrated_model
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    doc = json.loads(calibration.to_json())
    doc["fingerprint"] = "0" * 64
    add_model_files(other, {CALIBRATION_FILE: json.dumps(doc).encode()})
    engine = Engine(EngineOptions(model=str(other), device="cpu"), role="base")
    assert load_calibration(engine) is None


def test_calibrate_and_mask_on_the_command_line(calibrated_model, tiny_models, tmp_path, capsys):
    from MedDiffFMLib.cli import main
    from MedDiffFMLib.io import write_volume

    folder = tmp_path / "cli-model"
    shutil.copytree(tiny_models.base, folder)
    ct = tmp_path / "ct.nii.gz"
    write_volume(task_ct(shape=(12, 32, 28), seed=3), ct)
    assert main(["calibrate-anomaly", str(ct), "--model", str(folder), "--device", "cpu", "--region", "chest",
                 "--progress", "none"]) == 0
    assert "default threshold" in capsys.readouterr().out
    assert CALIBRATION_FILE in verify_model_folder(folder).files
    out, mask = tmp_path / "map.nii.gz", tmp_path / "mask.nii.gz"
    assert main(["anomaly", str(ct), str(out), "--mask-out", str(mask), "--model", str(folder), "--device", "cpu",
                 "--region", "chest", "--progress", "none"]) == 0
    assert sitk.ReadImage(str(mask)).GetPixelID() == sitk.sitkUInt8
    # Without a calibration (the plain tiny model) --mask-out needs --threshold, before any work.
    assert main(["anomaly", str(ct), str(tmp_path / "m2.nii.gz"), "--mask-out", str(tmp_path / "k2.nii.gz"),
                 "--model", str(tiny_models.base), "--device", "cpu", "--progress", "none"]) == 2
    assert "--threshold" in capsys.readouterr().err and not (tmp_path / "m2.nii.gz").exists()


def test_body_centred_crop_keeps_geometry():
    image = task_ct(shape=(12, 32, 28))
    crop = body_centred_crop(image, 10.0)
    assert crop.GetSize()[0] < 28 and crop.GetSpacing() == image.GetSpacing()
    point = crop.TransformIndexToPhysicalPoint((0, 0, 0))
    index = image.TransformPhysicalPointToIndex(point)
    assert sitk.GetArrayFromImage(crop)[0, 0, 0] == sitk.GetArrayFromImage(image)[index[2], index[1], index[0]]

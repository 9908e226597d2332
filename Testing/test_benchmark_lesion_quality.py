"""The lesion benchmark's distribution and texture scores on arrays with known answers, and the
script end to end on a tiny synthetic case with a tiny random lesion ControlNet (and a second one
through --compare-model)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import metrics  # noqa: E402
from benchmarks import lesion_quality as lq  # noqa: E402


def _noise(shape=(6, 40, 40), seed=0, mean=40.0, std=20.0):
    return np.random.default_rng(seed).normal(mean, std, shape)


def test_equal_distributions_score_as_a_match():
    a, b = _noise(seed=0), _noise(seed=1)  # two samples of the same texture, not voxel-equal
    mask = np.ones(a.shape, bool)
    assert metrics.wasserstein_hu(a, b) < 1.0
    assert metrics.std_ratio(a, b) == pytest.approx(1.0, abs=0.02)
    ratio = metrics.mean_gradient_axial(b, mask) / metrics.mean_gradient_axial(a, mask)
    assert ratio == pytest.approx(1.0, abs=0.03)
    span = (-20.0, 100.0)
    c = metrics.glcm_axial(b, mask, span)["contrast"] / metrics.glcm_axial(a, mask, span)["contrast"]
    assert c == pytest.approx(1.0, abs=0.05)


def test_a_shift_moves_the_wasserstein_distance_by_the_shift():
    a = _noise()
    assert metrics.wasserstein_hu(a, a + 30.0) == pytest.approx(30.0, abs=1e-6)
    assert metrics.std_ratio(a, 2.0 * a) == pytest.approx(2.0)


def test_a_flat_fill_has_no_spread_and_no_texture():
    real = _noise()
    flat = np.full_like(real, real.mean())
    mask = np.ones(real.shape, bool)
    assert metrics.std_ratio(real, flat) == 0.0
    assert metrics.mean_gradient_axial(flat, mask) == 0.0
    glcm = metrics.glcm_axial(flat, mask, (0.0, 80.0))
    assert glcm["contrast"] == 0.0 and glcm["homogeneity"] == pytest.approx(1.0)
    assert lq.texture_error(0.0) == float("inf")
    assert lq.texture_error(2.0) == pytest.approx(lq.texture_error(0.5))


def test_texture_is_measured_inside_the_mask_only():
    smooth = np.zeros((3, 30, 30))
    smooth[:, :, 15:] = 1000.0  # a sharp edge outside the mask
    mask = np.zeros(smooth.shape, bool)
    mask[:, 5:25, 2:12] = True
    assert metrics.mean_gradient_axial(smooth, mask, (0.5, 0.5)) == 0.0
    assert metrics.glcm_axial(smooth, mask, (0.0, 1000.0))["contrast"] == 0.0
    ramp = np.broadcast_to(np.arange(30.0) * 2.0, (3, 30, 30))  # 2 HU per voxel along x, 0.5 mm voxels
    assert metrics.mean_gradient_axial(ramp, mask, (0.5, 0.5)) == pytest.approx(4.0)


def test_scores_of_the_real_tumour_against_itself_and_a_flat_fill():
    hu = _noise((8, 32, 32), mean=0.0, std=10.0).astype(np.float32)
    mask = np.zeros(hu.shape, bool)
    mask[2:6, 8:24, 8:24] = True
    hu[mask] += 60.0
    real = lq.RealTumour(hu, mask, (2.0, 1.0, 1.0))
    same = lq.lesion_scores(real, hu)
    assert same["abs_mean"] == 0.0 and same["w1"] == 0.0
    assert same["std_ratio"] == same["grad_ratio"] == same["glcm_ratio"] == 1.0
    flat = lq.shell_mean(hu, lq.dilate_mm(mask, (2.0, 1.0, 1.0), 2.0))
    scores = lq.lesion_scores(real, flat)
    assert scores["abs_mean"] == pytest.approx(60.0, abs=3.0)
    assert scores["std_ratio"] == scores["grad_ratio"] == scores["glcm_ratio"] == 0.0


def test_box_and_dilation_in_millimetres():
    mask = np.zeros((20, 40, 40), bool)
    mask[8:12, 15:25, 15:25] = True
    box = lq.tumour_box(mask, (3.0, 1.0, 1.0), 5.0)
    assert box == (slice(6, 14), slice(10, 30), slice(10, 30))
    grown = lq.dilate_mm(mask, (3.0, 1.0, 1.0), 2.0)
    assert grown[7, 20, 20] and grown[12, 20, 20] and not grown[6, 20, 20]  # at least one voxel along z
    assert grown[10, 13, 20] and not grown[10, 12, 20]  # 2 mm = 2 voxels in-plane


@pytest.mark.filterwarnings("ignore")
def test_script_end_to_end_on_a_tiny_case(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from benchmarks.common import model_setup, reporting

    # A tiny limb-like crop: a tumour sphere (brighter, rougher) in muscle, a fat ring, air around.
    rng = np.random.default_rng(0)
    shape = (12, 36, 36)
    zz, yy, xx = np.indices(shape)
    radius = np.hypot(yy - 18.0, xx - 18.0)
    tumour = ((zz - 6) * 3.0) ** 2 + radius**2 <= 8.0**2
    hu = np.where(radius <= 11.0, rng.normal(40.0, 10.0, shape), np.where(radius <= 14.0, -100.0, -1000.0))
    hu[tumour] = rng.normal(90.0, 30.0, int(tumour.sum()))
    (tmp_path / "sarcoma").mkdir()
    for array, suffix in ((hu.astype(np.int16), "ct"), (tumour.astype(np.uint8), "tumour")):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.0, 3.0))
        sitk.WriteImage(image, str(tmp_path / "sarcoma" / f"STS_035_{suffix}.nii.gz"))
    monkeypatch.setenv("MEDDIFFFM_CT_DATA", str(tmp_path))
    monkeypatch.setattr(reporting, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(reporting, "REPO_ROOT", tmp_path)  # save_results prints paths relative to it
    other = model_setup.make_random_model("tiny", controlnet="lesion", seed=1)

    assert lq.main(["--config", "tiny", "--compare-model", str(other), "--cases", "STS_035", "--steps", "2",
                    "--margin-mm", "8", "--device", "cpu", "--save", "--save-name", "lesion_test"]) == 0
    out = capsys.readouterr().out
    assert "UNTRAINED" in out
    doc = json.loads((tmp_path / "results" / "lesion_test.json").read_text())
    summary = doc["tables"][-1]
    rows = {r["method"]: r for r in summary["rows"]}
    assert set(rows) == {"shell_mean", "tumour_stats_noise", "meddifffm", "healthy_inpaint", "meddifffm_compare",
                         "healthy_inpaint_compare"}
    assert rows["shell_mean"]["std_ratio"] == 0.0 and rows["shell_mean"]["texture"] == "inf"
    assert rows["tumour_stats_noise"]["std_ratio"] == pytest.approx(1.0, abs=0.1)
    for method in ("meddifffm", "healthy_inpaint", "meddifffm_compare", "healthy_inpaint_compare"):
        assert np.isfinite(rows[method]["w1"]) and rows[method]["std_ratio"] > 0.0, method
    assert rows["meddifffm"]["w1"] != rows["meddifffm_compare"]["w1"]  # two different models were run

    # --skip-healthy leaves out the base-only rows.
    assert lq.main(["--config", "tiny", "--cases", "STS_035", "--steps", "1", "--margin-mm", "8", "--device", "cpu",
                    "--skip-healthy", "--save", "--save-name", "lesion_test2"]) == 0
    doc = json.loads((tmp_path / "results" / "lesion_test2.json").read_text())
    assert {r["method"] for r in doc["tables"][-1]["rows"]} == {"shell_mean", "tumour_stats_noise", "meddifffm"}
    assert "1 steps" in doc["tables"][-1]["rows"][-1]["note"]

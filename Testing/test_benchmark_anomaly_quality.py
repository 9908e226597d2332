"""The anomaly benchmark end to end on tiny synthetic cases with a tiny random model: every method's
row, the lesion-free table and the saved tables."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import anomaly_quality as aq  # noqa: E402


def _write(array, path: Path, spacing=(1.0, 1.0, 3.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


@pytest.mark.filterwarnings("ignore")
def test_script_end_to_end_on_tiny_cases(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from benchmarks.common import reporting

    rng = np.random.default_rng(0)
    shape = (12, 36, 36)
    zz, yy, xx = np.indices(shape)
    radius = np.hypot(yy - 18.0, xx - 18.0)
    tumour = ((zz - 6) * 3.0) ** 2 + radius**2 <= 6.0**2
    hu = np.where(radius <= 14.0, rng.normal(40.0, 10.0, shape), -1000.0)
    healthy = hu.copy()
    hu[tumour] = rng.normal(120.0, 20.0, int(tumour.sum()))
    _write(hu.astype(np.int16), tmp_path / "sarcoma" / "STS_035_ct.nii.gz")
    _write(tumour.astype(np.uint8), tmp_path / "sarcoma" / "STS_035_tumour.nii.gz")
    _write(healthy.astype(np.int16), tmp_path / "chest" / "chest_upper_abdomen.nii.gz")
    monkeypatch.setenv("MEDDIFFFM_CT_DATA", str(tmp_path))
    monkeypatch.setattr(reporting, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(reporting, "REPO_ROOT", tmp_path)

    assert aq.main(["--config", "tiny", "--cases", "STS_035", "--healthy", "chest_upper_abdomen", "--crop-mm", "30",
                    "--residual-steps", "2", "--device", "cpu", "--save", "--save-name", "anomaly_test"]) == 0
    out = capsys.readouterr().out
    assert "UNTRAINED" in out
    doc = json.loads((tmp_path / "results" / "anomaly_test.json").read_text())
    tables = {t["title"].split(":")[0]: t for t in doc["tables"]}
    rows = {r["method"]: r for r in doc["tables"][-1]["rows"]}
    assert set(rows) == set(aq.METHODS)
    for method in aq.METHODS:
        assert 0.0 <= rows[method]["auroc"] <= 1.0 and 0.0 < rows[method]["auprc"] <= 1.0, method
        assert rows[method]["prevalence"] == pytest.approx(rows["zscore"]["prevalence"])
    # The tumour is 80 HU brighter than muscle: smoothed HU finds it.
    assert rows["smoothed_hu"]["auroc"] > 0.9
    # The tiny model has no calibration: no default threshold, so no flagged share.
    free = tables["Lesion-free scans"]["rows"]
    assert free[0]["case"] == "chest_upper_abdomen" and "no calibrated threshold" in free[0]["note"]
    assert "2 steps from t=950" in next(r for r in doc["tables"][1]["rows"] if r["method"] == "residual")["note"]

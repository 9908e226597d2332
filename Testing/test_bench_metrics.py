"""Metric and helper functions of the benchmarks (benchmarks/common/) on inputs with known answers."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ct_cases, metrics, reporting, timing  # noqa: E402


def test_psnr_known_value_and_clipping():
    ref = np.zeros((4, 8, 8), np.float32)
    test = ref + 20.0  # MSE 400 over a 2000 HU range: 10 log10(2000^2 / 400) = 40 dB
    assert metrics.psnr(ref, test) == pytest.approx(40.0, abs=1e-9)
    assert metrics.psnr(ref, ref) == float("inf")
    # Values beyond [-1000, 1000] are clipped first: -3000 vs -1000 is no error.
    assert metrics.psnr(np.full((2, 2, 2), -1000.0), np.full((2, 2, 2), -3000.0)) == float("inf")
    mask = np.zeros_like(ref, bool)
    mask[0] = True
    test2 = ref.copy()
    test2[1:] = 500.0
    assert metrics.psnr(ref, test2, mask) == float("inf")


def test_rmse_and_mae_in_a_mask():
    ref = np.zeros((2, 3, 3))
    test = np.zeros((2, 3, 3))
    test[0] = 3.0
    test[1] = -4.0
    assert metrics.rmse(ref, test) == pytest.approx(np.sqrt((9 + 16) / 2))
    assert metrics.mae(ref, test) == pytest.approx(3.5)
    mask = np.zeros_like(ref, bool)
    mask[1] = True
    assert metrics.rmse(ref, test, mask) == pytest.approx(4.0)


def test_ssim_identity_and_noise():
    pytest.importorskip("skimage")
    rng = np.random.default_rng(0)
    ref = np.full((12, 32, 32), 40.0)  # 3D SSIM's Gaussian window needs 11 voxels per axis
    ref[:, 8:24, 8:24] = 140.0
    assert metrics.ssim_axial(ref, ref) == pytest.approx(1.0)
    assert metrics.ssim_3d(ref, ref) == pytest.approx(1.0)
    noisy = ref + rng.normal(0, 40, ref.shape)
    very_noisy = ref + rng.normal(0, 120, ref.shape)
    assert 0 < metrics.ssim_axial(ref, very_noisy) < metrics.ssim_axial(ref, noisy) < 1.0


def test_auroc_and_best_dice():
    labels = np.array([0, 0, 0, 1, 1], bool)
    assert metrics.auroc(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), labels) == pytest.approx(1.0)
    assert metrics.auroc(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), labels) == pytest.approx(0.0)
    assert metrics.auroc(np.ones(5), labels) == pytest.approx(0.5)  # ties: chance
    # One positive ranked below one negative: 5 of 6 pairs right.
    assert metrics.auroc(np.array([0.1, 0.2, 0.6, 0.5, 0.9]), labels) == pytest.approx(5 / 6)
    best, threshold = metrics.best_dice(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), labels)
    assert best == pytest.approx(1.0) and 0.3 < threshold <= 0.8
    # Ties cannot be split: all five selected -> Dice 2*2/(5+2).
    best, _ = metrics.best_dice(np.ones(5), labels)
    assert best == pytest.approx(4 / 7)


def test_auprc_known_values():
    labels = np.array([1, 0, 1, 0, 0], bool)
    # Ranked 1, 0, 1, 0, 0: precision 1 at the first positive, 2/3 at the second.
    assert metrics.auprc(np.array([5.0, 4, 3, 2, 1]), labels) == pytest.approx((1.0 + 2 / 3) / 2)
    assert metrics.auprc(np.array([1.0, 0, 1, 0, 0]), labels) == pytest.approx(1.0)
    # A constant map scores the prevalence (every voxel tied, one cut).
    assert metrics.auprc(np.zeros(5), labels) == pytest.approx(0.4)
    assert np.isnan(metrics.auprc(np.zeros(3), np.zeros(3, bool)))


def test_soft_tissue_and_body_masks():
    hu = np.full((3, 20, 20), -1000.0)
    hu[:, 4:16, 4:16] = 40.0  # soft tissue block
    hu[:, 8:13, 8:13] = -900.0  # air hole inside the body
    soft = metrics.soft_tissue_mask(hu)
    # Soft tissue one voxel in from the edge (the mask is eroded in-plane); not air, not the hole.
    assert soft[1, 6, 6] and not soft[1, 4, 4] and not soft[1, 0, 0] and not soft[1, 10, 10]
    body = metrics.body_mask(hu)
    assert body[1, 10, 10] and body[1, 5, 5] and not body[1, 0, 0]


def test_crop_box_and_crop_image_keep_geometry():
    import SimpleITK as sitk

    hu = np.full((20, 40, 50), -1000.0, np.float32)
    hu[5:15, 10:30, 20:40] = 40.0
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.5, 1.0, 2.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    box = ct_cases.crop_box(hu, image.GetSpacing(), 10.0)
    assert [s.stop - s.start for s in box] == [5, 10, 20]
    cropped = ct_cases.crop_image(image, box)
    assert cropped.GetSize() == (20, 10, 5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(cropped), hu[box])
    first = image.TransformIndexToPhysicalPoint((box[2].start, box[1].start, box[0].start))
    assert cropped.GetOrigin() == pytest.approx(first)


def test_parse_cases_ranges():
    assert ct_cases.parse_cases("STS_034..036", []) == ["STS_034", "STS_035", "STS_036"]
    assert ct_cases.parse_cases(None, ["lung_tumour_5mm"]) == ["lung_tumour_5mm"]
    with pytest.raises(SystemExit):
        ct_cases.parse_cases("nope", [])


def test_table_markdown_and_json():
    table = reporting.Table("T", [("a", "A", "{:.1f}"), ("b", "B")])
    table.add(a=1.234, b="x")
    table.add(a=float("nan"), b=None)
    text = table.markdown()
    assert "| 1.2 | x |" in text and "| n/a | – |" in text
    assert table.as_dict()["rows"][1]["a"] is None


def test_peak_memory_sees_a_large_allocation():
    with timing.PeakMemory() as mem:
        block = np.ones(40 * 2**20 // 8)  # 40 MiB
        del block
    assert mem.peak_rss - mem.start_rss > 30 * 2**20

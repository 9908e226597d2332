"""The synthesis benchmark's helpers (no model, no shared data): the smoothed-noise baseline keeps
the real histogram exactly, diversity is 1 for copies, and the memorisation search finds a copy of a
training case at its shift and scores other anatomy lower."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from benchmarks.synthesis_quality import (Memorisation, MatchCase, mean_pairwise_ssim, smoothed_noise,
                                          tissue_fractions)


def _smooth_volume(seed: int, shape=(30, 32, 34)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) * 3000.0).astype(np.float32)


def test_smoothed_noise_has_the_real_histogram_but_not_its_voxels():
    real = _smooth_volume(0)
    noise = smoothed_noise(real, (1.0, 1.0, 1.0), seed=1)
    assert noise.shape == real.shape
    assert np.array_equal(np.sort(noise, axis=None), np.sort(real, axis=None))
    assert abs(np.corrcoef(noise.ravel(), real.ravel())[0, 1]) < 0.2
    assert not np.array_equal(noise, smoothed_noise(real, (1.0, 1.0, 1.0), seed=2))


def test_diversity_and_tissue_fractions():
    a, b = _smooth_volume(0), _smooth_volume(1)
    assert mean_pairwise_ssim([a, a.copy()]) > 0.999
    assert mean_pairwise_ssim([a, b]) < mean_pairwise_ssim([a, a.copy()])
    assert np.isnan(mean_pairwise_ssim([a]))
    hu = np.array([-950.0, -700.0, -100.0, 50.0, 500.0, 200.0])
    fractions = tissue_fractions(hu, np.ones(hu.shape, bool))
    assert [round(fractions[k]) for k in ("air", "lung", "fat", "soft", "bone")] == [17, 17, 17, 17, 17]


def test_memorisation_finds_a_copy_at_its_shift():
    case, other = _smooth_volume(3), _smooth_volume(4)
    memory = Memorisation((3.0, 3.0, 3.0), [MatchCase("other", other), MatchCase("seen", case)])
    copy = sitk.GetImageFromArray(case[5:17, 7:21, 9:25].copy())
    copy.SetSpacing((3.0, 3.0, 3.0))
    score, nearest = memory.best_match(copy)
    assert nearest == "seen" and score > 0.99
    new = sitk.GetImageFromArray(_smooth_volume(5)[5:17, 7:21, 9:25].copy())
    new.SetSpacing((3.0, 3.0, 3.0))
    assert memory.best_match(new)[0] < 0.9
    assert memory.best_match(copy, exclude=["seen"])[1] == "other"


def test_box_body_mask_keeps_lungs_open_to_the_box_edge_and_drops_outside_air():
    from benchmarks.synthesis_quality import box_body_mask

    hu = np.full((3, 40, 40), 40.0, np.float32)  # soft tissue
    hu[:, :, :6] = -1000.0  # air outside the patient, along one edge
    hu[:, 10:30, 20:40] = -850.0  # a lung that reaches the opposite edge
    hu[:, 15:18, 10:13] = -1000.0  # enclosed gas (trachea)
    body = box_body_mask(hu)
    assert not body[:, :, :5].any()
    assert body[:, 12:28, 22:40].all() and body[:, 16, 11].all()

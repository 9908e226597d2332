"""The low-dose CT simulator of the denoising benchmark (benchmarks/common/lowdose.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytest.importorskip("skimage")
from benchmarks.common.lowdose import added_std, calibrate_i0, hu_to_mu, simulate_low_dose  # noqa: E402


def _phantom(n=96, slices=3):
    """A water cylinder (0 HU, radius 0.4 n) with a 'bone' rod, in air, ``slices`` identical slices."""
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2.0
    s = np.full((n, n), -1000.0, np.float32)
    s[yy**2 + xx**2 < (0.4 * n) ** 2] = 0.0
    s[(yy - 0.15 * n) ** 2 + xx**2 < (0.05 * n) ** 2] = 700.0
    return np.stack([s] * slices)


def _water(hu):
    n = hu.shape[1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2.0
    inner = (yy**2 + xx**2 < (0.3 * n) ** 2) & (hu[0] == 0.0)
    return np.broadcast_to(inner, hu.shape).copy()


def test_hu_to_mu_water_and_air():
    mu = hu_to_mu(np.array([-2048.0, -1000.0, 0.0, 1000.0]))
    assert mu[0] == 0.0 and mu[1] == 0.0
    assert mu[3] == pytest.approx(2 * mu[2])


def test_noise_level_scales_with_flux_and_keeps_the_mean():
    hu = _phantom()
    mask = _water(hu)
    spacing = (1.0, 1.0, 2.0)
    low = simulate_low_dose(hu, spacing, 2e4, seed=0)
    high = simulate_low_dose(hu, spacing, 8e4, seed=0)
    s_low, s_high = added_std(low.noise, mask), added_std(high.noise, mask)
    assert s_low > 5.0
    # Quadrupling the photons halves the noise (Poisson), within sampling error.
    assert s_low / s_high == pytest.approx(2.0, rel=0.15)
    # The mean HU of the water is kept (no bias beyond a small fraction of the noise std).
    assert abs(float(low.noise[mask].mean())) < 0.1 * s_low
    assert abs(float(low.noisy[mask].mean())) < 0.1 * s_low
    # Only noise is added: the clean image is recovered exactly from noisy - noise.
    np.testing.assert_allclose(low.noisy - low.noise, hu, atol=1e-3)


def test_calibration_hits_the_target_std():
    hu = _phantom(slices=4)
    mask = _water(hu)
    spacing = (0.8, 0.8, 1.5)
    i0, pilot_std = calibrate_i0(hu, spacing, mask, target_std_hu=35.0, pilot_slices=2)
    assert pilot_std > 0 and i0 > 0
    result = simulate_low_dose(hu, spacing, i0, seed=3)
    assert added_std(result.noise, mask) == pytest.approx(35.0, rel=0.15)


def test_selected_slices_only_and_reproducible():
    hu = _phantom(slices=3)
    a = simulate_low_dose(hu, (1.0, 1.0, 1.0), 5e4, seed=7, slices=[1])
    b = simulate_low_dose(hu, (1.0, 1.0, 1.0), 5e4, seed=7, slices=[1])
    assert np.all(a.noise[0] == 0) and np.all(a.noise[2] == 0) and np.any(a.noise[1] != 0)
    np.testing.assert_array_equal(a.noise, b.noise)


def test_non_square_slices_keep_their_shape():
    hu = _phantom(n=64, slices=1)[:, 8:56, :]
    result = simulate_low_dose(hu, (1.0, 1.0, 1.0), 5e4, seed=0)
    assert result.noisy.shape == hu.shape
    assert np.isfinite(result.noisy).all()

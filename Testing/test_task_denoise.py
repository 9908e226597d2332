"""Denoising at the task level: the start step follows the noise estimate (made on the input's grid,
carried to the model grid), strength blends between the input and the fully denoised image, strength 0
(or no noise) returns the input bit-identical, and the way back removes noise finer than the model grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import single_torch_thread, tiny_engines, tiny_models  # noqa: F401  (fixtures)
from helpers.phantoms import assert_same_grid
from helpers.task_tools import Recorder, task_ct
from helpers.volumes import ct_like_array, make_image
from MedDiffFMLib.sampling.diffpir import measurement_sigma
from MedDiffFMLib.tasks.denoise import DenoiseOptions, denoise_image
from MedDiffFMLib.engine import Engine, EngineOptions
from MedDiffFMLib.preprocessing.noise_estimate import estimate_noise_hu


def _noisy(noise_hu: float, seed: int = 0) -> sitk.Image:
    """A float32 phantom on the tiny model's 4 mm grid (so the noise is not averaged away and the
    estimate has enough soft tissue), with white noise of ``noise_hu`` HU added."""
    image = make_image(ct_like_array((16, 24, 24), 0).astype(np.float32), (4.0, 4.0, 4.0))
    values = sitk.GetArrayFromImage(image)
    values += np.random.default_rng(seed).normal(0.0, noise_hu, values.shape).astype(np.float32)
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(image)
    return out


def test_start_step_follows_the_noise_estimate(tiny_engines):
    engine = tiny_engines["base"]
    starts = []
    for noise in (20.0, 60.0):
        image = _noisy(noise)
        result = denoise_image(image, engine, DenoiseOptions(steps=2, region="chest"))
        assert result.noise_hu == estimate_noise_hu(sitk.GetArrayFromImage(image))
        # The phantom is on the model grid: the resampling is the identity and keeps the noise as it is.
        assert result.model_noise_hu == pytest.approx(result.noise_hu, rel=1e-3)
        expected = engine.schedule.step_for_noise(measurement_sigma(result.model_noise_hu, engine.window("chest").width))
        assert result.start_step == expected > 0
        starts.append(result.start_step)
    assert starts[1] > starts[0]  # more noise: further up the diffusion chain
    given = denoise_image(_noisy(20.0), engine, DenoiseOptions(steps=2, region="chest", noise_hu=50.0))
    assert given.noise_hu == 50.0
    assert given.start_step == engine.schedule.step_for_noise(given.model_noise_hu / (engine.window("chest").width / 2))


@pytest.fixture(scope="module")
def active_engine(tiny_models):
    """The tiny base model with its zero-initialised output layers redrawn, so that it changes the image."""
    from benchmarks.common.model_setup import redraw_zero_weights

    engine = Engine(EngineOptions(model=str(tiny_models.base), device="cpu"))
    assert redraw_zero_weights(engine.loaded.model, gain=3.0) > 0
    return engine


def test_strength_between_0_and_1_blends_input_and_full_denoising(active_engine):
    engine = active_engine
    image = _noisy(60.0)
    source = sitk.GetArrayFromImage(image)
    recorder = Recorder()
    full = denoise_image(image, engine, DenoiseOptions(steps=3, region="chest", strength=1.0))
    half = denoise_image(image, engine, DenoiseOptions(steps=3, region="chest", strength=0.5), progress=recorder)
    recorder.assert_complete("denoising")
    assert_same_grid(half.image, image, tol=0)
    assert half.image.GetPixelID() == sitk.sitkFloat32
    full_change = sitk.GetArrayFromImage(full.image) - source
    half_change = sitk.GetArrayFromImage(half.image) - source
    assert np.abs(full_change).max() > 1.0  # the denoiser did change the image
    # Strength s is x + s (denoised - x) on the input grid; voxels outside the window keep the input,
    # so compare where both stay well inside it.
    window = engine.window("chest")
    level, width = window.center, window.width
    inside = (np.abs(sitk.GetArrayFromImage(full.image) - level) < 0.45 * width) & (np.abs(source - level) < 0.45 * width)
    assert inside.mean() > 0.2
    np.testing.assert_allclose(half_change[inside], 0.5 * full_change[inside], atol=0.05)
    assert half.start_step == full.start_step and half.steps == full.steps


def test_strength_zero_returns_the_input_bit_identical(tiny_engines):
    image = task_ct()  # int16
    result = denoise_image(image, tiny_engines["base"], DenoiseOptions(steps=2, region="chest", strength=0.0,
                                                                      noise_hu=30.0))
    assert result.image.GetPixelID() == image.GetPixelID()
    assert np.array_equal(sitk.GetArrayFromImage(result.image), sitk.GetArrayFromImage(image))
    assert result.steps == 0


def _fat_phantom(noise_hu: float, fat_hu: float = -110.0) -> sitk.Image:
    """An abdomen-like phantom on the tiny model's 4 mm grid: a body that is mostly fat (``fat_hu``,
    just above the abdomen window's -120 HU edge) around a soft-tissue core, white noise of ``noise_hu``."""
    values = np.full((16, 24, 24), -1000.0)
    values[:, 2:22, 2:22] = fat_hu
    values[:, 8:16, 8:16] = 40.0
    body = values > -500
    values[body] += np.random.default_rng(0).normal(0.0, noise_hu, int(body.sum()))
    return make_image(values.astype(np.float32), (4.0, 4.0, 4.0))


def test_noise_estimate_ignores_the_window_clipping(active_engine):
    """Regression: the estimate once ran on HU clipped to the region window, where fat below the
    abdomen window's -120 HU is flat, so it fell to a third of the true noise (0 for fat at -130 HU)
    and denoising barely started. It now runs on the unclipped HU on the model grid."""
    engine = active_engine
    image = _fat_phantom(20.0)
    space = engine.model_space(image, "abdomen")
    assert estimate_noise_hu(space.model_hu) < 10.0  # the clipped HU hide the noise (the old bug)
    result = denoise_image(image, engine, DenoiseOptions(steps=2, region="abdomen"))
    assert 16.0 < result.noise_hu < 24.0
    expected = engine.schedule.step_for_noise(measurement_sigma(result.model_noise_hu, engine.window("abdomen").width))
    assert result.start_step == expected > 0 and result.steps > 0
    change = np.abs(sitk.GetArrayFromImage(result.image) - sitk.GetArrayFromImage(image))
    assert change.max() > 1.0  # denoising did something


def test_noise_on_the_model_grid_follows_the_resampling():
    """White noise on a fine grid, taken onto a coarser model grid: its std there is what linear
    interpolation leaves, and the fine band holds the rest (their variances add up to about the input's)."""
    from MedDiffFMLib.io import geometry_of
    from MedDiffFMLib.preprocessing import resampled_noise

    fine_grid = geometry_of(make_image(np.zeros((40, 64, 64), np.float32), (0.625, 0.625, 2.5)))
    same = resampled_noise(fine_grid, (0.625, 0.625, 2.5), 30.0)
    assert same.model_grid_hu == pytest.approx(30.0, rel=0.02) and same.fine_band_hu < 0.5
    coarse = resampled_noise(fine_grid, (1.0, 1.0, 1.0), 30.0)
    assert 8.0 < coarse.model_grid_hu < 25.0 and coarse.fine_band_hu > 15.0
    assert resampled_noise(fine_grid, (1.0, 1.0, 1.0), 0.0).model_grid_hu == 0.0


def test_wiener_shrink_keeps_edges_and_drops_noise():
    from MedDiffFMLib.preprocessing import wiener_shrink

    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 10.0, (24, 24, 24)).astype(np.float32)
    edge = np.zeros_like(noise)
    edge[:, :, 12:] = 200.0
    edge -= edge.mean()
    kept_noise = wiener_shrink(noise, 10.0)
    assert np.abs(kept_noise).mean() < 0.35 * np.abs(noise).mean()
    kept_edge = wiener_shrink(edge + noise, 10.0)
    assert np.abs(kept_edge - edge)[:, :, 10:14].mean() < 0.2 * np.abs(edge).mean()
    np.testing.assert_array_equal(wiener_shrink(noise, 0.0), noise)


def test_denoising_removes_noise_finer_than_the_model_grid(active_engine):
    """On an input finer than the model grid, the result keeps none of the fine-band noise that an
    "input + change" way back would keep: flat tissue comes back smoother than the input."""
    engine = active_engine
    values = np.full((16, 40, 40), -1000.0, np.float32)
    values[:, 5:35, 5:35] = 40.0
    noisy = values + np.random.default_rng(1).normal(0.0, 40.0, values.shape).astype(np.float32)
    # x, y at 2.5 mm, finer than the tiny model's 4 mm (a non-integer ratio, so that linear resampling
    # averages neighbours instead of picking every other voxel).
    image = make_image(noisy, (2.5, 2.5, 4.0))
    result = denoise_image(image, engine, DenoiseOptions(steps=2, region="abdomen", noise_hu=40.0))
    assert result.model_noise_hu < result.noise_hu
    out = sitk.GetArrayFromImage(result.image)
    tissue = (slice(4, 12), slice(10, 30), slice(10, 30))
    # Neighbour differences along x see the fine band only.
    assert np.diff(out[tissue], axis=2).std() < 0.6 * np.diff(noisy[tissue], axis=2).std()

"""Denoising at the task level: the start step follows the noise estimate, strength blends between
the input and the fully denoised image, strength 0 (or no noise) returns the input bit-identical."""

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
        space = engine.model_space(image, "chest")
        assert result.noise_hu == estimate_noise_hu(space.input_hu_on_model_grid())
        expected = engine.schedule.step_for_noise(measurement_sigma(result.noise_hu, engine.window("chest").width))
        assert result.start_step == expected > 0
        starts.append(result.start_step)
    assert starts[1] > starts[0]  # more noise: further up the diffusion chain
    given = denoise_image(_noisy(20.0), engine, DenoiseOptions(steps=2, region="chest", noise_hu=50.0))
    assert given.noise_hu == 50.0
    assert given.start_step == engine.schedule.step_for_noise(50.0 / (engine.window("chest").width / 2))


@pytest.fixture(scope="module")
def active_engine(tiny_models):
    """The tiny base model with its zero-initialised output layers redrawn, so that it changes the image."""
    from benchmarks.common import redraw_zero_weights

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
    # Strength s is y + s (denoised - y) in model units; the change is linear except where the
    # fully denoised value leaves the window, so compare where both stay well inside it.
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
    expected = engine.schedule.step_for_noise(measurement_sigma(result.noise_hu, engine.window("abdomen").width))
    assert result.start_step == expected > 0 and result.steps > 0
    change = np.abs(sitk.GetArrayFromImage(result.image) - sitk.GetArrayFromImage(image))
    assert change.max() > 1.0  # denoising did something

"""Anomaly maps: the former residual map (definition, geometry, samples, body mask, threshold) and the
default ensemble map (structure-normalised, calibrated threshold, shipped healthy statistics)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import single_torch_thread, tiny_engines, tiny_models, tiny_random_base  # noqa: F401  (fixtures)
from helpers.phantoms import air_and_body_ct, assert_same_grid
from helpers.task_tools import Recorder, task_ct
from MedDiffFMLib import api
from MedDiffFMLib.errors import CancelledError, InputError
from MedDiffFMLib.tasks.anomaly import AnomalyOptions, anomaly_map_image
from MedDiffFMLib.preprocessing.model_masks import body_mask


def _run(engine, image, recorder=None, **options):
    options.setdefault("method", "residual")
    options.setdefault("steps", 2)
    options.setdefault("region", "chest")
    recorder = recorder or Recorder()
    return anomaly_map_image(image, engine, AnomalyOptions(**options), progress=recorder, cancel=recorder.cancel)


def test_map_is_abs_difference_in_hu_on_input_grid(tiny_engines):
    image = task_ct()
    recorder = Recorder()
    result = _run(tiny_engines["base"], image, recorder, smooth_mm=0.0)
    for output in (result.anomaly_map, result.healthy):
        assert_same_grid(output, image, tol=0)
    amap = sitk.GetArrayFromImage(result.anomaly_map)
    healthy = sitk.GetArrayFromImage(result.healthy)
    source = sitk.GetArrayFromImage(image).astype(np.float32)
    assert amap.dtype == np.float32 and np.all(amap >= 0)
    np.testing.assert_allclose(amap, np.abs(source - healthy), atol=1e-3)
    assert result.mask is None
    assert result.start_step <= 950
    recorder.assert_complete("reconstruction")


def test_samples_threshold_body_and_smoothing(tiny_engines):
    image = task_ct()
    recorder = Recorder()
    result = _run(tiny_engines["base"], image, recorder, samples=2, threshold=50.0, body_only=True, smooth_mm=3.0,
                  min_component_ml=0.0)
    recorder.assert_complete("reconstruction")
    assert recorder.stage("reconstruction")[-1].total == 2 * result.steps
    amap = sitk.GetArrayFromImage(result.anomaly_map)
    mask = sitk.GetArrayFromImage(result.mask)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    body = body_mask(sitk.GetArrayFromImage(image), image.GetSpacing()[::-1])
    assert np.all(amap[~body] == 0) and np.all(mask[~body] == 0)
    assert np.array_equal(mask.astype(bool), (amap >= 50.0) & body)
    single = _run(tiny_engines["base"], image, samples=1, smooth_mm=3.0, body_only=True)
    assert not np.array_equal(sitk.GetArrayFromImage(single.anomaly_map), amap)  # two samples averaged


def test_deterministic_and_seed_dependent(tiny_engines):
    image = task_ct()
    a = sitk.GetArrayFromImage(_run(tiny_engines["base"], image, seed=7).anomaly_map)
    b = sitk.GetArrayFromImage(_run(tiny_engines["base"], image, seed=7).anomaly_map)
    c = sitk.GetArrayFromImage(_run(tiny_engines["base"], image, seed=8).anomaly_map)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_cancel_within_one_step(tiny_engines):
    recorder = Recorder(cancel_at=("reconstruction", 1))
    with pytest.raises(CancelledError):
        _run(tiny_engines["base"], task_ct(), recorder, samples=2)
    assert recorder.stage("reconstruction")[-1].step == 1


def test_bad_options(tiny_engines):
    image = task_ct()
    with pytest.raises(InputError, match="start-step"):
        _run(tiny_engines["base"], image, start_step=1000)
    with pytest.raises(InputError, match="samples"):
        _run(tiny_engines["base"], image, samples=0)
    with pytest.raises(InputError, match="smooth"):
        _run(tiny_engines["base"], image, smooth_mm=-1)
    with pytest.raises(InputError, match="Unknown region"):
        _run(tiny_engines["base"], image, region="pelvis")


def test_body_mask_fills_lungs_and_drops_table():
    from helpers.volumes import ct_like_array

    hu = ct_like_array((8, 40, 36)).astype(np.float32)
    hu = np.concatenate([hu, np.full((8, 10, 36), -1000.0, np.float32)], axis=1)
    phantom_body = hu > -1000  # the phantom's air is exactly -1000 HU
    hu[:, 44:, 2:34] = 200  # a "table" below the body, not connected to it
    body = body_mask(hu, (2.5, 0.7, 0.8))
    assert np.all(body[phantom_body])  # the whole body
    assert (hu[body] < -700).any()  # with the lungs inside
    assert not body[:, 44:, :].any()  # but not the table


def test_api_anomaly_details(tiny_models):
    image = task_ct()
    array = sitk.GetArrayFromImage(image)
    out = api.anomaly_map(array, spacing=image.GetSpacing(), origin=image.GetOrigin(), direction=image.GetDirection(),
                          model=str(tiny_models.base), device="cpu", steps=2, region="chest", threshold=10.0,
                          min_component_ml=0.0, details=True)
    assert out["map"].shape == array.shape and out["mask"].shape == array.shape
    assert out["healthy"].shape == array.shape and np.isfinite(out["score"]) and out["threshold"] == 10.0


def test_anomaly_map_with_a_single_step(tiny_models):
    image = task_ct()
    out = api.anomaly_map(image, model=str(tiny_models.base), device="cpu", steps=1, region="chest")
    values = sitk.GetArrayFromImage(out)
    assert values.shape == sitk.GetArrayFromImage(image).shape and np.isfinite(values).all()


# ----------------------------------------------------------------------------- the default ensemble map


def test_ensemble_map_is_normalised_inside_the_eroded_body(tiny_engines):
    from MedDiffFMLib.tasks.anomaly_calibration import ScoringSettings
    from MedDiffFMLib.tasks.anomaly_scoring import eroded_body

    image = task_ct(shape=(12, 32, 28))
    recorder = Recorder()
    result = anomaly_map_image(image, tiny_engines["base"], AnomalyOptions(region="chest", samples=2),
                               progress=recorder, cancel=recorder.cancel)
    recorder.assert_complete("reconstruction")
    levels = ScoringSettings().levels
    assert recorder.stage("reconstruction")[-1].total == len(levels) * 2  # one step per level and seed
    assert result.method == "ensemble" and result.steps == 1 and result.start_step == max(levels)
    assert not result.calibrated and result.threshold is None and result.mask is None  # tiny model: no calibration
    assert any("ships no anomaly calibration" in n for n in recorder.notes)
    assert_same_grid(result.anomaly_map, image, tol=0)
    amap = sitk.GetArrayFromImage(result.anomaly_map)
    spacing = image.GetSpacing()[::-1]
    inside = eroded_body(body_mask(sitk.GetArrayFromImage(image), spacing), spacing, ScoringSettings().erode_mm)
    assert np.all(amap[~inside] == 0) and np.isfinite(amap).all() and (amap[inside] > 0).any()
    # Normalised by the scan's own per-structure medians: a typical voxel scores about 1.
    assert 0.3 < float(np.median(amap[inside & (amap > 0)])) < 3.0
    masked = anomaly_map_image(image, tiny_engines["base"], AnomalyOptions(region="chest", samples=2, threshold=1.0,
                                                                           min_component_ml=0.0))
    mask = sitk.GetArrayFromImage(masked.mask).astype(bool)
    assert np.array_equal(mask, (amap >= 1.0) & inside) and masked.threshold == 1.0


def test_unknown_method_is_refused(tiny_engines):
    with pytest.raises(InputError, match="--method"):
        _run(tiny_engines["base"], task_ct(), method="thor")


def test_air_patches_skip_the_network_and_the_body_map_is_unchanged(tiny_random_base, monkeypatch):
    """Issue 40's body-only path in the reconstructions: only the body's box is tiled, so patches of
    air never reach the network; the healthy image there is the input, and with one step the map
    inside the body is exactly the one of the same windows all evaluated."""
    import MedDiffFMLib.tasks.anomaly_reconstruction as reconstruction
    from MedDiffFMLib.engine import Engine, EngineOptions

    engine = Engine(EngineOptions(model=str(tiny_random_base), device="cpu"))
    image, hu = air_and_body_ct()
    shape = hu.shape
    made = []
    original = Engine.predictor

    def recording(self, *args, skip=True, **kwargs):
        made.append(original(self, *args, **kwargs))
        made[-1].skip_outside_body = skip
        return made[-1]

    monkeypatch.setattr(Engine, "predictor", recording)
    skipped = _run(engine, image, steps=1, region="abdomen", smooth_mm=0.0, start_step=300)
    monkeypatch.setattr(Engine, "predictor", lambda self, *args, **kwargs: recording(self, *args, skip=False, **kwargs))
    everywhere = _run(engine, image, steps=1, region="abdomen", smooth_mm=0.0, start_step=300)
    monkeypatch.setattr(reconstruction, "body_on_model_grid", lambda *args, **kwargs: None)
    _run(engine, image, steps=1, region="abdomen", smooth_mm=0.0, start_step=300)
    # The body's box only: fewer windows per pass than the whole grid's (the air beyond x = 40).
    per_pass = [(p.evaluations + p.skipped) / p.passes for p in made]
    assert made[0].evaluations > 0 and per_pass[0] == per_pass[1] < per_pass[2]
    body = made[0].conditions.body.numpy()
    assert body.any() and not body.all()
    inside = body_mask(hu, (2.0, 2.0, 2.0))
    maps = [sitk.GetArrayFromImage(result.anomaly_map) for result in (skipped, everywhere)]
    np.testing.assert_array_equal(maps[0][inside], maps[1][inside])
    assert maps[1][inside].std() > 0  # (the model's answer varies: the equality is not trivial)
    far = np.zeros(shape, bool)
    far[:, :, 40:] = True  # beyond the 10 mm margin around the body box
    np.testing.assert_allclose(sitk.GetArrayFromImage(skipped.healthy)[far], hu[far], atol=0.5)

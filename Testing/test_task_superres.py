"""Super-resolution: the thin output grid, the slice-average constraint, the DiffPIR operator."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from helpers.models import single_torch_thread, tiny_engines, tiny_models  # noqa: F401  (fixtures)
from helpers.phantoms import air_and_body_ct
from helpers.task_tools import Recorder, task_ct
from MedDiffFMLib import api
from MedDiffFMLib.errors import CancelledError, InputError, ModelError
from MedDiffFMLib.models.conditions import degrade_z
from MedDiffFMLib.sampling.consistency import SliceAverageOperator, project_block_average
from MedDiffFMLib.sampling.tiling import window_count
from MedDiffFMLib.tasks.superres import SuperResOptions, output_geometry, resolve_factor, super_resolve_image


def _run(engine, image, recorder=None, **options):
    options.setdefault("steps", 2)
    options.setdefault("region", "chest")
    options.setdefault("factor_z", 2)
    recorder = recorder or Recorder()
    return super_resolve_image(image, engine, SuperResOptions(**options), progress=recorder, cancel=recorder.cancel)


def _slice_means(thin: np.ndarray, factor: int) -> np.ndarray:
    return thin.astype(np.float64).reshape(thin.shape[0] // factor, factor, *thin.shape[1:]).mean(axis=1)


@pytest.mark.parametrize("factor", [2, 3])
def test_output_grid_and_slice_averages(tiny_engines, factor):
    image = task_ct()
    recorder = Recorder()
    result = _run(tiny_engines["superres"], image, recorder, factor_z=factor)
    out = result.image
    nx, ny, nz = image.GetSize()
    sx, sy, sz = image.GetSpacing()
    assert out.GetSize() == (nx, ny, nz * factor)
    assert out.GetSpacing() == (sx, sy, sz / factor)  # x/y exactly the input's
    assert out.GetDirection() == image.GetDirection()
    # First thin slice centre: half a thick slice minus half a thin slice before the input origin.
    shift = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2] * (factor - 1) / (2 * factor) * sz
    np.testing.assert_allclose(out.GetOrigin(), np.asarray(image.GetOrigin()) - shift, atol=1e-9)
    # Same physical extent: the first and last voxel faces along z coincide.
    first_face_in = image.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, -0.5))
    first_face_out = out.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, -0.5))
    last_face_in = image.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, nz - 0.5))
    last_face_out = out.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, nz * factor - 0.5))
    np.testing.assert_allclose(first_face_in, first_face_out, atol=1e-6)
    np.testing.assert_allclose(last_face_in, last_face_out, atol=1e-6)
    thin = sitk.GetArrayFromImage(out)
    thick = sitk.GetArrayFromImage(image).astype(np.float64)
    np.testing.assert_allclose(_slice_means(thin, factor), thick, atol=1e-2)
    assert result.max_slice_error_hu < 1e-2
    recorder.assert_complete("super-resolution")


def test_keep_origin_option(tiny_engines):
    image = task_ct()
    out = _run(tiny_engines["superres"], image, keep_origin=True, steps=2).image
    assert out.GetOrigin() == image.GetOrigin()
    np.testing.assert_allclose(_slice_means(sitk.GetArrayFromImage(out), 2),
                               sitk.GetArrayFromImage(image), atol=1e-2)


def test_deterministic_and_cancel(tiny_engines):
    image = task_ct()
    a = sitk.GetArrayFromImage(_run(tiny_engines["superres"], image, seed=5).image)
    b = sitk.GetArrayFromImage(_run(tiny_engines["superres"], image, seed=5).image)
    assert np.array_equal(a, b)
    recorder = Recorder(cancel_at=("super-resolution", 1))
    with pytest.raises(CancelledError):
        _run(tiny_engines["superres"], image, recorder)
    assert recorder.stage("super-resolution")[-1].step == 1


def test_factor_choices_and_errors(tiny_engines):
    assert resolve_factor(5.0, None, None) == 5
    assert resolve_factor(2.5, None, 1.25) == 2
    assert resolve_factor(3.0, 3, None) == 3
    assert resolve_factor(1.0, None, None) == 2
    with pytest.raises(InputError, match="multiple"):
        resolve_factor(5.0, None, 2.0)
    with pytest.raises(InputError, match="at least 2"):
        resolve_factor(5.0, 1, None)
    with pytest.raises(InputError, match="either"):
        resolve_factor(5.0, 2, 2.5)
    with pytest.raises(ModelError, match="superres"):
        _run(tiny_engines["base"], task_ct())
    with pytest.raises(ModelError, match="superres"):
        _run(tiny_engines["lesion"], task_ct())


def test_output_geometry_helper():
    image = task_ct()
    g = output_geometry(image, 4)
    assert g.size == (image.GetSize()[0], image.GetSize()[1], image.GetSize()[2] * 4)


def test_block_operator_projection_is_exact():
    rng = np.random.default_rng(0)
    op = SliceAverageOperator.block(5, 3)
    x = torch.as_tensor(rng.normal(size=(15, 4, 6)))
    y = torch.as_tensor(rng.normal(size=(5, 4, 6)))
    projected = op.prox(x, y, rho=0.0)
    np.testing.assert_allclose(op.forward(projected).numpy(), y.numpy(), atol=1e-6)
    # The projection moves x the least: the change lies in the range of A^T (constant per block).
    change = (projected - x).numpy().reshape(5, 3, 4, 6)
    np.testing.assert_allclose(change, np.repeat(change[:, :1], 3, axis=1), atol=1e-9)
    # The in-place slab version used on the output grid agrees.
    thin = x.numpy().astype(np.float32).copy()
    error = project_block_average(thin, y.numpy(), 3)
    assert error < 1e-4
    np.testing.assert_allclose(thin, projected.numpy(), atol=1e-4)


def test_prox_generalises_denoising_and_intervals():
    rng = np.random.default_rng(1)
    identity = SliceAverageOperator(np.eye(4))
    x0 = torch.as_tensor(rng.normal(size=(4, 2, 2)))
    y = torch.as_tensor(rng.normal(size=(4, 2, 2)))
    rho = 0.7
    np.testing.assert_allclose(identity.prox(x0, y, rho).numpy(), ((y + rho * x0) / (1 + rho)).numpy(), atol=1e-6)
    # Aligned intervals give the block operator; padding slices get no weight.
    centres = np.arange(-1, 7) * 1.0  # slices -1 and 6 are padding
    valid = (centres >= 0) & (centres < 6)
    op = SliceAverageOperator.from_intervals(centres + 0.5, 1.0, np.array([1.5, 4.5]), 3.0, valid)
    expected = np.zeros((2, 8))
    expected[0, 1:4] = expected[1, 4:7] = 1 / 3
    np.testing.assert_allclose(op.weights.numpy(), expected, atol=1e-12)
    # Misaligned grids: weights are overlaps, rows sum to one, and the projection still fits y.
    op = SliceAverageOperator.from_intervals(np.arange(8) * 1.3 + 0.65, 1.3, np.arange(4) * 2.5 + 1.25, 2.5)
    np.testing.assert_allclose(op.weights.sum(dim=1).numpy(), 1.0)
    x = torch.as_tensor(rng.normal(size=(8, 3, 3)))
    target = torch.as_tensor(rng.normal(size=(4, 3, 3)))
    np.testing.assert_allclose(op.forward(op.prox(x, target)).numpy(), target.numpy(), atol=1e-5)


def test_degrade_z_for_training():
    volume = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 2, 2), np.float32)
    low = degrade_z(volume, 2)  # blocks 0.5, 2.5, 4.5 at centres 0.5, 2.5, 4.5
    np.testing.assert_allclose(low[:, 0, 0], [0.5, 1.0, 2.0, 3.0, 4.0, 4.5])


def test_api_super_resolve(tiny_models):
    image = task_ct()
    out = api.super_resolve(image, model=str(tiny_models.superres), device="cpu", steps=2, factor_z=2,
                            region="chest")
    assert out.GetSize()[2] == 2 * image.GetSize()[2]


def test_model_grid_operator_is_physically_aligned(tiny_engines):
    """On the model grid, A applied to each slice's position along the slice axis gives the thick
    slice centres: the DiffPIR measurement and the model slices refer to the same places."""
    from MedDiffFMLib.io import geometry_of
    from MedDiffFMLib.preprocessing import ModelSpace
    from MedDiffFMLib.tasks.superres import _model_operator, _slice_offset

    engine = tiny_engines["superres"]
    image = task_ct((6, 24, 20))
    image.SetSpacing((0.8, 0.7, 8.0))  # thick 8 mm slices, tiny model 4 mm
    thick = geometry_of(image)
    space = ModelSpace.for_grid(output_geometry(image, 2), engine.config.spacing_mm[::-1], engine.window("chest"),
                                min_size=engine.config.patch_size)
    operator = _model_operator(space, thick)
    model = space.model_geometry
    before, after = space.padding[0]
    positions = _slice_offset(thick, model) + np.arange(-before, model.size[2] + after) * model.spacing[2]
    measured = operator.forward(torch.as_tensor(positions)[:, None, None] * torch.ones(1, 1, 1, dtype=torch.float64))
    np.testing.assert_allclose(measured[:, 0, 0].numpy(), operator.rows * 8.0, atol=1e-9)
    assert len(operator.rows) == 6


def test_superres_runs_the_network_only_near_the_body(tiny_engines, monkeypatch):
    """Issue 40's body-only path in super-resolution: only the body's box is tiled, so air patches never
    reach the network; the output there is the interpolated input, and the result equals the path that
    evaluates every window of that box."""
    from MedDiffFMLib.engine import Engine

    engine = tiny_engines["superres"]
    # 6 mm thick slices: a body box in air whose x beyond 56 voxels (112 mm) is air only.
    image, hu = air_and_body_ct((12, 80, 80), (slice(2, 10), slice(8, 40), slice(6, 34)), (2.0, 2.0, 6.0), noise_hu=10.0)
    outputs, made = {}, []
    original = Engine.predictor
    for skip in (True, False):
        def recording(self, *args, _skip=skip, **kwargs):
            made.append(original(self, *args, **kwargs))
            made[-1].skip_outside_body = _skip
            return made[-1]

        monkeypatch.setattr(Engine, "predictor", recording)
        # (the chest window takes air in, so the network's answer there would count)
        outputs[skip] = sitk.GetArrayFromImage(_run(engine, image, steps=2, factor_z=2, region="chest").image)
    skipping, full = made
    body = skipping.conditions.body
    assert body is not None and skipping.evaluations > 0
    assert full.skipped == 0 and full.evaluations == skipping.evaluations + skipping.skipped
    whole = window_count(body.shape, skipping.patch_size, skipping.overlap)
    assert full.evaluations / full.passes < whole  # the air beyond the body's box is never tiled
    np.testing.assert_allclose(outputs[True], outputs[False], atol=1e-3)
    # Far from the body (beyond its 10 mm margin) the thin output is the input interpolated along z (up to
    # the slice-average projection), and every pair of thin slices still averages back to its thick slice.
    from MedDiffFMLib.preprocessing import resample_like

    base = sitk.GetArrayFromImage(resample_like(sitk.Cast(image, sitk.sitkFloat32), output_geometry(image, 2, False),
                                                "linear", 0.0, extrapolate=True))
    project_block_average(base, hu, 2)
    far = (slice(None), slice(None), slice(56, None))
    assert np.abs(outputs[True][far] - base[far]).mean() < 1.0
    np.testing.assert_allclose(_slice_means(outputs[True], 2), hu, atol=1.0)

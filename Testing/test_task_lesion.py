"""Lesion generation: lesion ControlNet conditioned on the mask, RePaint keeps the rest."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from helpers.models import single_torch_thread, tiny_engines, tiny_models  # noqa: F401  (fixtures)
from helpers.phantoms import assert_same_grid
from helpers.task_tools import Recorder, box_mask, task_ct
from MedDiffFMLib import api
from MedDiffFMLib.errors import CancelledError, InputError, ModelError
from MedDiffFMLib.models.conditions import lesion_condition
from MedDiffFMLib.tasks.lesion import LesionOptions, generate_lesion_image
from MedDiffFMLib.preprocessing.model_masks import covering_mask, shape_mask


def _run(engine, image, mask, recorder=None, **options):
    options.setdefault("steps", 2)
    options.setdefault("region", "abdomen")
    recorder = recorder or Recorder()
    return generate_lesion_image(image, mask, engine, LesionOptions(**options), progress=recorder,
                                 cancel=recorder.cancel)


def test_lesion_outside_bit_identical_same_grid_progress(tiny_engines):
    image = task_ct()
    mask = box_mask(image)
    recorder = Recorder()
    result = _run(tiny_engines["lesion"], image, mask, recorder)
    assert_same_grid(result.image, image, tol=0)
    before, after = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(result.image)
    assert after.dtype == before.dtype
    assert np.array_equal(after[mask == 0], before[mask == 0])
    assert np.any(after[mask == 1] != before[mask == 1])
    recorder.assert_complete("lesion")


def test_lesion_deterministic(tiny_engines):
    image, mask = task_ct(), box_mask(task_ct())
    a = sitk.GetArrayFromImage(_run(tiny_engines["lesion"], image, mask, seed=1).image)
    b = sitk.GetArrayFromImage(_run(tiny_engines["lesion"], image, mask, seed=1).image)
    assert np.array_equal(a, b)


def test_lesion_needs_a_lesion_controlnet(tiny_engines):
    image = task_ct()
    with pytest.raises(ModelError, match="lesion"):
        _run(tiny_engines["base"], image, box_mask(image))
    with pytest.raises(ModelError, match="lesion"):
        _run(tiny_engines["superres"], image, box_mask(image))


def test_lesion_cancel_and_empty_mask(tiny_engines):
    image = task_ct()
    recorder = Recorder(cancel_at=("lesion", 2))
    with pytest.raises(CancelledError):
        _run(tiny_engines["lesion"], image, box_mask(image), recorder, steps=4)
    assert recorder.stage("lesion")[-1].step == 2
    with pytest.raises(InputError, match="empty"):
        _run(tiny_engines["lesion"], image, np.zeros_like(box_mask(image)))


def test_condition_and_model_grid_masks(tiny_engines):
    image = task_ct()
    space = tiny_engines["lesion"].model_space(image, "abdomen")
    tiny = np.zeros_like(box_mask(image), dtype=bool)
    tiny[6, 12, 10] = True  # one input voxel, far smaller than a 4 mm model voxel
    cover = covering_mask(space, tiny)
    assert cover.any() and cover.shape == space.model_array.shape
    assert shape_mask(space, tiny).any()  # falls back to the covering mask
    big = box_mask(image).astype(bool)
    assert np.all(covering_mask(space, big) >= shape_mask(space, big))
    condition = lesion_condition(shape_mask(space, big))
    assert condition.shape == (1, *space.model_array.shape) and condition.dtype == torch.float32
    assert set(torch.unique(condition).tolist()) <= {0.0, 1.0}


def test_api_generate_lesion(tiny_models):
    image = task_ct()
    mask = box_mask(image)
    out = api.generate_lesion(image, mask, model=str(tiny_models.lesion), device="cpu", steps=2, region="abdomen")
    assert_same_grid(out, image, tol=0)
    assert np.array_equal(sitk.GetArrayFromImage(out)[mask == 0], sitk.GetArrayFromImage(image)[mask == 0])

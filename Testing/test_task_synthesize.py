"""Synthesis from noise: output grid from anatomy / reference / size, int16 HU, anatomy conditioning."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from helpers.models import single_torch_thread, tiny_anatomy_model, tiny_engines, tiny_models  # noqa: F401  (fixtures)
from helpers.phantoms import assert_same_grid
from helpers.task_tools import Recorder, box_mask, task_ct
from MedDiffFMLib import api
from MedDiffFMLib.errors import CancelledError, InputError
from MedDiffFMLib.models.conditions import anatomy_condition
from MedDiffFMLib.engine import Engine, EngineOptions
from MedDiffFMLib.tasks.synthesize import SynthesisOptions, synthesize_image


def _run(engine, recorder=None, anatomy=None, like=None, **options):
    options.setdefault("steps", 2)
    options.setdefault("region", "abdomen")
    recorder = recorder or Recorder()
    return synthesize_image(engine, SynthesisOptions(**options), anatomy=anatomy, like=like, progress=recorder,
                            cancel=recorder.cancel)


def _labels_like(image: sitk.Image) -> sitk.Image:
    labels = sitk.GetImageFromArray(box_mask(image) * 2)
    labels.CopyInformation(image)
    return labels


def test_like_reference_grid_int16(tiny_engines):
    reference = task_ct()
    recorder = Recorder()
    result = _run(tiny_engines["base"], recorder, like=reference)
    assert_same_grid(result.image, reference, tol=0)
    assert result.image.GetPixelID() == sitk.sitkInt16
    recorder.assert_complete("synthesis")
    low, width = 60 - 180, 360  # abdomen window: the output lies inside it
    values = sitk.GetArrayFromImage(result.image)
    assert values.min() >= low - 1 and values.max() <= low + width + 1


def test_size_and_spacing_grid_and_determinism(tiny_engines):
    a = _run(tiny_engines["base"], size=(12, 10, 8), spacing=(3.0, 3.0, 5.0), seed=1).image
    b = _run(tiny_engines["base"], size=(12, 10, 8), spacing=(3.0, 3.0, 5.0), seed=1).image
    c = _run(tiny_engines["base"], size=(12, 10, 8), spacing=(3.0, 3.0, 5.0), seed=2).image
    assert a.GetSize() == (12, 10, 8) and a.GetSpacing() == (3.0, 3.0, 5.0)
    assert a.GetOrigin() == (0.0, 0.0, 0.0)
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert not np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(c))
    default = _run(tiny_engines["base"], steps=1).image  # one model patch at the model spacing
    assert default.GetSize() == (16, 16, 16) and default.GetSpacing() == (4.0, 4.0, 4.0)


def test_anatomy_defines_grid_and_conditions(tiny_anatomy_model):
    engine = Engine(EngineOptions(model=str(tiny_anatomy_model), device="cpu"))
    reference = task_ct()
    labels = _labels_like(reference)
    with_labels = _run(engine, anatomy=labels, seed=0)
    assert with_labels.anatomy_used
    assert_same_grid(with_labels.image, reference, tol=0)
    empty = sitk.GetImageFromArray(np.zeros_like(box_mask(reference)))
    empty.CopyInformation(reference)
    recorder = Recorder()
    without = _run(engine, recorder, anatomy=empty, seed=0)
    assert any("no labelled voxel" in note for note in recorder.notes)
    # The label map changes the sample (same seed).
    assert not np.array_equal(sitk.GetArrayFromImage(with_labels.image), sitk.GetArrayFromImage(without.image))


def test_anatomy_with_model_without_anatomy_channels_is_refused(tiny_engines, tiny_models):
    """A label map given to a model trained without anatomy channels would condition nothing: refused,
    naming the model and what it lacks, before any sampling (the task and the API)."""
    recorder = Recorder()
    with pytest.raises(InputError) as error:
        _run(tiny_engines["base"], recorder, anatomy=_labels_like(task_ct()))
    message = str(error.value)
    assert tiny_engines["base"].model_name in message and "anatomy channels" in message
    assert "--like" in message and "Nothing was written" in message
    assert not recorder.stage("synthesis") and not recorder.stage("preprocessing")
    with pytest.raises(InputError, match="takes no anatomy label map"):
        api.synthesize("chest", anatomy=box_mask(task_ct()), spacing=(0.8, 0.7, 2.5), model=str(tiny_models.base),
                       device="cpu", steps=2)


def test_anatomy_condition_one_hot():
    labels = np.array([[[0, 1, 2, 3]]])
    channels = anatomy_condition(labels, 2)
    assert channels.shape == (2, 1, 1, 4)
    assert torch.equal(channels[:, 0, 0], torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))


def test_errors_and_cancel(tiny_engines):
    engine = tiny_engines["base"]
    with pytest.raises(InputError, match="Unknown region 'lung'"):
        _run(engine, region="lung")
    with pytest.raises(InputError, match="region is required"):
        _run(engine, region=None)
    with pytest.raises(InputError, match="not both"):
        _run(engine, anatomy=_labels_like(task_ct()), like=task_ct())
    with pytest.raises(InputError, match="--size"):
        _run(engine, size=(1, 10, 10))
    with pytest.raises(InputError, match="--size"):
        _run(engine, like=task_ct(), size=(10, 10, 10))
    with pytest.raises(InputError, match="spacing"):
        _run(engine, size=(10, 10, 10), spacing=(-1.0,))
    recorder = Recorder(cancel_at=("synthesis", 1))
    with pytest.raises(CancelledError):
        _run(engine, recorder)
    assert recorder.stage("synthesis")[-1].step == 1


def test_api_synthesize(tiny_models, tiny_anatomy_model):
    out = api.synthesize("chest", size=(10, 12, 8), spacing=4.0, model=str(tiny_models.base), device="cpu", steps=2)
    assert out.GetSize() == (10, 12, 8) and out.GetPixelID() == sitk.sitkInt16
    labels = box_mask(task_ct())
    array = api.synthesize("chest", anatomy=labels, spacing=(0.8, 0.7, 2.5), model=str(tiny_anatomy_model),
                           device="cpu", steps=2)
    assert isinstance(array, np.ndarray) and array.shape == labels.shape and array.dtype == np.int16

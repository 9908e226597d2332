"""Healthy inpainting (RePaint with the base model) and the mask handling every masked task shares."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.models import single_torch_thread, tiny_engines, tiny_models  # noqa: F401  (fixtures)
from helpers.phantoms import assert_same_grid
from helpers.task_tools import Recorder, box_mask, task_ct
from MedDiffFMLib import api
from MedDiffFMLib.errors import CancelledError, InputError
from MedDiffFMLib.tasks.inpaint import InpaintOptions, inpaint_image

STEPS = 3


def _run(engine, image, mask, recorder=None, **options):
    options.setdefault("steps", STEPS)
    options.setdefault("region", "chest")
    recorder = recorder or Recorder()
    return inpaint_image(image, mask, engine, InpaintOptions(**options), progress=recorder, cancel=recorder.cancel)


def test_outside_mask_bit_identical_and_same_grid(tiny_engines):
    image = task_ct()
    mask = box_mask(image)
    recorder = Recorder()
    result = _run(tiny_engines["base"], image, mask, recorder, resample=2)
    assert_same_grid(result.image, image, tol=0)
    assert result.image.GetPixelID() == image.GetPixelID()
    before, after = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(result.image)
    assert np.array_equal(after[mask == 0], before[mask == 0])
    assert np.any(after[mask == 1] != before[mask == 1])
    recorder.assert_complete("inpainting")
    # resample 2: every step but the last is run twice
    assert recorder.stage("inpainting")[-1].total == 2 * (result.steps - 1) + 1
    assert result.mask_voxels == int(mask.sum()) and not result.mask_resampled


def test_float_input_keeps_type_and_values_outside(tiny_engines):
    image = sitk.Cast(task_ct(), sitk.sitkFloat32) + 0.25
    mask = box_mask(image)
    result = _run(tiny_engines["base"], image, mask)
    assert result.image.GetPixelID() == sitk.sitkFloat32
    before, after = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(result.image)
    assert np.array_equal(after[mask == 0].view(np.uint32), before[mask == 0].view(np.uint32))


def test_deterministic_with_seed(tiny_engines):
    image, mask = task_ct(), box_mask(task_ct())
    a = sitk.GetArrayFromImage(_run(tiny_engines["base"], image, mask, seed=3).image)
    b = sitk.GetArrayFromImage(_run(tiny_engines["base"], image, mask, seed=3).image)
    c = sitk.GetArrayFromImage(_run(tiny_engines["base"], image, mask, seed=4).image)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cancel_stops_within_one_step(tiny_engines):
    image = task_ct()
    recorder = Recorder(cancel_at=("inpainting", 1))
    with pytest.raises(CancelledError):
        _run(tiny_engines["base"], image, box_mask(image), recorder)
    assert recorder.stage("inpainting")[-1].step == 1


def test_mask_on_another_grid_is_resampled_with_a_note(tiny_engines):
    image = task_ct()
    # The same box, drawn on a finer axis-aligned segmentation grid in physical space.
    fine = sitk.Image([60, 60, 40], sitk.sitkUInt8)
    fine.SetSpacing((0.5, 0.5, 1.0))
    centre = image.TransformContinuousIndexToPhysicalPoint((10.0, 12.0, 6.0))
    fine.SetOrigin(tuple(c - h for c, h in zip(centre, (15.0, 15.0, 20.0))))
    array = np.zeros((40, 60, 60), np.uint8)
    array[15:25, 24:36, 24:36] = 1
    segmentation = sitk.GetImageFromArray(array)
    segmentation.CopyInformation(fine)
    recorder = Recorder()
    result = _run(tiny_engines["base"], image, segmentation, recorder)
    assert result.mask_resampled
    assert any("resampled" in note for note in recorder.notes)
    resampled = sitk.GetArrayFromImage(sitk.Resample(segmentation, image, sitk.Transform(), sitk.sitkNearestNeighbor)) > 0
    before, after = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(result.image)
    assert resampled.any()
    assert np.array_equal(after[~resampled], before[~resampled])


def test_empty_mask_is_a_clear_error(tiny_engines):
    image = task_ct()
    with pytest.raises(InputError, match="empty"):
        _run(tiny_engines["base"], image, np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8))


def test_mask_outside_the_image_is_a_clear_error(tiny_engines):
    image = task_ct()
    far = sitk.Image([10, 10, 10], sitk.sitkUInt8) + 1
    far.SetOrigin((5000.0, 5000.0, 5000.0))
    with pytest.raises(InputError, match="does not overlap"):
        _run(tiny_engines["base"], image, far)


def test_mask_array_of_wrong_shape_and_bad_options(tiny_engines):
    image = task_ct()
    with pytest.raises(InputError, match="shape"):
        _run(tiny_engines["base"], image, np.ones((3, 4, 5), np.uint8))
    with pytest.raises(InputError, match="resample"):
        _run(tiny_engines["base"], image, box_mask(image), resample=0)
    with pytest.raises(InputError, match="start-step"):
        _run(tiny_engines["base"], image, box_mask(image), start_step=5000)
    with pytest.raises(InputError, match="Unknown region"):
        _run(tiny_engines["base"], image, box_mask(image), region="lung")


def test_partial_start_step_and_label(tiny_engines):
    image = task_ct()
    labels = box_mask(image) * 2
    labels[0:2, 0:3, 0:3] = 1
    result = _run(tiny_engines["base"], image, labels, start_step=300, label=2)
    before, after = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(result.image)
    assert np.array_equal(after[labels != 2], before[labels != 2])
    assert result.start_step <= 300


def test_api_with_numpy_arrays(tiny_models):
    image = task_ct()
    array = sitk.GetArrayFromImage(image)
    mask = box_mask(image)
    out = api.inpaint(array, mask, spacing=image.GetSpacing(), origin=image.GetOrigin(),
                      direction=image.GetDirection(), model=str(tiny_models.base), device="cpu", steps=2,
                      region="chest")
    assert isinstance(out, np.ndarray) and out.shape == array.shape and out.dtype == array.dtype
    assert np.array_equal(out[mask == 0], array[mask == 0])


def _bright_box_on_flat_ct(hu_outside: int = 40, hu_inside: int = 900):
    """A flat soft-tissue CT (96 mm cube at 2 mm) with a bright box (the 'lesion' to remove) where
    the mask is."""
    array = np.full((48, 48, 48), hu_outside, np.int16)
    mask = np.zeros(array.shape, np.uint8)
    mask[18:30, 18:30, 18:30] = 1
    array[mask == 1] = hu_inside
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.0, 2.0))
    return image, mask


def test_surround_start_fills_from_around_the_mask_not_from_its_content(tiny_engines):
    """Started a few steps before the end, the surround start leaves the mask near the surrounding
    40 HU, while the noise start from the same step keeps the 900 HU content it noised."""
    image, mask = _bright_box_on_flat_ct()
    surround = _run(tiny_engines["base"], image, mask, init="surround", start_step=5, steps=2,
                    allow_non_hu=True)
    original = _run(tiny_engines["base"], image, mask, init="noise", start_step=5, steps=2,
                    allow_non_hu=True)
    inside_surround = sitk.GetArrayFromImage(surround.image)[mask == 1].astype(float)
    inside_original = sitk.GetArrayFromImage(original.image)[mask == 1].astype(float)
    assert abs(inside_surround.mean() - 40) < 60
    assert inside_original.mean() > 250  # the 900 HU box, blurred by the 4 mm model grid and back


def test_default_start_is_the_surround_at_half_the_schedule(tiny_engines):
    image, mask = _bright_box_on_flat_ct()
    defaults = InpaintOptions()
    assert defaults.init == "surround" and defaults.start_step is None and defaults.steps == 25
    total = tiny_engines["base"].config.num_train_timesteps
    result = _run(tiny_engines["base"], image, mask, allow_non_hu=True)
    assert result.start_step <= total // 2 < total - 1
    from_noise = _run(tiny_engines["base"], image, mask, init="noise", allow_non_hu=True)
    assert from_noise.start_step > total // 2


def test_surround_start_needs_something_around_the_mask(tiny_engines):
    image = task_ct()
    everything = np.ones(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    with pytest.raises(InputError, match="no surrounding tissue.*--init noise"):
        _run(tiny_engines["base"], image, everything)
    result = _run(tiny_engines["base"], image, everything, init="noise")
    assert result.mask_voxels == everything.size
    with pytest.raises(InputError, match="--init must be one of surround, noise"):
        _run(tiny_engines["base"], image, box_mask(image), init="biharmonic")


def test_api_passes_the_start_choice_through(tiny_models):
    image = task_ct()
    with pytest.raises(InputError, match="--init must be one of"):
        api.inpaint(image, box_mask(image), model=str(tiny_models.base), device="cpu", init="zeros")
    out = api.inpaint(image, box_mask(image), model=str(tiny_models.base), device="cpu", steps=2, region="chest",
                      init="noise", start_step=5)
    mask = box_mask(image) == 1
    before, after = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(out)
    assert np.array_equal(after[~mask], before[~mask])

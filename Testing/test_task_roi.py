"""Mask tasks sample only a box around the mask, with the whole-image position embedding."""

from __future__ import annotations

import numpy as np
import pytest

from MedDiffFMLib.preprocessing.model_masks import region_of_interest


@pytest.mark.parametrize("centre", [(5, 30, 30), (0, 0, 0), (39, 59, 59)])
def test_box_contains_the_mask_its_margin_and_at_least_one_patch(centre):
    mask = np.zeros((40, 60, 60), bool)
    mask[centre] = True
    box = region_of_interest(mask, margin=(4, 4, 4), min_size=(16, 16, 16))
    assert mask[box].sum() == 1
    for s, n, c in zip(box, mask.shape, centre):
        assert 0 <= s.start and s.stop <= n and s.stop - s.start >= 16
        assert s.start <= max(0, c - 4) and s.stop >= min(n, c + 5)


def test_box_is_the_whole_volume_when_the_volume_is_small():
    mask = np.zeros((16, 16, 16), bool)
    mask[8, 8, 8] = True
    assert region_of_interest(mask, (16, 16, 16), (16, 16, 16)) == (slice(0, 16),) * 3


def test_small_lesion_on_a_large_volume_samples_only_around_it(monkeypatch):
    import SimpleITK as sitk
    import torch

    from helpers.phantoms import ct_phantom
    from MedDiffFMLib.models import ConditionedModel, MedDiffFMUNet, named_config
    from MedDiffFMLib import engine as engine_module
    from MedDiffFMLib.tasks.inpaint import InpaintOptions, inpaint_image

    image = ct_phantom(shape=(40, 64, 64), spacing=(4.0, 4.0, 4.0))
    mask = np.zeros((40, 64, 64), np.uint8)
    mask[20, 30:32, 30:32] = 1
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(image)

    class FakeLoaded:
        def __init__(self):
            torch.manual_seed(0)
            self.model = ConditionedModel(MedDiffFMUNet(named_config("tiny"))).eval()
            self.files = self.base_files = type("F", (), {"name": "tiny", "model_config": named_config("tiny")})()
            self.config = named_config("tiny")

    monkeypatch.setattr(engine_module, "load_pipeline_model", lambda *a, **k: FakeLoaded())
    engine = engine_module.Engine(engine_module.EngineOptions(device="cpu"))
    seen = []
    original = engine.predictor

    def spy(*args, **kwargs):
        predictor = original(*args, **kwargs)
        seen.append(predictor)
        return predictor

    engine.predictor = spy
    result = inpaint_image(image, mask_image, engine, InpaintOptions(steps=2, seed=0))
    out = sitk.GetArrayFromImage(result.image)
    assert np.array_equal(out[mask == 0], sitk.GetArrayFromImage(image)[mask == 0])
    # The whole 40x64x64 grid needs 3*5*5 = 75 patches per step (150 for 2 steps); the box far fewer.
    assert 0 < seen[0].evaluations <= 2 * 27

"""Multi-level integrated sampling, position embedding, flip, condition dropout, condition builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_training_data import make_cache

from MedDiffFMLib.models.config import ModelConfig, named_config
from MedDiffFMLib.models.network import ConditionedModel, MedDiffFMUNet
from MedDiffFMLib.models.position import grid_coordinates
from MedDiffFMLib.sampling import Conditions, VolumeNoisePredictor
from MedDiffFMLib.training import (SampleOptions, SampleSource, TrainingCache, anatomy_one_hot, build_model_input,
                                   choose_box, collate, condition_builder, sample_box, thick_slices)
from MedDiffFMLib.training.dataset import MicroBatchDataset


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> TrainingCache:
    return TrainingCache(make_cache(tmp_path_factory.mktemp("sampling"), dtype="int16"))


def tiny_with_anatomy() -> ModelConfig:
    data = named_config("tiny").to_dict()
    data.update(anatomy_channels=3, name="tiny-anatomy")
    return ModelConfig.from_dict(data)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_levels_have_the_patch_shape_and_whole_image_coordinates(cache, level):
    config = named_config("tiny")
    p = config.patch_size[0]
    options = SampleOptions(level_weights=[1.0 if i == level else 0.0 for i in range(3)], augment=False)
    source = SampleSource(cache, cache.split("train"), config, options, seed=3)
    for index in range(6):
        sample = source.sample(index)
        batch = collate([sample])
        assert sample["level"] == level
        assert batch["image"].shape == (1, 1, p, p, p) and batch["coords"].shape == (1, 3, p, p, p)
        assert batch["noise"].shape == (1, 1, p, p, p)
        assert -1.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
        full = np.array(sample["model_shape"])
        coords = batch["coords"][0].reshape(3, -1)
        low, high = coords.min(dim=1).values.numpy(), coords.max(dim=1).values.numpy()
        span = high - low
        if level == 0:  # the whole image: exactly [-1, 1] on every axis
            np.testing.assert_allclose(low, -1.0, atol=1e-6)
            np.testing.assert_allclose(high, 1.0, atol=1e-6)
        else:  # a crop of p (level 2) or up to 2p (level 1) voxels of the whole image
            extent = p if level == 2 else np.minimum(2 * p, np.maximum(full, p))
            np.testing.assert_allclose(span, (extent - 1) * 2.0 / (full - 1), rtol=1e-5)
            # A crop inside the image (where the image is big enough) has coordinates inside [-1, 1].
            inside = full >= extent
            assert np.all(low[inside] >= -1 - 1e-6) and np.all(high[inside] <= 1 + 1e-6)


def test_crop_values_come_from_where_the_coordinates_say(cache):
    """A ramp image: each voxel's value must match its whole-image coordinate (with and without flip)."""
    config = named_config("tiny")
    case = cache.split("train")[0]
    shape = case.shape
    ramp = np.broadcast_to(np.arange(shape[2], dtype=np.float32), shape)  # value = x index (cache grid = model grid)
    rng = np.random.default_rng(0)
    for level in (0, 1, 2):
        for flip in (False, True):
            box = choose_box(level, shape, config.patch_size, rng, flip_x=flip)
            values = sample_box(ramp, box, case.spacing_mm, config.spacing_mm, pad=-999.0)
            coords = grid_coordinates(box.starts, box.stops, box.shape, box.model_shape)[2].numpy()
            x_index = (coords + 1.0) * (shape[2] - 1) / 2.0  # x index in the (mirrored) image
            expected = (shape[2] - 1) - x_index if flip else x_index
            inside = (expected >= 0) & (expected <= shape[2] - 1)
            if level < 2:
                # resized levels: a box filter averages a ramp to itself away from the image edges
                inside &= (expected > 2) & (expected < shape[2] - 3)
            np.testing.assert_allclose(values[inside], expected[inside], atol=1e-3)
            assert np.all(values[(expected < -0.5) | (expected > shape[2] - 0.5)] == -999.0)


def test_training_input_matches_inference_input(cache):
    """The trainer builds the U-Net input exactly as VolumeNoisePredictor does for the same patch."""
    config = tiny_with_anatomy()
    captured = {}

    class Capture(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = config

        def forward(self, inputs, t, region, condition=None):
            captured["inputs"], captured["region"] = inputs.clone(), region.clone()
            return torch.zeros_like(inputs[:, :1])

    p = config.patch_size
    volume = torch.rand((1, 1, *p)) * 2 - 1
    anatomy = torch.randint(0, 5, p)
    predictor = VolumeNoisePredictor(Capture(), device=torch.device("cpu"), patch_size=p, overlap=0.0, batch_size=1)
    predictor.set_conditions(Conditions(region=2, anatomy=anatomy_one_hot(anatomy[None], 3, volume)[0]))
    predictor(volume, timestep=10)
    coords = grid_coordinates((0, 0, 0), [n - 1 for n in p], p, p)[None]
    ours = build_model_input(volume, coords, anatomy[None], config)
    torch.testing.assert_close(ours, captured["inputs"], rtol=0, atol=1e-6)


def test_anatomy_one_hot_follows_the_task_contract():
    from MedDiffFMLib.models.conditions import anatomy_condition

    labels = np.random.default_rng(0).integers(0, 7, (5, 6, 7))
    ours = anatomy_one_hot(torch.as_tensor(labels)[None], 4, torch.zeros((1, 1, 5, 6, 7)))[0]
    torch.testing.assert_close(ours, anatomy_condition(labels, 4))


def test_condition_dropout_rate(cache):
    config = tiny_with_anatomy()
    options = SampleOptions(condition_dropout=0.3, level_weights=(0, 0, 1))
    chest = [c for c in cache.split("train") if c.region == "chest"]
    source = SampleSource(cache, chest, config, options, seed=0)
    n = 600
    samples = [source.sample(i) for i in range(n)]
    region_dropped = np.mean([s["region"] == 0 for s in samples])
    anatomy_dropped = np.mean([not s["anatomy"].any() for s in samples])
    assert abs(region_dropped - 0.3) < 0.06 and abs(anatomy_dropped - 0.3) < 0.06
    # independent draws: both dropped about 0.09 of the time
    both = np.mean([s["region"] == 0 and not s["anatomy"].any() for s in samples])
    assert abs(both - 0.09) < 0.05
    never = SampleSource(cache, chest, config, SampleOptions(condition_dropout=0.0), seed=0)
    assert all(never.sample(i)["region"] == 2 for i in range(50))


def test_samples_are_a_function_of_their_index_and_ranks_share_the_global_batch(cache):
    config = named_config("tiny")
    source = SampleSource(cache, cache.split("train"), config, SampleOptions(), seed=5)
    a, b = source.sample(17), source.sample(17)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert torch.equal(a["noise"], b["noise"]) and a["timestep"] == b["timestep"]
    single = MicroBatchDataset(source, batch_size=4).indices(3)
    ranks = [MicroBatchDataset(source, batch_size=2, rank=r, world_size=2).indices(3) for r in range(2)]
    assert single == ranks[0] + ranks[1]
    # every case once per epoch (DistributedSampler-like shuffling)
    n = len(source.cases)
    assert sorted(source.case_for(i).id for i in range(n)) == sorted(c.id for c in source.cases)


def test_lesion_crops_are_centred_on_lesions(cache):
    config = named_config("tiny")
    builder = condition_builder("lesion")
    source = SampleSource(cache, cache.split("train"), config, SampleOptions(level_weights=(0, 0, 1), lesion_focus=1.0),
                          seed=0, builder=builder)
    samples = [source.sample(i) for i in range(20)]
    assert all(s["lesion"].any() for s in samples)
    assert all(np.array_equal(s["control"][0], s["lesion"].astype(np.float32)) for s in samples)


def test_superres_condition_is_thick_slices(cache):
    from MedDiffFMLib.models.conditions import degrade_z

    volume = np.random.default_rng(0).normal(size=(16, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(thick_slices(volume, 4, 0), degrade_z(volume, 4))
    ramp = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None, None], (20, 3, 3))
    for phase in range(4):
        out = thick_slices(volume, 4, phase)
        assert out.shape == volume.shape
        # averaging then linear interpolation reproduces a linear ramp between the first/last block centres
        np.testing.assert_allclose(thick_slices(ramp, 4, phase)[6:-6], ramp[6:-6], atol=1e-5)
    # the phase moves the blocks: the results differ
    assert not np.allclose(thick_slices(volume, 4, 1), thick_slices(volume, 4, 2))
    constant = np.full((12, 3, 3), 0.25, np.float32)
    np.testing.assert_allclose(thick_slices(constant, 5, 2), constant)
    config = named_config("tiny")
    builder = condition_builder("superres", {"superres_factors": [3]})
    source = SampleSource(cache, cache.split("train"), config, SampleOptions(), seed=0, builder=builder)
    sample = source.sample(0)
    assert sample["control"].shape == (1, *config.patch_size) and sample["superres_factor"] == 3
    assert np.abs(sample["control"][0] - sample["image"]).mean() > 1e-4

"""The healthy prior's training options: lesions (dilated) left out of the base's loss, and samples
shared out by body region so that limb crops cannot dominate."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from test_training_data import make_cache

from MedDiffFMLib.models.config import named_config
from MedDiffFMLib.training import SampleOptions, SampleSource, TrainConfig, TrainingCache, Trainer
from MedDiffFMLib.training.config import TrainConfigError
from MedDiffFMLib.training.objective import DiffusionObjective
from MedDiffFMLib.training.recipe import Recipe, dilate
from MedDiffFMLib.training.region_sampling import RegionSampler

REPO = Path(__file__).resolve().parents[1]


def _batch(lesion: torch.Tensor) -> dict:
    gen = torch.Generator().manual_seed(3)
    shape = tuple(lesion.shape)
    return {"image": torch.rand(shape, generator=gen) * 2 - 1, "noise": torch.randn(shape, generator=gen),
            "timestep": torch.tensor([300] * shape[0]), "coords": torch.rand((shape[0], 3, *shape[2:]), generator=gen) * 2 - 1,
            "anatomy": torch.zeros((shape[0], *shape[2:]), dtype=torch.uint8),
            "region": torch.zeros(shape[0], dtype=torch.long), "lesion": lesion}


def test_dilated_lesion_voxels_weigh_nothing_in_the_base_loss():
    config = named_config("tiny")  # 4 mm voxels
    objective = DiffusionObjective(config, Recipe(lesion_exclusion_mm=4.0))
    model = objective.build_model()
    lesion = torch.zeros((3, 1, 16, 16, 16), dtype=torch.uint8)
    lesion[0, 0, 6:9, 6:9, 6:9] = 1
    lesion[2] = 1  # a crop wholly inside a lesion
    batch = _batch(lesion)
    cpu = torch.device("cpu")
    model.train()
    error = (objective.predicted_noise(model, batch, cpu, contextlib.nullcontext) - batch["noise"]).abs()
    excluded = torch.zeros_like(lesion, dtype=torch.bool)
    excluded[0, 0, 5:10, 5:10, 5:10] = True  # one 4 mm voxel of dilation on each side
    excluded[2] = True
    keep = (~excluded).float()
    loss = objective.per_sample_loss(model, batch, cpu, contextlib.nullcontext)
    torch.testing.assert_close(loss[0], (error[0] * keep[0]).sum() / keep[0].sum())
    torch.testing.assert_close(loss[1], error[1].mean())  # no lesion: the plain mean
    assert float(loss[2].detach()) == 0.0 and torch.isfinite(loss).all()  # nothing healthy to learn from
    # A change of the network's output inside the excluded voxels does not change the loss's gradient target.
    weights = Recipe(lesion_exclusion_mm=4.0).voxel_weights(lesion, config.spacing_mm)
    assert torch.equal(weights == 0, excluded)
    model.eval()  # validation stays the plain mean, comparable across recipes
    torch.testing.assert_close(objective.per_sample_loss(model, batch, cpu, contextlib.nullcontext),
                               error.flatten(1).mean(1))


def test_dilation_follows_the_spacing():
    mask = torch.zeros((1, 1, 9, 9, 9), dtype=torch.bool)
    mask[0, 0, 4, 4, 4] = True
    grown = dilate(mask, 2.0, (1.0, 1.0, 2.0))  # x, y at 1 mm: 2 voxels; z at 2 mm: 1 voxel
    where = torch.nonzero(grown[0, 0])
    assert where[:, 0].min() == 3 and where[:, 0].max() == 5
    assert where[:, 1].min() == 2 and where[:, 1].max() == 6 and where[:, 2].max() == 6


def test_exclusion_options_are_checked(tmp_path):
    base = {"cache": str(tmp_path), "run_dir": str(tmp_path / "run")}
    with pytest.raises(TrainConfigError, match="lesion_exclusion_mm"):
        TrainConfig.from_dict({**base, "lesion_exclusion_mm": -1})
    with pytest.raises(TrainConfigError, match="cannot both be on"):
        TrainConfig.from_dict({**base, "lesion_exclusion_mm": 5, "lesion_loss_weight": 2})
    with pytest.raises(TrainConfigError, match="region_weights"):
        TrainConfig.from_dict({**base, "region_weights": {"chest": -1}})
    with pytest.raises(TrainConfigError, match="positive share"):
        TrainConfig.from_dict({**base, "region_weights": {"chest": 0}})
    assert TrainConfig.from_dict({**base, "lesion_exclusion_mm": 5}).recipe().lesion_exclusion_mm == 5.0


def test_region_shares_cap_the_limb_crops():
    # 9 limb crops (no region) and one chest and one abdomen case, as in the base's first chunks.
    regions = [None] * 9 + ["chest", "abdomen"]
    sampler = RegionSampler(regions, {"chest": 1, "abdomen": 1, "head_neck": 1, "unknown": 1}, seed=0)
    drawn = Counter(regions[sampler.case_index(i)] for i in range(6000))
    limb_share = drawn[None] / 6000
    assert sampler.share_of("unknown") == pytest.approx(1 / 3)  # head_neck has no case: renormalised
    assert abs(limb_share - 1 / 3) < 0.03 and limb_share <= 1 / 3 + 0.03
    assert abs(drawn["chest"] / 6000 - 1 / 3) < 0.03
    # Equal case sampling would have given the limbs 9 / 11.
    assert [sampler.case_index(i) for i in range(50)] == [RegionSampler(regions, {"chest": 1, "abdomen": 1,
                                                          "unknown": 1}, seed=0).case_index(i) for i in range(50)]


def test_sample_source_draws_cases_by_region(tmp_path):
    cache = TrainingCache(make_cache(tmp_path, n_train=4, n_val=1))
    cases = cache.split("train")
    regions = [c.region for c in cases]
    assert None in regions and "chest" in regions
    only_chest = SampleOptions(region_weights={"chest": 1})
    source = SampleSource(cache, cases, named_config("tiny"), only_chest, seed=0)
    assert {source.case_for(i).region for i in range(40)} == {"chest"}
    by_case = SampleSource(cache, cases, named_config("tiny"), SampleOptions(), seed=0)
    assert {c.region for c in (by_case.case_for(i) for i in range(40))} == set(regions)


def test_a_healthy_prior_run_trains_and_resumes(tmp_path):
    cache = make_cache(tmp_path / "cache", n_train=3, n_val=1)
    data = {"model": "tiny", "cache": str(cache), "max_steps": 3, "batch_size": 2, "warmup_steps": 1, "val_every": 0,
            "val_samples_per_case": 2, "checkpoint_every": 1000, "log_every": 1, "device": "cpu", "tensorboard": False,
            "lesion_exclusion_mm": 4.0, "region_weights": {"chest": 1, "unknown": 1}}
    straight = Trainer(TrainConfig.from_dict({**data, "run_dir": str(tmp_path / "a")}), progress="none",
                       export=False).run()
    assert all(np.isfinite(l) for _, l in straight.losses)
    Trainer(TrainConfig.from_dict({**data, "run_dir": str(tmp_path / "b"), "max_steps": 2}), progress="none",
            export=False).run()
    resumed = Trainer(TrainConfig.from_dict({**data, "run_dir": str(tmp_path / "b")}), resume=True, progress="none",
                      export=False).run()
    np.testing.assert_allclose([l for _, l in resumed.losses], [l for _, l in straight.losses[2:]], rtol=0, atol=1e-7)


def test_gpu_default_config_uses_the_healthy_prior():
    config = json.loads((REPO / "configs" / "gpu_default.json").read_text())
    assert config["lesion_exclusion_mm"] > 0
    weights = config["region_weights"]
    # The limb crops have no region ("unknown"): at most a third of the samples.
    assert weights["unknown"] / sum(weights.values()) <= 1 / 3
    data = {k: v for k, v in config.items() if k != "export"}
    TrainConfig.from_dict({**data, "cache": "/tmp/x", "run_dir": "/tmp/y"})

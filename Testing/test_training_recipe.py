"""The training recipe: time-step sampling, Min-SNR weighting and the epsilon / v targets."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

from test_training_data import make_cache

from MedDiffFMLib.errors import ModelError
from MedDiffFMLib.models.config import ModelConfig, named_config
from MedDiffFMLib.models.prediction import noise_from_output, training_target
from MedDiffFMLib.sampling import NoiseSchedule
from MedDiffFMLib.training import TrainConfig, Trainer
from MedDiffFMLib.training.config import TrainConfigError
from MedDiffFMLib.training.objective import DiffusionObjective
from MedDiffFMLib.training.recipe import Recipe


def test_uniform_sampling_draws_exactly_what_the_paper_recipe_drew():
    # Runs and checkpoints made before the recipe existed resume onto the same sample stream.
    recipe = Recipe()
    a, b = np.random.default_rng([3, 5]), np.random.default_rng([3, 5])
    assert [recipe.sample_timestep(a, 1000) for _ in range(200)] == [int(b.integers(0, 1000)) for _ in range(200)]


def test_low_biased_sampling_favours_the_small_steps_and_still_covers_all():
    recipe = Recipe(timestep_sampling="low_biased", low_t_fraction=0.5, low_t_max=250)
    rng = np.random.default_rng(0)
    t = np.array([recipe.sample_timestep(rng, 1000) for _ in range(20000)])
    expected_low = 0.5 + 0.5 * 250 / 1000
    assert abs(np.mean(t < 250) - expected_low) < 0.015
    assert t.min() >= 0 and t.max() <= 999 and np.mean(t > 900) > 0.03


def test_a_controlnet_min_timestep_bounds_every_draw():
    """A ControlNet that acts at t >= min_timestep only is trained only there, also under low_biased
    sampling (whose low range falls back to uniform when it lies wholly below min_timestep)."""
    for recipe in (Recipe(min_timestep=400), Recipe(min_timestep=400, timestep_sampling="low_biased",
                                                    low_t_max=250, low_t_fraction=0.9),
                   Recipe(min_timestep=100, timestep_sampling="low_biased", low_t_max=250, low_t_fraction=1.0)):
        rng = np.random.default_rng(0)
        t = np.array([recipe.sample_timestep(rng, 1000) for _ in range(5000)])
        assert t.min() >= recipe.min_timestep and t.max() <= 999
        if recipe.low_t_max > recipe.min_timestep:
            assert t.max() < 250  # low_t_fraction 1: every draw from [min_timestep, low_t_max)
        else:
            assert abs(np.mean(t) - 699.5) < 10
    assert Recipe(min_timestep=-1).problems() == ["'min_timestep' must be at least 0"]


def test_min_snr_weights():
    abar = NoiseSchedule.from_config(named_config("tiny")).alphas_cumprod[[5, 300, 900]].float()
    snr = abar / (1 - abar)
    eps = Recipe(loss_weighting="min_snr", min_snr_gamma=5.0).loss_weight(abar, "epsilon")
    torch.testing.assert_close(eps, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert eps[0] < 0.01 and eps[2] == 1.0  # small t (high SNR) is down-weighted, large t kept
    v = Recipe(loss_weighting="min_snr", min_snr_gamma=5.0).loss_weight(abar, "v")
    torch.testing.assert_close(v, torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    torch.testing.assert_close(Recipe().loss_weight(abar), torch.ones(3))


def test_a_v_model_and_an_eps_model_imply_the_same_noise():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand((2, 1, 4, 4, 4), generator=gen) * 2 - 1
    eps = torch.randn(x0.shape, generator=gen)
    abar = torch.tensor([0.99, 0.3]).view(2, 1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    v = training_target(x0, eps, abar, "v")
    # A perfect v-model and a perfect eps-model give the same noise estimate.
    torch.testing.assert_close(noise_from_output(v, x_t, abar, "v"), eps, atol=1e-5, rtol=0)
    torch.testing.assert_close(noise_from_output(eps, x_t, abar, "epsilon"), eps)
    assert training_target(x0, eps, abar, "epsilon") is eps


def test_prediction_type_is_recorded_and_round_trips():
    config = named_config("tiny")
    assert config.prediction_type == "epsilon" and config.to_dict()["prediction_type"] == "epsilon"
    data = config.to_dict()
    v = ModelConfig.from_dict({**data, "prediction_type": "v"})
    assert json.loads(v.to_json())["prediction_type"] == "v"
    assert ModelConfig.from_dict(json.loads(v.to_json())) == v
    with pytest.raises(ModelError, match="prediction_type"):
        ModelConfig.from_dict({**data, "prediction_type": "x0"})


def test_bad_recipe_keys_are_refused(tmp_path):
    base = {"cache": str(tmp_path), "run_dir": str(tmp_path / "run")}
    with pytest.raises(TrainConfigError, match="loss_weighting"):
        TrainConfig.from_dict({**base, "loss_weighting": "snr"})
    with pytest.raises(TrainConfigError, match="low_t_fraction"):
        TrainConfig.from_dict({**base, "timestep_sampling": "low_biased", "low_t_fraction": 1.5})


def test_validation_loss_of_a_v_model_is_the_l1_of_its_implied_noise():
    data = named_config("tiny").to_dict()
    objective = DiffusionObjective(ModelConfig.from_dict({**data, "prediction_type": "v"}),
                                   Recipe(loss_weighting="min_snr"))
    model = objective.build_model()
    gen = torch.Generator().manual_seed(1)
    batch = {"image": torch.rand((2, 1, 16, 16, 16), generator=gen) * 2 - 1,
             "noise": torch.randn((2, 1, 16, 16, 16), generator=gen), "timestep": torch.tensor([10, 700]),
             "coords": torch.rand((2, 3, 16, 16, 16), generator=gen) * 2 - 1,
             "anatomy": torch.zeros((2, 16, 16, 16), dtype=torch.uint8), "region": torch.zeros(2, dtype=torch.long)}
    cpu = torch.device("cpu")
    model.eval()
    val = objective.per_sample_loss(model, batch, cpu, contextlib.nullcontext)
    implied = objective.predicted_noise(model, batch, cpu, contextlib.nullcontext)
    torch.testing.assert_close(val, (implied - batch["noise"]).abs().flatten(1).mean(1))
    model.train()
    weighted = objective.per_sample_loss(model, batch, cpu, contextlib.nullcontext)
    assert weighted[0] < 0.1 * weighted[1]  # t = 10 is down-weighted by Min-SNR


def test_lesion_voxels_weigh_more_in_training_and_not_in_validation():
    objective = DiffusionObjective(named_config("tiny"), Recipe(lesion_loss_weight=4.0))
    model = objective.build_model()
    gen = torch.Generator().manual_seed(2)
    lesion = torch.zeros((2, 1, 16, 16, 16), dtype=torch.uint8)
    lesion[0, 0, 4:8, 4:8, 4:8] = 1  # sample 1 has no lesion
    batch = {"image": torch.rand((2, 1, 16, 16, 16), generator=gen) * 2 - 1,
             "noise": torch.randn((2, 1, 16, 16, 16), generator=gen), "timestep": torch.tensor([300, 600]),
             "coords": torch.rand((2, 3, 16, 16, 16), generator=gen) * 2 - 1,
             "anatomy": torch.zeros((2, 16, 16, 16), dtype=torch.uint8), "region": torch.zeros(2, dtype=torch.long),
             "lesion": lesion}
    cpu = torch.device("cpu")
    model.train()
    error = (objective.predicted_noise(model, batch, cpu, contextlib.nullcontext) - batch["noise"]).abs()
    weights = 1.0 + 4.0 * lesion.float()
    expected = (error * weights).flatten(1).sum(1) / weights.flatten(1).sum(1)
    loss = objective.per_sample_loss(model, batch, cpu, contextlib.nullcontext)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(loss[1], error[1].mean())  # no lesion: the plain mean
    assert not torch.isclose(loss[0], error[0].mean())
    model.eval()
    torch.testing.assert_close(objective.per_sample_loss(model, batch, cpu, contextlib.nullcontext),
                               error.flatten(1).mean(1))  # validation stays unweighted
    assert Recipe().voxel_weights(lesion) is None


def test_a_negative_lesion_loss_weight_is_refused(tmp_path):
    with pytest.raises(TrainConfigError, match="lesion_loss_weight"):
        TrainConfig.from_dict({"cache": str(tmp_path), "run_dir": str(tmp_path / "run"), "lesion_loss_weight": -1})
    assert TrainConfig.from_dict({"cache": str(tmp_path), "run_dir": str(tmp_path / "run"),
                                  "lesion_loss_weight": 3}).recipe().lesion_loss_weight == 3.0


def test_a_run_with_the_recipe_trains_and_resumes(tmp_path):
    cache = make_cache(tmp_path / "cache", n_train=2, n_val=1)
    data = {"model": {**named_config("tiny").to_dict(), "prediction_type": "v"}, "cache": str(cache),
            "max_steps": 3, "batch_size": 2, "warmup_steps": 1, "val_every": 0, "val_samples_per_case": 2,
            "checkpoint_every": 1000, "log_every": 1, "device": "cpu", "tensorboard": False,
            "loss_weighting": "min_snr", "timestep_sampling": "low_biased"}
    straight = Trainer(TrainConfig.from_dict({**data, "run_dir": str(tmp_path / "a")}), progress="none",
                       export=False).run()
    assert straight.val_loss is not None and np.isfinite(straight.val_loss)
    Trainer(TrainConfig.from_dict({**data, "run_dir": str(tmp_path / "b"), "max_steps": 2}), progress="none",
            export=False).run()
    resumed = Trainer(TrainConfig.from_dict({**data, "run_dir": str(tmp_path / "b")}), resume=True, progress="none",
                      export=False).run()
    np.testing.assert_allclose([l for _, l in resumed.losses], [l for _, l in straight.losses[2:]], rtol=0, atol=1e-7)


class _Fake(torch.nn.Module):
    """A network whose noise estimate is a fixed function of x_t; as a v-model it outputs the v that
    implies exactly that noise (so both must give the same noise at inference)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.alphas = NoiseSchedule.from_config(config).alphas_cumprod

    def forward(self, inputs, t, region, control=None):
        x_t = inputs[:, :1]
        eps = torch.tanh(3.0 * x_t) + 0.1
        if self.config.prediction_type == "epsilon":
            return eps
        abar = self.alphas[t].view(-1, 1, 1, 1, 1)
        return (eps - (1 - abar).sqrt() * x_t) / abar.sqrt()


def test_inference_turns_a_v_model_into_the_same_noise_as_an_eps_model():
    from MedDiffFMLib.sampling import VolumeNoisePredictor

    data = named_config("tiny").to_dict()
    x = torch.rand((1, 1, 24, 20, 16), generator=torch.Generator().manual_seed(2)) * 2 - 1
    out = {}
    for kind in ("epsilon", "v"):
        model = _Fake(ModelConfig.from_dict({**data, "prediction_type": kind}))
        predictor = VolumeNoisePredictor(model, device=torch.device("cpu"), patch_size=(16, 16, 16), batch_size=2)
        out[kind] = [predictor(x, t) for t in (3, 400, 990)]
    for eps, from_v in zip(out["epsilon"], out["v"]):
        torch.testing.assert_close(from_v, eps, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["epsilon"][0], torch.tanh(3.0 * x) + 0.1, atol=1e-5, rtol=0)

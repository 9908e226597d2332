"""``meddifffm finetune``: ControlNets for super-resolution and lesions on a frozen base model."""

from __future__ import annotations

import json

import pytest
import torch

from test_training_data import make_cache

from MedDiffFMLib.cli import main
from MedDiffFMLib.models.loading import load_pipeline_model
from MedDiffFMLib.models.weights import build_module, verify_model_folder
from MedDiffFMLib.sampling import Conditions, VolumeNoisePredictor, run_sampler, sampler_for
from MedDiffFMLib.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    cache = make_cache(root / "data", n_train=2, n_val=1)
    models = root / "models"
    models.mkdir()
    assert main(["init-model", "--config", "tiny", "--seed", "0", str(models / "tiny-base")]) == 0
    return cache, models


@pytest.mark.parametrize("task", ["superres", "lesion"])
def test_finetune_exports_a_controlnet_that_loads_and_samples(setup, tmp_path, task):
    cache, models = setup
    base_files = verify_model_folder(models / "tiny-base")
    base_before = {k: v.clone() for k, v in build_module(base_files).state_dict().items()}
    config = TrainConfig.from_dict({
        "task": task, "base_model": str(models / "tiny-base"), "cache": str(cache), "run_dir": str(tmp_path / "run"),
        "max_steps": 2, "batch_size": 2, "warmup_steps": 1, "val_every": 0, "val_samples_per_case": 1,
        "levels": [0, 0, 1], "device": "cpu", "tensorboard": False, "superres_factors": [2, 3],
        "lesion_loss_weight": 3.0 if task == "lesion" else 0.0,
        "export": {"dir": str(models / f"tiny-{task}"), "name": f"tiny-{task}", "storage_dtype": "float16"},
    })
    trainer = Trainer(config, mode="finetune", progress="none")
    result = trainer.run()
    assert result.step == 2 and result.val_loss is not None
    # only the ControlNet trains: the base weights are untouched
    for key, value in trainer.model.unet.state_dict().items():
        torch.testing.assert_close(value, base_before[key], rtol=0, atol=0)
    files = verify_model_folder(result.export)
    assert files.kind == "controlnet" and files.controlnet_config.task == task
    assert files.controlnet_config.base_model == "tiny-base"
    assert files.controlnet_config.base_sha256 == base_files.fingerprint
    assert "ControlNet" in files.card and "tiny-base" in files.card
    assert ("lesion voxels weigh 4x" in files.card) == (task == "lesion")
    # the card's configuration names the base's network, not the unused `model` field of a train config
    listed = json.loads(files.card.split("```json", 1)[1].split("```", 1)[0])
    assert "model" not in listed["training"] and listed["training"]["task"] == task
    assert listed["model"]["name"] == base_files.model_config.name
    loaded = load_pipeline_model(result.export, role=task, device="cpu", expect_task=task)
    cfg = loaded.config
    shape = (1, 1, 20, 18, 16)
    predictor = VolumeNoisePredictor(loaded.model, device=torch.device("cpu"), patch_size=cfg.patch_size)
    control = torch.zeros(shape[1:]) if task == "lesion" else torch.rand(shape[1:]) * 2 - 1
    predictor.set_conditions(Conditions(region=0, control=control))
    sampler = sampler_for(cfg)
    sampler.set_timesteps(2)
    out = run_sampler(predictor, sampler, torch.randn(shape))
    assert out.shape == shape and torch.isfinite(out).all()


def test_cli_finetune_and_its_errors(setup, tmp_path, capsys):
    cache, models = setup
    path = tmp_path / "ft.json"
    path.write_text(json.dumps({"task": "lesion", "base_model": str(models / "tiny-base"), "cache": str(cache),
                                "run_dir": "run", "max_steps": 1, "batch_size": 1, "val_every": 0,
                                "tensorboard": False}))
    assert main(["finetune", str(path), "--progress", "none", "--no-export"]) == 0
    assert main(["finetune", str(path), "--progress", "none", "--run-dir", str(tmp_path / "r2"),
                 "--base", str(tmp_path / "missing-base")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["finetune", str(path), "--progress", "none", "--run-dir", str(tmp_path / "r3"),
                 "--task", "superres", "--base", str(models / "tiny-base"), "--max-steps", "1", "--no-export"]) == 0
    # a training config run with `finetune` needs a task; `train` refuses a task
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"model": "tiny", "cache": str(cache), "run_dir": "r4", "task": "lesion"}))
    assert main(["train", str(plain), "--progress", "none"]) == 2
    assert "finetune" in capsys.readouterr().err


def test_a_controlnet_min_timestep_is_trained_exported_and_checked(setup, tmp_path, capsys):
    """controlnet.min_timestep reaches the exported ControlNet and the time steps training draws; a
    value that leaves nothing to train, a negative one or an unknown 'controlnet' key is refused."""
    cache, models = setup
    settings = {"task": "superres", "base_model": str(models / "tiny-base"), "cache": str(cache),
                "run_dir": str(tmp_path / "run"), "max_steps": 1, "batch_size": 2, "warmup_steps": 1, "val_every": 0,
                "val_samples_per_case": 1, "levels": [0, 0, 1], "device": "cpu", "tensorboard": False,
                "controlnet": {"min_timestep": 600},
                "export": {"dir": str(tmp_path / "tiny-sr"), "name": "tiny-sr", "storage_dtype": "float16"}}
    trainer = Trainer(TrainConfig.from_dict(settings), mode="finetune", progress="none")
    result = trainer.run()
    assert trainer.objective.recipe.min_timestep == 600  # the data draws t from [600, T)
    exported = verify_model_folder(result.export)
    assert exported.controlnet_config.min_timestep == 600 and "time steps t >= 600 only" in exported.card
    path = tmp_path / "bad.json"
    for controlnet, message in (({"min_timestep": 1000}, "leaves no time step"),
                                ({"min_timestep": -5}, "0 or more"), ({"min_t": 5}, "not min_t")):
        path.write_text(json.dumps({**settings, "run_dir": str(tmp_path / "bad"), "controlnet": controlnet}))
        assert main(["finetune", str(path), "--progress", "none", "--no-export"]) == 2
        assert message in capsys.readouterr().err

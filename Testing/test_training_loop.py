"""The training loop: learning, exact resume, the time budget, export -> load -> sample, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from test_training_data import make_cache

from MedDiffFMLib.cli import main
from MedDiffFMLib.models.loading import load_pipeline_model
from MedDiffFMLib.models.weights import verify_model_folder
from MedDiffFMLib.sampling import Conditions, VolumeNoisePredictor, run_sampler, sampler_for
from MedDiffFMLib.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return make_cache(tmp_path_factory.mktemp("loop"), n_train=2, n_val=1)


def config(cache: Path, run_dir: Path, **overrides) -> TrainConfig:
    data = {"model": "tiny", "cache": str(cache), "run_dir": str(run_dir), "max_steps": 4, "batch_size": 2,
            "warmup_steps": 1, "val_every": 0, "val_samples_per_case": 2, "checkpoint_every": 1000,
            "log_every": 1, "device": "cpu", "tensorboard": False, "export": {"storage_dtype": "float16"}}
    data.update(overrides)
    return TrainConfig.from_dict(data)


def test_loss_decreases_on_a_tiny_overfit_run(cache, tmp_path):
    cfg = config(cache, tmp_path / "run", max_steps=40, batch_size=4, lr=3e-3, warmup_steps=5, ema_decay=0.9,
                 levels=[0, 0, 1], flip_lr=0.0, intensity_scale=0.0, intensity_shift=0.0)
    result = Trainer(cfg, progress="none", export=False).run()
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 40
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < 0.75 * first, (first, last)
    assert result.val_loss is not None and result.val_loss < 0.8 * losses[0]


def test_resume_gives_the_same_next_loss_as_an_uninterrupted_run(cache, tmp_path):
    straight = Trainer(config(cache, tmp_path / "a", max_steps=4, val_every=2), progress="none", export=False).run()
    first = Trainer(config(cache, tmp_path / "b", max_steps=2), progress="none", export=False).run()
    assert first.stopped_by == "finished" and first.checkpoint.name == "step-00000002.pt"
    resumed = Trainer(config(cache, tmp_path / "b", max_steps=4, val_every=2), resume=True, progress="none",
                      export=False).run()
    assert [s for s, _ in resumed.losses] == [3, 4]
    np.testing.assert_allclose([l for _, l in resumed.losses], [l for _, l in straight.losses[2:]], rtol=0, atol=1e-7)
    a = torch.load(straight.checkpoint, weights_only=False)
    b = torch.load(resumed.checkpoint, weights_only=False)
    for key in a["ema"]["shadow"]:
        torch.testing.assert_close(a["ema"]["shadow"][key], b["ema"]["shadow"][key], rtol=0, atol=0)
    # the CSV log holds each step once
    steps = [int(r.split(",")[0]) for r in (tmp_path / "b" / "log.csv").read_text().splitlines()[1:] if r.split(",")[2]]
    assert steps == [1, 2, 3, 4]


def test_an_existing_run_needs_resume(cache, tmp_path):
    Trainer(config(cache, tmp_path / "r", max_steps=1), progress="none", export=False).run()
    with pytest.raises(Exception, match="--resume"):
        Trainer(config(cache, tmp_path / "r", max_steps=2), progress="none", export=False).run()


def test_time_budget_stops_cleanly_with_a_checkpoint(cache, tmp_path):
    cfg = config(cache, tmp_path / "run", max_steps=100000)
    result = Trainer(cfg, max_minutes=0.12, progress="none").run()  # about 7 s
    assert result.stopped_by == "budget" and 0 < result.step < 100000
    assert result.checkpoint is not None and result.checkpoint.name == f"step-{result.step:08d}.pt"
    assert result.export is not None and verify_model_folder(result.export)
    summary = json.loads((tmp_path / "run" / "last_run.json").read_text())
    assert summary["stopped_by"] == "budget" and summary["step"] == result.step
    again = Trainer(config(cache, tmp_path / "run", max_steps=result.step + 1), resume=True, progress="none",
                    export=False).run()
    assert again.step == result.step + 1 and again.stopped_by == "finished"


def test_export_load_and_sample(cache, tmp_path):
    cfg = config(cache, tmp_path / "run", max_steps=3, val_every=2)
    cfg.export.name = "trained-tiny"
    cfg.export.max_shard_mib = 0.05  # force several shards
    result = Trainer(cfg, progress="none").run()
    files = verify_model_folder(result.export)
    shards = [f for f in files.files if f.endswith(".safetensors")]
    assert len(shards) > 1
    assert all((result.export / f).stat().st_size < 0.06 * 2**20 for f in shards)
    card = files.card
    for words in ("3 optimiser steps", "Training data", "generated phantoms", "Validation loss", "float16", "CPU",
                  "Intended use: research only", "not for diagnosis", "## Conditions", "No anatomy label map"):
        assert words in card, words
    assert files.extra["training"]["steps"] == 3
    loaded = load_pipeline_model(result.export, device="cpu")
    config_ = loaded.config
    predictor = VolumeNoisePredictor(loaded.model, device=torch.device("cpu"), patch_size=config_.patch_size,
                                     batch_size=2)
    predictor.set_conditions(Conditions(region=config_.region_index("chest")))
    sampler = sampler_for(config_)
    sampler.set_timesteps(3)
    x = torch.randn((1, 1, 20, 18, 16), generator=torch.Generator().manual_seed(0))
    out = run_sampler(predictor, sampler, x, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_cli_train_json_progress_and_errors(cache, tmp_path, capsys):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"model": "tiny", "cache": str(cache), "run_dir": "run", "max_steps": 2,
                                "batch_size": 1, "log_every": 1, "val_every": 0, "tensorboard": False}))
    assert main(["train", str(path), "--progress", "json", "--no-export"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    training = [l for l in lines if l["stage"] == "training"]
    assert [l["step"] for l in training] == [1, 2] and all("samples_per_s" in l and "eta_s" in l for l in training)
    assert lines[-1]["stage"] == "done"
    assert (tmp_path / "run" / "log.csv").is_file()  # run_dir is relative to the config file
    # the run exists: without --resume it is refused with exit code 2
    assert main(["train", str(path), "--progress", "json"]) == 2
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["stage"] == "error"
    assert main(["train", str(path), "--resume", "--max-steps", "3", "--progress", "none", "--no-export"]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "tiny", "cache": str(tmp_path / "nowhere"), "run_dir": "r2"}))
    assert main(["train", str(bad), "--progress", "none"]) == 2
    assert "meddifffm prepare" in capsys.readouterr().err
    bad.write_text(json.dumps({"modle": "tiny"}))
    assert main(["train", str(bad), "--progress", "none"]) == 2
    assert "unknown keys" in capsys.readouterr().err

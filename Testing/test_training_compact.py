"""The compact training state: write, resume (with and without optimiser moments), EMA taken from the
exported model, and training with SimpleITK unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_training_data import make_cache
from test_training_loop import config as loop_config

from MedDiffFMLib.errors import MedDiffFMError
from MedDiffFMLib.training import TrainConfig, Trainer, lr_factor
from MedDiffFMLib.training.compact import read_compact_meta, read_compact_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return make_cache(tmp_path_factory.mktemp("compact"), n_train=2, n_val=1)


def config(cache: Path, run_dir: Path, **overrides) -> TrainConfig:
    """The training loop tests' tiny config, with a re-warm-up and a named export."""
    settings = {"rewarm_steps": 4, "export": {"storage_dtype": "float16", "name": "tiny-compact"}}
    return loop_config(cache, run_dir, **{**settings, **overrides})


def test_compact_resume_with_moments_follows_the_uninterrupted_run(cache, tmp_path):
    straight = Trainer(config(cache, tmp_path / "a", max_steps=6), progress="none", export=False).run()
    first = Trainer(config(cache, tmp_path / "b", max_steps=3), progress="none", export=False)
    first.run()
    state = first.save_compact(tmp_path / "state", moments=True)
    meta = read_compact_meta(state)
    assert meta["step"] == 3 and meta["samples"] == 6 and meta["moment_files"] and "files" in meta["ema"]
    assert meta["lr_schedule"]["step"] == 3 and meta["data"]["next_micro_step"] == 3
    resumed = Trainer(config(cache, tmp_path / "c", max_steps=6), resume_compact=state, progress="none",
                      export=False).run()
    assert [s for s, _ in resumed.losses] == [4, 5, 6]
    # float16 weights and bfloat16 moments: the same samples, losses equal to rounding
    np.testing.assert_allclose([l for _, l in resumed.losses], [l for _, l in straight.losses[3:]], rtol=2e-2)
    saved = torch.load(straight.checkpoint, weights_only=False)
    again = read_compact_state(state)
    for key, value in saved["model"].items():
        assert again.raw[key].shape == value.shape


def test_compact_resume_without_moments_rewarms_the_learning_rate(cache, tmp_path):
    first = Trainer(config(cache, tmp_path / "a", max_steps=3, lr=1e-3), progress="none", export=False)
    first.run()
    state = first.save_compact(tmp_path / "state")
    assert read_compact_meta(state)["moment_files"] == []
    resumed = Trainer(config(cache, tmp_path / "b", max_steps=6, lr=1e-3), resume_compact=state, progress="none",
                      export=False)
    resumed.setup()
    assert resumed.step == 3
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / 4)   # step 1 of 4 of the re-warm-up
    assert resumed.state.rewarm_from == 3 and resumed.state.resumed_from == state
    assert lr_factor(resumed.config, 3 + 3, resumed.state.rewarm_from) == pytest.approx(1.0)
    result = resumed.run()
    assert [s for s, _ in result.losses] == [4, 5, 6] and all(np.isfinite([l for _, l in result.losses]))


def test_compact_state_takes_its_ema_from_the_exported_model(cache, tmp_path):
    out = tmp_path / "models" / "tiny-compact"
    (tmp_path / "models").mkdir()
    first = Trainer(config(cache, tmp_path / "a", export={"storage_dtype": "float16", "name": "tiny-compact",
                                                          "dir": str(out)}), progress="none")
    result = first.run()
    state = first.save_compact(tmp_path / "state", ema_model=result.export)
    files = sorted(p.name for p in state.iterdir())
    assert files == ["raw.safetensors", "state.json"]  # the EMA is not stored twice
    meta = read_compact_meta(state)
    assert meta["ema"]["model"] == "tiny-compact" and len(meta["ema"]["fingerprint"]) == 64
    loaded = read_compact_state(state, ema_model=out)
    for key, value in first.ema.shadow.items():
        torch.testing.assert_close(loaded.ema[key], value.half().float())
    resumed = Trainer(config(cache, tmp_path / "b", max_steps=5), resume_compact=state, compact_ema_model=out,
                      progress="none", export=False)
    resumed.setup()
    assert resumed.ema.updates == 4
    # another model's weights in that folder: refused with a clear message
    weights = out / "model.safetensors"
    weights.chmod(0o644)
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    manifest = json.loads((out / "manifest.json").read_text())
    from MedDiffFMLib.models.weights import sha256_of

    manifest["files"]["model.safetensors"] = sha256_of(weights)
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MedDiffFMError, match="not the ones it was saved with"):
        read_compact_state(state, ema_model=out)


def test_compact_resume_refuses_another_architecture(cache, tmp_path):
    first = Trainer(config(cache, tmp_path / "a", max_steps=1), progress="none", export=False)
    first.run()
    state = first.save_compact(tmp_path / "state")
    other = config(cache, tmp_path / "b", model={**first.model_config.to_dict(), "channels": [8, 24],
                                                 "name": "other"})
    with pytest.raises(MedDiffFMError, match="another model config"):
        Trainer(other, resume_compact=state, progress="none", export=False).setup()


def test_a_callers_extra_keys_travel_with_the_state_and_never_replace_its_own(cache, tmp_path):
    """``extra``: the caller's own keys, stored in state.json, carried by a resumed run to the state it
    saves (replaced key by key when it passes them again); the library's own keys cannot be overwritten."""
    first = Trainer(config(cache, tmp_path / "a", max_steps=1), progress="none", export=False)
    first.run()
    state = first.save_compact(tmp_path / "state", extra={"log": [1], "note": "first"})
    meta = read_compact_meta(state)
    assert meta["log"] == [1] and meta["note"] == "first" and read_compact_state(state).extra == {
        "log": [1], "note": "first"}
    resumed = Trainer(config(cache, tmp_path / "b", max_steps=2), resume_compact=state, progress="none",
                      export=False)
    resumed.run()
    again = read_compact_meta(resumed.save_compact(tmp_path / "again", extra={"log": [1, 2]}))
    assert again["log"] == [1, 2] and again["note"] == "first" and again["step"] == 2
    with pytest.raises(ValueError, match="step"):
        resumed.save_compact(tmp_path / "bad", extra={"step": 99})
    assert not (tmp_path / "bad").exists()


def test_lr_factor_warms_up_decays_and_rewarms():
    cfg = TrainConfig.from_dict({"model": "tiny", "cache": "c", "run_dir": "r", "warmup_steps": 4, "max_steps": 14,
                                 "lr_schedule": "cosine", "min_lr_ratio": 0.1, "rewarm_steps": 2})
    assert [lr_factor(cfg, s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_factor(cfg, 4) == pytest.approx(1.0) and lr_factor(cfg, 14) == pytest.approx(0.1)
    assert lr_factor(cfg, 9) == pytest.approx(0.55)  # half way down the cosine
    assert lr_factor(cfg, 9, rewarm_from=9) == pytest.approx(0.55 / 2) and lr_factor(cfg, 10, 9) == lr_factor(cfg, 10)
    constant = TrainConfig.from_dict({"model": "tiny", "cache": "c", "run_dir": "r", "warmup_steps": 0,
                                      "lr_schedule": "constant"})
    assert lr_factor(constant, 0) == lr_factor(constant, 10**6) == 1.0


BLOCKER = """
import sys
class _NoSimpleITK:
    def find_spec(self, name, path=None, target=None):
        if name == "SimpleITK" or name.startswith("SimpleITK."):
            raise ImportError("SimpleITK is made unimportable for this test")
sys.meta_path.insert(0, _NoSimpleITK())
"""


def test_training_from_a_prepared_cache_needs_no_simpleitk(cache, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    script = f"""
import sys
try:
    import SimpleITK
    raise SystemExit("the blocker did not work")
except ImportError:
    pass
from MedDiffFMLib.training import TrainConfig, Trainer, lr_factor
cfg = TrainConfig.from_dict({{"model": "tiny", "cache": {str(cache)!r}, "run_dir": {str(tmp_path / 'run')!r},
    "max_steps": 2, "batch_size": 2, "warmup_steps": 1, "val_every": 0, "device": "cpu", "tensorboard": False,
    "export": {{"storage_dtype": "float16", "name": "nositk"}}}})
trainer = Trainer(cfg, progress="none")
result = trainer.run()
state = trainer.save_compact({str(tmp_path / 'state')!r}, ema_model=result.export)
again = Trainer(TrainConfig.from_dict({{**cfg.to_dict(), "run_dir": {str(tmp_path / 'run2')!r}, "max_steps": 3,
    "config_path": None, "export": {{"storage_dtype": "float16", "name": "nositk"}}}}),
    resume_compact=state, compact_ema_model=result.export, progress="none", export=False).run()
assert again.step == 3, again.step
assert "SimpleITK" not in sys.modules
print("OK", result.step, again.step)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK 2 3" in done.stdout


def test_cli_saves_and_resumes_a_compact_state(cache, tmp_path, capsys):
    from MedDiffFMLib.cli import main

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": "tiny", "cache": str(cache), "run_dir": str(tmp_path / "a"), "max_steps": 2,
                               "batch_size": 2, "warmup_steps": 1, "val_every": 0, "device": "cpu",
                               "tensorboard": False, "export": {"storage_dtype": "float16", "name": "tiny-cli"}}))
    models = tmp_path / "models"
    models.mkdir()
    assert main(["train", str(cfg), "--progress", "none", "--export-dir", str(models / "tiny-cli"),
                 "--save-compact", str(tmp_path / "state")]) == 0
    assert read_compact_meta(tmp_path / "state")["ema"]["model"] == "tiny-cli"
    assert main(["train", str(cfg), "--progress", "none", "--run-dir", str(tmp_path / "b"), "--max-steps", "3",
                 "--resume-compact", str(tmp_path / "state"), "--compact-ema-model", str(models / "tiny-cli"),
                 "--no-export"]) == 0
    assert "step 3/3" in capsys.readouterr().err
    assert main(["train", str(cfg), "--progress", "none", "--resume", "--resume-compact", str(tmp_path / "state")]) == 2


@pytest.mark.parametrize("where", ["export_in_cache", "run_dir_is_config", "compact_in_cache", "export_is_file"])
def test_cli_train_plans_its_outputs_before_any_work(cache, tmp_path, capsys, where):
    """Training's outputs (run folder, model export, compact state) go through the output plan: none
    may be an input or inside one, nor a file; refused with exit 2 and nothing written."""
    from helpers.safety import assert_refused

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": "tiny", "cache": str(cache), "run_dir": str(tmp_path / "run"), "max_steps": 1,
                               "batch_size": 2, "warmup_steps": 1, "val_every": 0, "device": "cpu",
                               "tensorboard": False, "export": {"storage_dtype": "float16", "name": "tiny-plan"}}))
    (tmp_path / "afile").write_text("x")
    extra = {"export_in_cache": ["--export-dir", str(cache / "model")],
             "run_dir_is_config": ["--run-dir", str(cfg)],
             "compact_in_cache": ["--save-compact", str(cache / "state")],
             "export_is_file": ["--export-dir", str(tmp_path / "afile")]}[where]
    message = assert_refused(["train", cfg, "--progress", "none", *extra], capsys, tmp_path, [cfg, cache])
    assert "Nothing was written" in message


def test_a_channels_last_run_matches_the_default_layout_and_saves_its_state(cache, tmp_path):
    """``channels_last``: the same losses as the default layout (a layout, not a new model), and its
    non-contiguous weights and moments still export, save compactly and resume."""
    plain = Trainer(config(cache, tmp_path / "a", max_steps=3), progress="none", export=False).run()
    out = tmp_path / "models" / "tiny-compact"
    (tmp_path / "models").mkdir()
    fast = Trainer(config(cache, tmp_path / "b", max_steps=3, channels_last=True, cudnn_benchmark=True,
                          export={"storage_dtype": "float16", "name": "tiny-compact", "dir": str(out)}),
                   progress="none")
    result = fast.run()
    conv = next(p for p in fast.model.parameters() if p.dim() == 5)
    assert conv.is_contiguous(memory_format=torch.channels_last_3d) and not conv.is_contiguous()
    np.testing.assert_allclose([l for _, l in result.losses], [l for _, l in plain.losses], rtol=1e-4, atol=1e-6)
    assert (out / "model.safetensors").is_file()
    state = fast.save_compact(tmp_path / "state", moments=True)
    resumed = Trainer(config(cache, tmp_path / "c", max_steps=4, channels_last=True), resume_compact=state,
                      progress="none", export=False)
    resumed.setup()
    for key, value in fast.trainable.state_dict().items():  # raw weights travel as float16
        torch.testing.assert_close(resumed.trainable.state_dict()[key], value.half().to(value.dtype), rtol=0, atol=0)
    assert resumed.run().losses[-1][0] == 4


def test_layout_options_must_be_true_or_false(cache, tmp_path):
    with pytest.raises(MedDiffFMError, match="'channels_last' must be true or false"):
        config(cache, tmp_path / "a", channels_last="yes")

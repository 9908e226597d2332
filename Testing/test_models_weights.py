"""Configs, the weights format (checksums, shards, corruption) and the model registry."""

from __future__ import annotations

import json

import pytest
import torch

from MedDiffFMLib.errors import ModelError
from MedDiffFMLib.models import (
    ControlNetConfig,
    MedDiffFMControlNet,
    MedDiffFMUNet,
    build_module,
    import_weights,
    load_pipeline_model,
    named_config,
    resolve_model,
    save_model,
    verify_model_folder,
)
from MedDiffFMLib.models.network import ConditionedModel
from MedDiffFMLib.models.weights import MANIFEST, set_controlnet_settings, sha256_of


def _inputs(config, batch=2):
    torch.manual_seed(0)
    size = config.patch_size
    return (torch.randn(batch, config.input_channels, *size), torch.tensor([5, 900][:batch]),
            torch.tensor([0, 2][:batch]))


@pytest.fixture()
def tiny_folder(tmp_path):
    torch.manual_seed(1)
    module = MedDiffFMUNet(named_config("tiny"))
    return save_model(module, tmp_path / "tiny-base", name="tiny-base", max_shard_bytes=200_000), module


def test_paper_config_follows_the_paper():
    config = named_config("paper")
    assert config.channels[0] == 32 and config.num_res_blocks == 1
    assert config.attention_levels == (False, False, False, True)
    assert config.patch_size == (128, 128, 128) and config.spacing_mm == (1.0, 1.0, 1.0)
    assert config.patch_size[0] // config.downsampling == 16  # attention at 16^3
    assert config.num_train_timesteps == 1000 and config.schedule == "cosine"
    assert config.windows["chest"] == (-500.0, 1800.0)


def test_invalid_config_is_refused():
    with pytest.raises(ModelError, match="multiple of"):
        named_config("tiny").__class__(name="bad", channels=(8, 16), attention_levels=(False, True),
                                       norm_num_groups=4, patch_size=(15, 16, 16))
    with pytest.raises(ModelError, match="Unknown model config"):
        named_config("nope")


def test_config_json_round_trip():
    config = named_config("default")
    again = config.from_dict(json.loads(config.to_json()))
    assert again == config


def test_save_and_load_give_the_same_network(tiny_folder):
    files, module = tiny_folder
    assert sum(f.endswith(".safetensors") for f in files.files) > 1  # sharded
    loaded = build_module(verify_model_folder(files.path))
    x, t, r = _inputs(files.model_config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, r), module.eval()(x, t, r))


def test_half_precision_storage_is_smaller_and_loads_as_float32(tmp_path):
    module = MedDiffFMUNet(named_config("tiny"))
    full = save_model(module, tmp_path / "f32", name="f32")
    half = save_model(module, tmp_path / "f16", name="f16", storage_dtype=torch.float16)
    size = lambda f: sum((f.path / n).stat().st_size for n in f.files if n.endswith(".safetensors"))  # noqa: E731
    assert size(half) < 0.6 * size(full)
    loaded = build_module(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_checksum_mismatch_refuses_to_load(tiny_folder):
    files, _ = tiny_folder
    shard = next(files.path / n for n in files.files if n.endswith(".safetensors"))
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        verify_model_folder(files.path)


def _rewrite_manifest(folder):
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {name: sha256_of(folder / name) for name in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_truncated_weights_are_reported(tiny_folder):
    files, _ = tiny_folder
    shard = next(files.path / n for n in sorted(files.files) if n.endswith(".safetensors"))
    shard.write_bytes(shard.read_bytes()[:-100])
    _rewrite_manifest(files.path)  # even with a matching checksum, a truncated file is caught
    with pytest.raises(ModelError, match="truncated or corrupt"):
        build_module(verify_model_folder(files.path))


def test_config_that_does_not_match_the_weights(tiny_folder):
    files, _ = tiny_folder
    doc = json.loads((files.path / "config.json").read_text())
    doc["model"]["channels"] = [8, 24]
    doc["model"]["norm_num_groups"] = 4
    (files.path / "config.json").write_text(json.dumps(doc))
    _rewrite_manifest(files.path)
    with pytest.raises(ModelError, match="does not match its weights"):
        build_module(verify_model_folder(files.path))


def test_missing_manifest_and_missing_model(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDDIFFFM_MODELS_DIR", str(tmp_path / "library"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with pytest.raises(ModelError, match="no manifest.json"):
        verify_model_folder(tmp_path)
    with pytest.raises(ModelError, match="Cannot find model 'nothing-here'"):
        resolve_model("nothing-here")


def test_registry_finds_imported_models_by_name(tiny_folder, tmp_path, monkeypatch):
    files, _ = tiny_folder
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MEDDIFFFM_MODELS_DIR", raising=False)
    imported = import_weights(files.path, name="my-model")
    assert imported.fingerprint == files.fingerprint
    assert resolve_model("my-model").path == imported.path
    with pytest.raises(ModelError, match="already exists"):
        import_weights(files.path, name="my-model")


def test_controlnet_starts_as_the_base_model(tiny_folder, tmp_path):
    files, base = tiny_folder
    control = MedDiffFMControlNet(files.model_config, ControlNetConfig(task="lesion", base_model=files.name,
                                                                       base_sha256=files.fingerprint))
    control.initialise_from(base)
    save_model(control, tmp_path / "tiny-lesion", name="tiny-lesion")
    # The ControlNet's output convolutions start at zero, so it changes nothing until trained.
    loaded = load_pipeline_model(tmp_path / "tiny-lesion", expect_task="lesion")
    x, t, r = _inputs(files.model_config)
    cond = torch.rand(2, 1, *files.model_config.patch_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x, t, r, cond), base.eval()(x, t, r))
    with pytest.raises(ModelError, match="superres"):
        load_pipeline_model(tmp_path / "tiny-lesion", expect_task="superres")


def _redraw_zeros(module):
    """MONAI zero-initialises output convolutions: random values make every path show in the output."""
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim >= 2 and not bool(p.any()):
                p.normal_(0.0, 0.05)


def _tiny_controlnet(files, base, min_timestep=0):
    torch.manual_seed(2)
    control = MedDiffFMControlNet(files.model_config, ControlNetConfig(task="superres", min_timestep=min_timestep))
    control.initialise_from(base)
    _redraw_zeros(control)
    return control


def test_a_controlnet_acts_from_its_min_timestep_up_only(tiny_folder):
    """Below min_timestep the model's output is the base model's alone (the ControlNet is not even run
    for a batch wholly below it); from it up the ControlNet changes it; a mixed batch is gated per sample."""
    files, base = tiny_folder
    _redraw_zeros(base)
    model = ConditionedModel(base.eval(), _tiny_controlnet(files, base, min_timestep=400).eval())
    x, _, r = _inputs(files.model_config)
    cond = torch.rand(2, 1, *files.model_config.patch_size)
    calls = []
    model.controlnet.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        for t in ([5, 399], [400, 900], [5, 900]):
            t = torch.tensor(t)
            out, alone = model(x, t, r, cond), base(x, t, r)
            for i, step in enumerate(t.tolist()):
                same = torch.allclose(out[i], alone[i], atol=1e-6)
                assert same == (step < 400), (step, same)
    assert len(calls) == 2  # skipped for [5, 399]


def test_controlnet_settings_change_without_touching_the_weights(tiny_folder, tmp_path):
    files, base = tiny_folder
    folder = tmp_path / "tiny-superres"
    saved = save_model(_tiny_controlnet(files, base), folder, name="tiny-superres", card="# tiny-superres\n\nA test.\n")
    changed = set_controlnet_settings(folder, {"min_timestep": 400, "conditioning_scale": 1.0}, reason="benchmarked")
    assert changed.controlnet_config.min_timestep == 400 and changed.fingerprint == saved.fingerprint
    assert changed.card.endswith("## Settings changed after training\n\n- min_timestep: 0 -> 400 (benchmarked)\n")
    assert load_pipeline_model(folder, expect_task="superres").model.controlnet.control.min_timestep == 400
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    set_controlnet_settings(folder, {"min_timestep": 400})  # nothing to change: nothing written
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    with pytest.raises(ModelError, match="not channels"):
        set_controlnet_settings(folder, {"channels": [4]})
    with pytest.raises(ModelError, match="base model"):
        set_controlnet_settings(files.path, {"min_timestep": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-base", "tiny-superres"]  # no leftovers


def test_controlnet_loads_on_a_later_version_of_its_base_only(tmp_path):
    """A ControlNet fine-tuned on one version of a base loads on a base trained further from it (the
    base's config lists the earlier fingerprint in extra.training.lineage), never on an unrelated one."""
    torch.manual_seed(0)
    config = named_config("tiny")
    for folder in ("v1", "descendant", "unrelated"):
        (tmp_path / folder).mkdir()
    first = save_model(MedDiffFMUNet(config), tmp_path / "v1" / "tiny-base", name="tiny-base")
    later = MedDiffFMUNet(config)  # other weights: another fingerprint
    control = MedDiffFMControlNet(config, ControlNetConfig(task="lesion", base_model="tiny-base",
                                                           base_sha256=first.fingerprint))
    for folder, lineage in (("descendant", [first.fingerprint]), ("unrelated", ["0" * 64])):
        base = save_model(later, tmp_path / folder / "tiny-base", name="tiny-base",
                          extra={"training": {"lineage": lineage}})
        assert base.fingerprint != first.fingerprint
        save_model(control, tmp_path / folder / "tiny-lesion", name="tiny-lesion")
    loaded = load_pipeline_model(tmp_path / "descendant" / "tiny-lesion", expect_task="lesion")
    assert loaded.base_files.path == tmp_path / "descendant" / "tiny-base"
    with pytest.raises(ModelError, match="does not descend from it"):
        load_pipeline_model(tmp_path / "unrelated" / "tiny-lesion", expect_task="lesion")


def test_sampling_model_is_channels_last_on_cpu_with_the_same_output(tmp_path):
    torch.manual_seed(3)
    module = MedDiffFMUNet(named_config("tiny"))
    with torch.no_grad():  # MONAI zero-inits the output layer; give it weights so outputs differ
        for parameter in module.unet.out.parameters():
            parameter.normal_(0, 0.1)
    files = save_model(module, tmp_path / "tiny-cl", name="tiny-cl")
    loaded = load_pipeline_model(files.path, device="cpu")
    convolutions = [p for p in loaded.model.parameters() if p.dim() == 5]
    assert convolutions and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in convolutions)
    x, t, r = _inputs(files.model_config)
    with torch.no_grad():
        expected = module.eval()(x, t, r)
        assert float(expected.abs().max()) > 1e-3
        torch.testing.assert_close(loaded.model(x, t, r), expected, rtol=1e-4, atol=1e-5)


def test_shipped_controlnets_were_trained_on_the_shipped_base():
    """Every shipped ControlNet names the shipped base's weights (sha256), or an earlier version of them
    that the base's training continued from (its lineage); otherwise super-resolution and lesions would
    be refused at load."""
    from pathlib import Path

    from MedDiffFMLib.models.loading import base_lineage, load_pipeline_model

    models = Path(__file__).resolve().parents[1] / "Resources" / "Models"
    roles = json.loads((models / "models.json").read_text())["roles"]
    base = verify_model_folder(models / roles["base"])
    for role, name in roles.items():
        if role == "base":
            continue
        files = verify_model_folder(models / name)
        assert files.controlnet_config is not None and files.controlnet_config.task == role, name
        assert files.controlnet_config.base_model == roles["base"], name
        assert files.controlnet_config.base_sha256 in [base.fingerprint, *base_lineage(base)], name
        assert load_pipeline_model(str(models / name), role, torch.device("cpu"), role).base_files.fingerprint \
            == base.fingerprint


def test_shipped_model_cards_say_which_conditions_the_model_takes():
    """Each shipped card lists the conditions its config takes (generated by the exporter's
    describe_conditions), so that a user reads there whether --anatomy can be used."""
    from pathlib import Path

    from MedDiffFMLib.models.conditions import describe_conditions
    from MedDiffFMLib.models.weights import verify_model_folder

    folders = sorted(p.parent for p in (Path(__file__).resolve().parents[1] / "Resources" / "Models").glob("*/MODEL_CARD.md"))
    assert len(folders) >= 3
    for folder in folders:
        files = verify_model_folder(folder)  # the card's checksum matches its manifest
        lines = describe_conditions(files.model_config, files.controlnet_config)
        assert "## Conditions" in files.card and all(line in files.card for line in lines), folder
        anatomy = files.model_config.anatomy_channels
        assert ("No anatomy label map" in files.card) == (anatomy == 0), folder

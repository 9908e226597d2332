"""The GPU training chunk, run end to end on the CPU with a tiny model and a seconds-long budget:
shards, the chunk command without SimpleITK, what it returns (<= 8 files of <= 16 MiB), applying it,
the next chunk resuming from the applied state on the next shard, and the travelling size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import requires_shared_data
from test_training_compact import BLOCKER
from test_training_data import make_cache

from MedDiffFMLib.models.weights import verify_model_folder
from MedDiffFMLib.training.compact import read_compact_meta, read_compact_state
from tools.gpu_chunk import commands
from tools.gpu_chunk.chunk import cases_seen, chunk_card_lines, chunks_hardware
from tools.gpu_chunk.shards import build_shards, plan_shards, usable_shards, validation_for_shard

ROOT = Path(__file__).resolve().parents[1]
MAX_FILES, MAX_BYTES, TRAVEL = 8, 16 * 2**20, 64 * 2**20


def _script():
    """The stage/run/apply/promote commands (``python -m tools.gpu_chunk``)."""
    return commands


def test_shards_pack_training_cases_and_repeat_validation(tmp_path):
    index = {"cases": [{"id": f"c{i}", "split": "train"} for i in range(6)] + [{"id": "v", "split": "val"}]}
    sizes = {"c0": 50, "c1": 40, "c2": 30, "c3": 30, "c4": 20, "c5": 10, "v": 15}
    bins = plan_shards(index, sizes, max_bytes=85)
    assert sorted(i for b in bins for i in b) == [f"c{i}" for i in range(6)]
    assert all(sum(sizes[i] for i in b) + 15 <= 85 for b in bins) and len(bins) == 3
    with pytest.raises(Exception, match="alone are larger"):
        plan_shards(index, sizes, max_bytes=45)


def test_build_shards_can_leave_out_a_case_larger_than_a_shard(tmp_path):
    cache = make_cache(tmp_path, n_train=4, n_val=1)
    index = json.loads((cache / "index.json").read_text())
    sizes = {c["id"]: sum((cache / f).stat().st_size for f in set(c["files"].values())) for c in index["cases"]}
    largest = max((c for c in index["cases"] if c["split"] == "train"), key=lambda c: sizes[c["id"]])["id"]
    limit = sizes[largest] - 1
    assert sorted(sizes[c["id"]] for c in index["cases"] if c["split"] == "train")[-2] <= limit  # only one too big
    with pytest.raises(Exception, match="alone are larger"):
        build_shards(cache, tmp_path / "refused", max_bytes=limit)
    plan = build_shards(cache, tmp_path / "shards", max_bytes=limit, leave_out_oversized=True)
    assert [c["id"] for c in plan["left_out"]] == [largest]
    planned = [i for shard in plan["shards"] for i in shard["train"]]
    assert largest not in planned and len(planned) == 3


def test_build_shards_can_cut_a_case_larger_than_a_shard_into_slabs(tmp_path):
    from MedDiffFMLib.training.cache import TrainingCache

    cache = make_cache(tmp_path, n_train=4, n_val=1)
    index = json.loads((cache / "index.json").read_text())
    sizes = {c["id"]: sum((cache / f).stat().st_size for f in set(c["files"].values())) for c in index["cases"]}
    largest = max((c for c in index["cases"] if c["split"] == "train"), key=lambda c: sizes[c["id"]])
    limit = sizes[largest["id"]] - 1
    plan = build_shards(cache, tmp_path / "shards", max_bytes=limit, split_oversized=True)
    assert plan["left_out"] == [] and [c["id"] for c in plan["split"]] == [largest["id"]]
    slabs = plan["split"][0]["slabs"]
    assert slabs >= 2
    expected = [f"{largest['id']}.slab{k}of{slabs}" for k in range(1, slabs + 1)]
    planned = [i for shard in plan["shards"] for i in shard["train"]]
    assert sorted(planned) == sorted([c["id"] for c in index["cases"] if c["split"] == "train"
                                      and c["id"] != largest["id"]] + expected)  # every slab once, the scan never
    assert all(shard["bytes"] <= limit for shard in plan["shards"])
    original = TrainingCache(cache)
    whole = original.arrays(next(c for c in original.cases if c.id == largest["id"]))
    pieces = {}
    for shard in plan["shards"]:
        shard_cache = TrainingCache(tmp_path / "shards" / shard["name"])
        for case in shard_cache.split("train"):
            if case.id in expected:
                assert case.slab_of == largest["id"] and case.region == largest["region"]
                pieces[case.id] = (case, shard_cache.arrays(case))
    assert sorted(pieces) == sorted(expected)
    ordered = [pieces[i] for i in expected]
    for key, array in whole.items():  # the slabs put back together are the scan, voxel for voxel
        assert np.array_equal(np.concatenate([arrays[key] for _, arrays in ordered]), array), key
    assert sum(case.shape[0] for case, _ in ordered) == largest["shape"][0]
    assert sum(case.model_shape[0] for case, _ in ordered) == pytest.approx(largest["model_shape"][0], abs=slabs)
    if largest.get("lesion_voxels"):
        slab_index = {c["id"]: c for shard in plan["shards"]
                      for c in json.loads((tmp_path / "shards" / shard["name"] / "index.json").read_text())["cases"]}
        assert sum(slab_index[i]["lesion_voxels"] for i in expected) == largest["lesion_voxels"]


def test_a_case_too_large_for_the_validation_cases_gets_a_shard_of_its_own():
    index = {"cases": [{"id": f"c{i}", "split": "train"} for i in range(4)]
             + [{"id": "v1", "split": "val"}, {"id": "v2", "split": "val"}]}
    sizes = {"c0": 55, "c1": 20, "c2": 15, "c3": 10, "v1": 5, "v2": 12}
    bins = plan_shards(index, sizes, max_bytes=60)  # room beside all validation cases: 43
    assert ["c0"] in bins and sorted(i for b in bins for i in b) == ["c0", "c1", "c2", "c3"]
    assert all(sum(sizes[i] for i in b) + 17 <= 60 for b in bins if b != ["c0"])
    assert validation_for_shard(["c0"], ["v1", "v2"], sizes, 60) == ["v1"]  # the smallest that fits
    assert validation_for_shard(["c1", "c2"], ["v1", "v2"], sizes, 60) == ["v1", "v2"]
    assert validation_for_shard(["c0"], ["v1", "v2"], sizes, 58) == []


def _quality_box(folder: Path) -> None:
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:16, :24, :24]
    clean = np.where((y - 12) ** 2 + (x - 12) ** 2 < 80, 40.0, -1000.0).astype(np.float32)
    clean[(z > 5) & (z < 10) & (abs(y - 12) < 3) & (abs(x - 12) < 3)] = 120.0
    noisy = clean + rng.normal(0, 30, clean.shape)
    folder.mkdir(parents=True)
    np.savez_compressed(folder / "phantom.npz", clean=clean.astype(np.int16), noisy=np.rint(noisy).astype(np.int16),
                        spacing_zyx=np.array([4.0, 4.0, 4.0]), region=np.asarray("abdomen"), added_std_hu=30.0,
                        i0=1e5, source=np.asarray("synthetic"))


@pytest.fixture(scope="module")
def carry(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chunk")
    cache = make_cache(root, n_train=4, n_val=1)
    index = json.loads((cache / "index.json").read_text())
    build_shards(cache, root / "carry" / "shard", max_bytes=2**30, lzma=True)  # LZMA copies made once
    packed = root / "carry" / "shard" / "_lzma"
    sizes = {c["id"]: sum((packed / f).stat().st_size for f in set(c["files"].values())) for c in index["cases"]}
    val = sum(v for k, v in sizes.items() if k == "case4")
    train = sorted(v for k, v in sizes.items() if k != "case4")
    plan = build_shards(cache, root / "carry" / "shard", max_bytes=val + max(train[-1], sum(train) * 2 // 3), lzma=True)
    assert len(plan["shards"]) >= 2
    for shard in plan["shards"]:
        assert set(shard["val"]) == {c["id"] for c in index["cases"] if c["split"] == "val"}
    _quality_box(root / "carry" / "quality")
    # On the device only the chunk's own shard travels; carry.json says how many the whole plan has.
    (root / "carry" / "carry.json").write_text(json.dumps({"shards": PLANNED_SHARDS}))
    config = root / "tiny_chunk.json"
    config.write_text(json.dumps({
        "model": "tiny", "cache": "unused", "run_dir": "unused", "max_steps": 100000, "batch_size": 2,
        "warmup_steps": 2, "rewarm_steps": 2, "val_every": 0, "val_samples_per_case": 1, "log_every": 1,
        "device": "cpu", "tensorboard": False, "lr_schedule": "cosine",
        "export": {"name": "tiny-chunk", "storage_dtype": "float16"}}))
    return root


PLANNED_SHARDS = 7


def _run_chunk(root: Path, out: Path, steps: int, config: str = "tiny_chunk.json", state: str = "state",
               model: str = "tiny-chunk", extra: tuple = ()) -> subprocess.CompletedProcess:
    blocker = root / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT)]), CARRY=str(root / "carry"),
               OUT=str(out), OMP_NUM_THREADS="1")
    overrides = json.dumps({"max_steps": steps, "threads": 1})
    return subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_chunk" / "train_chunk.sh"), "0.5", "--config", str(root / config),
         "--state-dir", str(root / state), "--model-dir", str(root / "models" / model), "--device", "cpu",
         "--overrides", overrides, "--quality-steps", "2", *extra],
        env=env, capture_output=True, text=True, timeout=600)


def _returned(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()]


def test_chunk_runs_end_to_end_without_simpleitk_and_resumes_from_what_it_returned(carry):
    first = _run_chunk(carry, carry / "out1", steps=3, extra=("--speed-probe", "0.2"))
    assert first.returncode == 0, first.stderr[-4000:] + first.stdout[-2000:]
    # the throughput probe ran on the staged shard, in the same call, and its table came back
    probe = (carry / "out1" / "train_speed.md").read_text()
    assert "Training step throughput (tiny_chunk.json, cache shard)" in probe and "| channels_last |" in probe
    assert "GPU chunk 0" in first.stdout and "fresh init" in first.stdout and "shard-00" in first.stdout
    files = _returned(carry / "out1")
    assert 0 < len(files) <= MAX_FILES and all(p.stat().st_size <= MAX_BYTES for p in files)
    assert all(len(p.relative_to(carry / "out1").parts) <= 3 for p in files)

    script = _script()
    script.main(["apply", str(carry / "out1"), "--config", str(carry / "tiny_chunk.json"),
                 "--state-dir", str(carry / "state"), "--model-dir", str(carry / "models" / "tiny-chunk"),
                 "--work", str(carry / "work")])
    model = verify_model_folder(carry / "models" / "tiny-chunk")
    # the chunk's log and the probe's table are kept under --work (never in the checkout's own .cache)
    assert {p.name for p in (carry / "work" / "logs").iterdir()} == {"log-chunk000.csv", "train_speed-chunk000.md"}
    meta = read_compact_meta(carry / "state")
    assert meta["step"] == 3 and len(meta["chunks"]) == 1 and meta["ema"]["model"] == "tiny-chunk"
    quality = meta["chunks"][0]["quality"]["cases"]["phantom"]
    assert {"noisy", "model", "nlm"} <= set(quality) and np.isfinite(quality["model"]["psnr"])
    card = model.card
    assert "GPU chunks: 1" in card and "Quality check of the last GPU chunk" in card and "| phantom" in card

    second = _run_chunk(carry, carry / "out2", steps=5)
    assert second.returncode == 0, second.stderr[-4000:] + second.stdout[-2000:]
    assert "GPU chunk 1" in second.stdout and "resuming" in second.stdout and "shard-01" in second.stdout
    script.main(["apply", str(carry / "out2"), "--config", str(carry / "tiny_chunk.json"),
                 "--state-dir", str(carry / "state"), "--model-dir", str(carry / "models" / "tiny-chunk"),
                 "--work", str(carry / "work")])
    meta = read_compact_meta(carry / "state")
    assert meta["step"] == 5 and [c["steps"] for c in meta["chunks"]] == [[0, 3], [3, 5]]
    assert meta["chunks"][1]["shard"] == f"shard-01 of {PLANNED_SHARDS}"
    # Each chunk names its export; the next export lists the earlier ones, so ControlNets fine-tuned
    # on chunk 0's base still load on chunk 1's.
    first_fingerprint = meta["chunks"][0]["model_sha256"]
    second = verify_model_folder(carry / "models" / "tiny-chunk")
    assert meta["chunks"][1]["model_sha256"] == second.fingerprint != first_fingerprint
    assert second.extra["training"]["lineage"] == [first_fingerprint]
    card = verify_model_folder(carry / "models" / "tiny-chunk").card
    assert "GPU chunks: 2" in card and f"shard-00 of {PLANNED_SHARDS}, shard-01 of {PLANNED_SHARDS}" in card
    trained = {c["id"] for record in meta["chunks"] for c in record["cases"]}
    assert len(trained) == sum(record["train_cases"] for record in meta["chunks"])  # shards do not overlap
    assert f"on {len(trained)} CT volumes" in card and f"- Training cases: {len(trained)} (" in card
    read_compact_state(carry / "state", ema_model=carry / "models" / "tiny-chunk")


def test_a_controlnet_chunk_fine_tunes_on_the_base_and_resumes_without_raw_weights(carry, tmp_path):
    """A config with a task runs `finetune` in the chunk: a lesion ControlNet on a (tiny) frozen base,
    without SimpleITK; its state stores no raw weights, and the next chunk restarts them from the
    exported EMA and continues the step count."""
    from helpers.models import write_tiny_models

    base = write_tiny_models(tmp_path / "tiny").base
    (carry / "tiny_lesion_chunk.json").write_text(json.dumps({
        "task": "lesion", "base_model": str(base), "cache": "unused", "run_dir": "unused", "max_steps": 100000,
        "batch_size": 2, "warmup_steps": 2, "val_every": 0, "val_samples_per_case": 1, "log_every": 1,
        "levels": [0, 0, 1], "lesion_focus": 0.8, "ema_decay": 0.9, "device": "cpu", "tensorboard": False,
        "export": {"name": "tiny-lesion-chunk", "storage_dtype": "float16"}}))
    kwargs = {"config": "tiny_lesion_chunk.json", "state": "lesion_state", "model": "tiny-lesion-chunk"}
    first = _run_chunk(carry, carry / "lesion_out1", steps=2, **kwargs)
    assert first.returncode == 0, first.stderr[-4000:] + first.stdout[-2000:]
    assert "fresh lesion ControlNet on" in first.stdout and "GPU chunk 0" in first.stdout
    script = _script()
    apply_args = ["--config", str(carry / "tiny_lesion_chunk.json"), "--state-dir", str(carry / "lesion_state"),
                  "--model-dir", str(carry / "models" / "tiny-lesion-chunk")]
    script.main(["apply", str(carry / "lesion_out1"), *apply_args, "--work", str(carry / "work")])
    control = verify_model_folder(carry / "models" / "tiny-lesion-chunk")
    assert control.kind == "controlnet" and control.controlnet_config.task == "lesion"
    assert control.controlnet_config.base_sha256 == verify_model_folder(base).fingerprint
    meta = read_compact_meta(carry / "lesion_state")
    assert meta["raw_from_ema"] and meta["raw_files"] == [] and meta["step"] == 2
    assert not list((carry / "lesion_state").glob("*.safetensors"))  # nothing beyond the model folder
    assert "Quality check" not in control.card  # the denoising check is the base's
    state = read_compact_state(carry / "lesion_state", ema_model=carry / "models" / "tiny-lesion-chunk")
    assert state.raw.keys() == state.ema.keys()
    assert all(np.array_equal(state.raw[k].numpy(), state.ema[k].numpy()) for k in state.raw)

    second = _run_chunk(carry, carry / "lesion_out2", steps=4, **kwargs)
    assert second.returncode == 0, second.stderr[-4000:] + second.stdout[-2000:]
    assert "GPU chunk 1" in second.stdout and "resuming" in second.stdout
    script.main(["apply", str(carry / "lesion_out2"), *apply_args, "--work", str(carry / "work")])
    meta = read_compact_meta(carry / "lesion_state")
    assert [c["steps"] for c in meta["chunks"]] == [[0, 2], [2, 4]]
    assert "GPU chunks: 2" in verify_model_folder(carry / "models" / "tiny-lesion-chunk").card

    # Held back: the chunk's model waits in the state, the shipped one stays, the next chunk resumes
    # from the candidate, and `promote` ships it.
    shipped = verify_model_folder(carry / "models" / "tiny-lesion-chunk").fingerprint
    candidate = carry / "lesion_state" / "candidate"
    for n, steps in ((3, 6), (4, 8)):
        chunk = _run_chunk(carry, carry / f"lesion_out{n}", steps=steps, **kwargs)
        assert chunk.returncode == 0, chunk.stderr[-4000:] + chunk.stdout[-2000:]
        assert "resuming" in chunk.stdout
        script.main(["apply", str(carry / f"lesion_out{n}"), "--hold", *apply_args, "--work", str(carry / "work")])
        assert verify_model_folder(carry / "models" / "tiny-lesion-chunk").fingerprint == shipped
        held = verify_model_folder(candidate)
        assert f"GPU chunks: {n}" in held.card  # (its weights may round to the shipped ones' float16)
        assert read_compact_meta(carry / "lesion_state")["chunks"][-1]["model_sha256"] == held.fingerprint
        read_compact_state(carry / "lesion_state", ema_model=candidate)
    assert [c["steps"] for c in read_compact_meta(carry / "lesion_state")["chunks"]][2:] == [[4, 6], [6, 8]]
    # A ControlNet setting chosen after the chunk (by a benchmark) ships with the promoted model.
    config = json.loads((carry / "tiny_lesion_chunk.json").read_text())
    (carry / "tiny_lesion_chunk.json").write_text(json.dumps({**config, "controlnet": {"min_timestep": 400}}))
    script.main(["promote", *apply_args])
    promoted = verify_model_folder(carry / "models" / "tiny-lesion-chunk")
    assert promoted.fingerprint == held.fingerprint and "GPU chunks: 4" in promoted.card
    assert held.controlnet_config.min_timestep == 0 and promoted.controlnet_config.min_timestep == 400
    assert "- min_timestep: 0 -> 400 (set in" in promoted.card
    assert not candidate.exists()
    read_compact_state(carry / "lesion_state", ema_model=carry / "models" / "tiny-lesion-chunk")


def test_travelling_size_of_the_shipped_configuration_fits():
    """What a device call sends for the shipped GPU configs: the staged carry when there is one, else
    the budget `python -m tools.gpu_chunk stage` recorded for each model (steady-state checkout, wheel, quality
    boxes, largest shard)."""
    script = _script()
    carry = ROOT / script.CARRY
    if carry.is_dir():
        assert script.travelling_bytes(ROOT, [script.CARRY]) <= TRAVEL
    budgets = sorted((ROOT / script.BUDGET_DIR).glob("*.json"))
    if not budgets and not carry.is_dir():
        pytest.skip("no staged carry (.cache/gpu_carry) and no tools/gpu_chunk/budget/*.json: run "
                    "`python -m tools.gpu_chunk stage` (needs the shared CT)")
    for budget_file in budgets:
        budget = json.loads(budget_file.read_text())
        paths = script.config_paths(ROOT / budget["config"])
        assert budget_file.name == f"{paths['name']}.json"
        checkout, _ = script.projected_checkout_bytes(paths)
        total = checkout + (budget["wheel_mib"] + budget["quality_mib"] + budget["largest_shard_mib"]) * 2**20
        assert total <= TRAVEL, f"{budget_file.name}: {total / 2**20:.1f} MiB would travel"
        assert budget["largest_shard_mib"] <= budget["max_shard_mib"]


@requires_shared_data
def test_quality_boxes_from_held_out_shared_cases(tmp_path, shared_ct):
    from tools.gpu_chunk.quality import make_quality_cases

    paths = make_quality_cases(ROOT / "configs" / "shared_ct_manifest.json", shared_ct, (4.0, 4.0, 4.0), (16, 16, 16),
                               tmp_path, cases=["STS_034"], crop_mm=64.0)
    data = np.load(paths[0])
    assert data["clean"].shape == data["noisy"].shape and data["clean"].shape[1] == 16
    assert 20 < float(data["added_std_hu"]) < 60  # about the 35 HU asked for
    with pytest.raises(SystemExit, match="training case"):
        make_quality_cases(ROOT / "configs" / "shared_ct_manifest.json", shared_ct, (4.0,) * 3, (16,) * 3, tmp_path,
                           cases=["STS_001"])


def test_card_lines_count_the_whole_plan_and_each_case_once():
    def record(chunk, shard, ids):
        return {"chunk": chunk, "date": "d", "hardware": "GPU", "shard": f"{shard} of 4", "train_cases": len(ids),
                "cases": [{"id": i, "region": None, "source": "s"} for i in ids], "steps": [0, 1], "samples": 8,
                "train_minutes": 1.0, "train_loss": 0.1, "val_loss": None}

    chunks = [record(0, "shard-00", ["a", "b"]), record(1, "shard-01", ["c"]), record(2, "shard-00", ["a", "b"])]
    assert [c.id for c in cases_seen(chunks)] == ["a", "b", "c"]
    text = "\n".join(chunk_card_lines(chunks))
    assert "3 distinct training cases, shards shard-00 of 4, shard-01 of 4 (" in text


def test_the_card_headline_names_every_machine_the_chunks_ran_on():
    chunks = [{"hardware": h} for h in ("NVIDIA H200", "NVIDIA H200", "NVIDIA H100 80GB HBM3")]
    assert chunks_hardware(chunks) == "NVIDIA H200 and NVIDIA H100 80GB HBM3"
    assert chunks_hardware(chunks[:2]) == "NVIDIA H200"
    assert chunks_hardware(chunks + [{"hardware": "CPU"}]) == "NVIDIA H200, NVIDIA H100 80GB HBM3 and CPU"


def test_only_a_controlnet_chunk_can_be_held_back(carry):
    """A base model's state keeps raw weights, so the travel budget has no room for a second model: `apply
    --hold` refuses it before touching anything."""
    with pytest.raises(SystemExit, match="only a ControlNet config"):
        _script().main(["apply", str(carry / "nothing"), "--hold", "--config", str(carry / "tiny_chunk.json"),
                        "--state-dir", str(carry / "no_state"), "--model-dir", str(carry / "models" / "none")])
    assert not (carry / "no_state").exists()


def test_promote_without_a_held_back_model_says_so(carry, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _script().main(["promote", "--config", str(carry / "tiny_chunk.json"), "--state-dir", str(carry / "no_state"),
                        "--model-dir", str(carry / "models" / "none")])
    assert exit_info.value.code == 2 and "no held-back model" in capsys.readouterr().err


def test_one_model_is_held_back_at_a_time(tmp_path):
    """Each held-back model costs every chunk's shards its size: a second one is refused, and a ControlNet's
    travel budget leaves no room for its own candidate while another model's is held."""
    from helpers.models import write_tiny_models

    base = write_tiny_models(tmp_path / "tiny").base
    config = tmp_path / "lesion.json"
    config.write_text(json.dumps({"task": "lesion", "base_model": str(base), "cache": "unused", "run_dir": "unused",
                                  "export": {"name": "tiny-lesion-held"}}))
    (tmp_path / "states" / "theirs" / "candidate").mkdir(parents=True)
    with pytest.raises(SystemExit, match="already held back"):
        _script().main(["apply", str(tmp_path / "nothing"), "--hold", "--config", str(config),
                        "--state-dir", str(tmp_path / "states" / "mine"), "--model-dir", str(tmp_path / "shipped")])
    script = _script()
    paths = script.config_paths(config)
    paths["state_dir"] = tmp_path / "states" / "mine"
    assert script.projected_checkout_bytes(paths)[1]["models"] == 1
    (tmp_path / "states" / "theirs" / "candidate").rmdir()
    assert script.projected_checkout_bytes(paths)[1]["models"] == 2


def test_a_lesion_chunk_skips_shards_without_a_lesion():
    plan = {"shards": [{"train": ["a", "b"]}, {"train": ["big"]}, {"train": ["c"]}]}
    index = {"cases": [{"id": "a", "lesion_voxels": 0}, {"id": "b", "lesion_voxels": 12}, {"id": "big"},
                       {"id": "c", "lesion_voxels": 3}]}
    assert usable_shards(plan, index, needs_lesion=False) == [0, 1, 2]
    assert usable_shards(plan, index, needs_lesion=True) == [0, 2]

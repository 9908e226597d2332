"""Training across short GPU leases: stage what a chunk carries, run the chunk on the device, apply
what came back. tools/gpu_chunk/README.md gives the routine step by step.

From the repository root:
  python -m tools.gpu_chunk stage [--config configs/gpu_default.json]   (here, needs SimpleITK)
  bash tools/gpu_chunk/train_chunk.sh MINUTES                           (on the device; calls `run`)
  python -m tools.gpu_chunk apply FILES_AT [--hold]                     (here: into the repository)
  python -m tools.gpu_chunk promote --config CONFIG                     (here: ship a held-back model)
  python -m tools.gpu_chunk size                                        (what would travel now)

``stage`` records the config in the carry (``carry.json``); ``run`` and ``apply`` take it from there
unless ``--config`` is given. ``configs/gpu_superres.json`` and ``configs/gpu_lesion.json`` fine-tune
the ControlNets on the shipped base the same way (no quality boxes: the device has no SimpleITK to
run super-resolution or lesions; their benchmarks run here after ``apply``). A ControlNet chunk's model
can be held back (``apply --hold``): it waits in ``training_state/NAME/candidate``, the next chunk
resumes from it, the shipped ``Resources/Models/NAME`` stays, and ``promote`` ships the candidate once
its benchmark beats the shipped model (a chunk that scores worse must not replace what users have).

What travels to the device is the checkout (tracked and untracked-not-ignored files) plus the carried
folder ``.cache/gpu_carry`` (the chunk's shard, the quality boxes, the monai wheel): at most 64 MiB.
``stage`` sizes the shards so that the steady state fits: the checkout with the shipped model and the
compact state at the config's size (for a ControlNet, with room for a held-back candidate beside the
shipped model), plus the wheel, the quality boxes and the largest shard. It records that budget in
``tools/gpu_chunk/budget/NAME.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional

REPO = Path(__file__).resolve().parents[2]

TRAVEL_LIMIT = 64 * 2**20
CARRY = Path(".cache/gpu_carry")
WORK = Path(".cache/gpu")
BUDGET_DIR = Path("tools/gpu_chunk/budget")
DEFAULT_CONFIG = Path("configs/gpu_default.json")
MARGIN = 2**20  # model card / state.json growth and rounding
MONAI_WHEEL_GLOB = "monai-*.whl"


# ---------------------------------------------------------------------------------------------------
# Sizes


def checkout_files(repo: Path = REPO) -> list[Path]:
    """The files that travel with the checkout, as the device counts them: tracked, and untracked but
    not ignored (git ls-files)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            check=True, capture_output=True).stdout.decode().split("\0")
    return [repo / name for name in sorted(set(listed)) if name and (repo / name).is_file()]


def tree_bytes(paths: Iterable[Path]) -> int:
    total = 0
    for path in paths:
        path = Path(path)
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total


def travelling_bytes(repo: Path = REPO, carry: Iterable[Path] = ()) -> int:
    """Bytes that a device call sends: the checkout plus the carried paths."""
    return tree_bytes(checkout_files(repo)) + tree_bytes(repo / Path(c) for c in carry)


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------------
# Paths of one config


def config_paths(config: Path) -> dict:
    """The model name, its shipped folder, its compact state folder, the network's config (the base's
    for a ControlNet config) and the fine-tuning task (None for a base model)."""
    from MedDiffFMLib.models.registry import resolve_model
    from MedDiffFMLib.training import TrainConfig

    cfg = TrainConfig.from_file(config)
    name = cfg.export.name or "meddifffm-default"
    model = resolve_model(cfg.base_model).model_config if cfg.task else cfg.model_config()
    return {"cfg": cfg, "name": name, "model_dir": REPO / "Resources" / "Models" / name,
            "state_dir": REPO / "training_state" / name, "model": model, "task": cfg.task}


def budget_file(name: str) -> Path:
    """Where ``stage`` records the travelling budget of the chunks of model ``name``."""
    return BUDGET_DIR / f"{name}.json"


def staged_config(carry: Path = CARRY) -> Path:
    """The config of the staged chunk (carry.json), else the default model's."""
    record = REPO / carry / "carry.json"
    if record.is_file():
        return Path(json.loads(record.read_text())["config"])
    return DEFAULT_CONFIG


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


def parameter_count(model_config, task: Optional[str] = None, superres_factors=(2, 3, 4, 5)) -> int:
    """Trainable parameters: the U-Net's, or the ``task`` ControlNet's."""
    import torch

    from MedDiffFMLib.models.config import ControlNetConfig
    from MedDiffFMLib.models.network import MedDiffFMControlNet, MedDiffFMUNet
    from MedDiffFMLib.training.condition_builders import condition_builder

    with torch.device("meta"):
        if task is None:
            return sum(p.numel() for p in MedDiffFMUNet(model_config).parameters())
        channels = condition_builder(task, {"superres_factors": list(superres_factors)}).channels
        control = ControlNetConfig(task=task, condition_channels=channels, base_model="base")
        return sum(p.numel() for p in MedDiffFMControlNet(model_config, control).parameters())


def projected_checkout_bytes(paths: dict, moments: bool = False) -> tuple[int, dict]:
    """The checkout once the shipped model and the compact state have the config's size (a ControlNet
    state keeps no raw weights: they restart from the EMA; it has room for a held-back candidate model
    beside the shipped one unless another model's candidate is held)."""
    from .chunk import can_hold_back, candidate_dir, keeps_raw_weights, other_candidates

    current = tree_bytes(checkout_files())
    replaced = sum(tree_bytes(weight_files(folder)) for folder in
                   (paths["model_dir"], paths["state_dir"], candidate_dir(paths["state_dir"])))
    params = parameter_count(paths["model"], paths["task"], paths["cfg"].superres_factors)
    models = 2 if can_hold_back(paths["cfg"]) and not other_candidates(paths["state_dir"]) else 1
    model_bytes = 2 * params * models             # float16 EMA: the shipped model (and a candidate)
    raw_bytes = 2 * params if keeps_raw_weights(paths["cfg"]) else 0
    state_bytes = raw_bytes + (4 * params if moments else 0)  # float16 raw (+ bfloat16 moments)
    return current - replaced + model_bytes + state_bytes, {"params": params, "model_bytes": model_bytes,
                                                             "models": models, "state_bytes": state_bytes}


# ---------------------------------------------------------------------------------------------------
# stage


def find_wheel(folder: Path) -> Path:
    found = sorted(folder.glob(MONAI_WHEEL_GLOB))
    if found:
        return found[-1]
    import monai

    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    f"monai=={monai.__version__}", "-d", str(folder), "-q"], check=True)
    return sorted(folder.glob(MONAI_WHEEL_GLOB))[-1]


def _link_tree(src: Path, dst: Path) -> None:
    for path in src.rglob("*"):
        if path.is_file():
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


def stage(args: argparse.Namespace) -> None:
    from MedDiffFMLib.errors import MedDiffFMError
    from MedDiffFMLib.training import load_manifest, prepare_cache
    from MedDiffFMLib.training.compact import is_compact_state, read_compact_meta
    from MedDiffFMLib.training.condition_builders import condition_builder

    from .chunk import CHUNKS_KEY
    from .quality import make_quality_cases
    from .shards import build_shards, read_plan, shard_for_chunk, usable_shards

    paths = config_paths(args.config)
    model = paths["model"]
    tag = "x".join(f"{s:g}" for s in sorted(set(model.spacing_mm))) + "mm"
    work = REPO / WORK
    cache = work / f"cache_{tag}"
    print(f"stage: config {args.config} (model '{model.name}', {tag}, patch {model.patch_size}); cache {cache}")
    manifest = load_manifest(args.manifest, args.data_root, regions=model.regions)
    prepare_cache(manifest, cache, list(model.spacing_mm), dtype="uint8", windows=model.window_for,
                  config_name=model.name, progress=lambda i, n, c: print(f"  prepare {i}/{n} {c}", end="\r"))
    quality = work / f"quality_{tag}"
    if paths["task"] is None and (not sorted(quality.glob("*.npz")) or args.remake_quality):
        shutil.rmtree(quality, ignore_errors=True)
        make_quality_cases(args.manifest, args.data_root, model.spacing_mm, model.patch_size, quality)
    carried_quality = [quality] if paths["task"] is None else []  # the denoising check is the base's
    wheel = find_wheel(REPO / ".whl")
    projected, sizes = projected_checkout_bytes(paths, args.moments)
    fixed = projected + wheel.stat().st_size + tree_bytes(carried_quality) + 4096 + MARGIN
    max_shard = TRAVEL_LIMIT - fixed
    models = "model" if sizes["models"] == 1 else "shipped + held-back models"
    print(f"  steady-state checkout {mib(projected)} ({sizes['params']:,} parameters: {models} "
          f"{mib(sizes['model_bytes'])}"
          f", state {mib(sizes['state_bytes'])}); wheel {mib(wheel.stat().st_size)}; quality {mib(tree_bytes(carried_quality))}"
          f" -> shards up to {mib(max_shard)}")
    shards = work / f"shards_{tag}"
    plan = read_plan(shards)
    index = json.loads((cache / "index.json").read_text())
    index_bytes = index["total_bytes"]
    # The plan is shared by the configs of one spacing but sized by each one's budget: rebuild it when it
    # was made for another size (from the cached LZMA copies, seconds), so no config trains shards
    # another one's budget shrank.
    made_for = plan.get("max_bytes", 0) if plan else 0
    if (args.rebuild_shards or plan is None or not 0.95 * max_shard <= made_for <= max_shard
            or plan.get("source_bytes") != index_bytes or not plan.get("split_oversized")):
        plan = build_shards(cache, shards, max_shard, lzma=not args.no_lzma, split_oversized=True)
        plan["source_bytes"] = index_bytes
        (shards / "shards.json").write_text(json.dumps(plan, indent=1))
    for case in plan.get("split", []):
        print(f"  {case['id']} ({case['mib']} MiB packed) is larger than a shard may be: it travels as {case['slabs']} "
              "slabs along z, each a case of its own.")
    meta = read_compact_meta(paths["state_dir"]) if is_compact_state(paths["state_dir"]) else None
    chunk = len(meta.get(CHUNKS_KEY, [])) if meta else 0
    needs_lesion = bool(paths["task"]) and condition_builder(paths["task"]).needs_lesion
    usable = usable_shards(plan, index, needs_lesion)
    if not usable:
        raise MedDiffFMError(f"stage: no shard of the plan holds a training case with a lesion mask, so "
                             f"{args.config} has nothing to train on. Check the manifest's lesion masks.")
    pick = args.shard if args.shard is not None else usable[shard_for_chunk(chunk, len(usable))]
    chosen = plan["shards"][pick % len(plan["shards"])]
    carry = REPO / CARRY
    shutil.rmtree(carry, ignore_errors=True)
    _link_tree(shards / chosen["name"], carry / "shard" / chosen["name"])
    for folder in carried_quality:
        _link_tree(folder, carry / "quality")
    (carry / "wheels").mkdir(parents=True)
    shutil.copy2(wheel, carry / "wheels" / wheel.name)
    (carry / "carry.json").write_text(json.dumps({"config": str(args.config), "model": paths["name"], "chunk": chunk,
                                                  "shard": chosen["name"], "shards": len(plan["shards"])}, indent=1))
    budget = {
        "_comment": "Written by `python -m tools.gpu_chunk stage`: the travelling-size budget of a GPU chunk (MiB). "
                    "Testing/test_gpu_chunk.py checks it when no shard is staged.",
        "config": str(args.config), "parameters": sizes["params"],
        "steady_checkout_mib": round(projected / 2**20, 2), "wheel_mib": round(wheel.stat().st_size / 2**20, 2),
        "quality_mib": round(tree_bytes(carried_quality) / 2**20, 2), "max_shard_mib": round(max_shard / 2**20, 2),
        "largest_shard_mib": round(max(s["bytes"] for s in plan["shards"]) / 2**20, 2),
        "shards": [{"name": s["name"], "mib": round(s["bytes"] / 2**20, 2), "train_cases": len(s["train"])}
                   for s in plan["shards"]],
        "val_cases": plan["shards"][0]["val"],
        "split": plan.get("split", []),
    }
    (REPO / budget_file(paths["name"])).parent.mkdir(parents=True, exist_ok=True)
    (REPO / budget_file(paths["name"])).write_text(json.dumps(budget, indent=1) + "\n")
    now = travelling_bytes(REPO, [CARRY])
    print(f"  chunk {chunk} trains {chosen['name']} of {len(plan['shards'])} ({len(chosen['train'])} training cases, "
          f"{mib(chosen['bytes'])}); travelling now {mib(now)} of 64 MiB"
          + ("" if now <= TRAVEL_LIMIT else "  <-- TOO BIG"))
    print("\nDevice call (run tool):\n  command: bash tools/gpu_chunk/train_chunk.sh 6\n"
          f"  carry: [\"{CARRY}\"]\n  timeout_s: 560")


# ---------------------------------------------------------------------------------------------------
# run (on the device)


def run(args: argparse.Namespace) -> None:
    from .chunk import ChunkOptions, ema_model_dir, run_chunk
    from .quality import card_lines, evaluate

    carry = (REPO / args.carry).resolve()
    args.config = args.config or staged_config(carry)
    paths = config_paths(args.config)
    quality_dir = carry / "quality"
    device = args.device

    def quality(model: Path) -> dict:
        if args.no_quality or paths["task"] or not sorted(quality_dir.glob("*.npz")):
            return {}
        figures = evaluate(model, quality_dir, device or "auto", args.quality_steps)
        return {"figures": figures, "card": card_lines(figures)}

    work = Path(tempfile.mkdtemp(prefix="meddifffm-chunk-"))
    overrides = json.loads(args.overrides) if args.overrides else {}
    staged = json.loads((carry / "carry.json").read_text()) if (carry / "carry.json").is_file() else {}
    state_dir = args.state_dir or paths["state_dir"]
    options = ChunkOptions(config=args.config, shards=carry / "shard", state_dir=state_dir,
                           model_dir=ema_model_dir(state_dir, args.model_dir or paths["model_dir"]),
                           out=Path(args.out), work=work, minutes=args.minutes, device=device, overrides=overrides,
                           moments=args.moments, shard=args.shard, total_shards=staged.get("shards"))
    record = run_chunk(options, quality)
    shutil.rmtree(work, ignore_errors=True)
    print(summary(record))
    if args.speed_probe:
        speed_probe(args.config, carry / "shard", Path(args.out) / "train_speed.md", args.speed_probe, device)


def speed_probe(config: Path, shards: Path, out: Path, seconds: float, device: Optional[str]) -> None:
    """After a chunk, in the same device call: :mod:`tools.gpu_chunk.train_speed` on the staged shard. The
    chunk's results are already packed, so a failed probe only loses its own table."""
    from . import train_speed

    argv = ["--config", str(config), "--cache", str(shards), "--seconds", f"{seconds:g}", "--out", str(out)]
    try:
        train_speed.main(argv + (["--device", device] if device else []))
    except Exception as error:  # noqa: BLE001 - the chunk's results stand whatever the probe does
        print(f"train_speed failed ({type(error).__name__}: {error}); the chunk's results stand", file=sys.stderr)


def summary(record: dict) -> str:
    """One screen: what the chunk did, its quality figures and what it returned."""
    lines = ["", "=" * 78, f"GPU chunk {record['chunk']} on {record['hardware']} ({record['date']})",
             f"  shard {record['shard']}, {record['train_cases']} training cases; steps {record['steps'][0]} -> "
             f"{record['steps'][1]} ({record['samples']} samples, {record['train_minutes']} training min, "
             f"{record['wall_minutes']} min in all; stopped: {record['stopped_by']})",
             f"  train loss {record.get('train_loss')}, val loss {record.get('val_loss')}"]
    quality = record.get("quality") or {}
    for name, row in quality.get("cases", {}).items():
        lines.append(f"  {name} (+{row['added_std_hu']} HU): PSNR noisy {row['noisy']['psnr']:.2f} | model "
                     f"{row['model']['psnr']:.2f} | NLM {row['nlm']['psnr']:.2f} dB; SSIM {row['noisy']['ssim']:.3f} | "
                     f"{row['model']['ssim']:.3f} | {row['nlm']['ssim']:.3f} ({row['model_seconds']} s vs "
                     f"{row['nlm_seconds']} s)")
    lines.append("  returned: " + ", ".join(f"{r['path']} ({mib(r['bytes'])})" for r in record["returned"]))
    lines.append("=" * 78)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# apply (here)


def apply(args: argparse.Namespace) -> None:
    """Install a returned chunk: its state into training_state/NAME, its model into Resources/Models/NAME
    (it ships) or, with ``--hold``, into the state's candidate folder (the shipped model stays)."""
    from MedDiffFMLib.models.weights import verify_model_folder
    from .chunk import can_hold_back, candidate_dir, other_candidates, unpack_outputs
    from MedDiffFMLib.training.compact import read_compact_state

    args.config = args.config or staged_config()
    paths = config_paths(args.config)
    paths["model_dir"] = args.model_dir or paths["model_dir"]
    paths["state_dir"] = args.state_dir or paths["state_dir"]
    if args.hold and not can_hold_back(paths["cfg"]):
        raise SystemExit(f"apply: --hold keeps the chunk's model beside the shipped one, and only a ControlNet config "
                         f"budgets the room for that ({args.config} trains a base model, whose state keeps raw "
                         "weights). Apply without --hold.")
    held = other_candidates(paths["state_dir"]) if args.hold else []
    if held:
        raise SystemExit(f"apply: {os.path.relpath(held[0], REPO)} is already held back, and one model is held at a "
                         "time (each one held shrinks every chunk's shards by its size). Promote it first "
                         "(`python -m tools.gpu_chunk promote`), or apply this chunk without --hold.")
    work = REPO / args.work  # an absolute --work stays as it is
    staged = unpack_outputs(Path(args.returned), work / "returned")
    model = verify_model_folder(staged / "model")
    if model.name != paths["name"]:
        raise SystemExit(f"apply: the returned model is '{model.name}', the config's is '{paths['name']}'.")
    read_compact_state(staged / "state", ema_model=staged / "model")  # the pair is consistent
    destination = candidate_dir(paths["state_dir"]) if args.hold else paths["model_dir"]
    # The state goes first: replacing it drops an older candidate, so a chunk that ships leaves none.
    for src, dst in ((staged / "state", paths["state_dir"]), (staged / "model", destination)):
        if dst.exists():
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst)
    verify_model_folder(destination)
    read_compact_state(paths["state_dir"], ema_model=destination)
    record = json.loads((staged / "chunk.json").read_text())
    logs = sorted(staged.glob("log-chunk*.csv"))
    if logs:
        (work / "logs").mkdir(parents=True, exist_ok=True)
        for log in logs:
            shutil.copy2(log, work / "logs" / log.name)
    probe = Path(args.returned) / "train_speed.md"
    if probe.is_file():  # --speed-probe's table: keep it beside the logs
        (work / "logs").mkdir(parents=True, exist_ok=True)
        kept = work / "logs" / f"train_speed-chunk{int(record['chunk']):03d}.md"
        shutil.copy2(probe, kept)
        print(f"The training throughput probe's table: {os.path.relpath(kept, REPO)}")
    model_dir, state_dir, held = (os.path.relpath(p, REPO)
                                  for p in (paths["model_dir"], paths["state_dir"], destination))
    steps = f"steps {record['steps'][0]}-{record['steps'][1]}"
    if args.hold:
        print(f"Held back chunk {record['chunk']}: its model waits in {held}; {model_dir} still ships. Benchmark it "
              f"with --model {held}; ship it once it beats {model_dir}:\n  python -m tools.gpu_chunk promote "
              f"--config {args.config}\nCommit the state now:\n  git add -A {state_dir} && git commit -m "
              f"'GPU chunk {record['chunk']} (held back): {steps}'")
    else:
        print(f"Installed chunk {record['chunk']}: {model_dir} and {state_dir}. Commit them:\n  git add -A {model_dir} "
              f"{state_dir} && git commit -m 'GPU chunk {record['chunk']}: {steps}'")


def promote(args: argparse.Namespace) -> None:
    """Ship a held-back candidate: it replaces Resources/Models/NAME (the state then reads its EMA there).

    The training config's ControlNet settings that apply without retraining (``controlnet.min_timestep``,
    ``controlnet.conditioning_scale``) go into the shipped config, so one set after the candidate's
    chunk (and benchmarked with superres_quality's --control-min-t / --control-scale) ships with it.
    """
    from MedDiffFMLib.errors import MedDiffFMError
    from MedDiffFMLib.models.config import CONTROLNET_RUNTIME_SETTINGS
    from MedDiffFMLib.models.weights import set_controlnet_settings, verify_model_folder
    from .chunk import candidate_dir
    from MedDiffFMLib.training.compact import read_compact_state

    paths = config_paths(args.config)
    paths["state_dir"] = args.state_dir or paths["state_dir"]
    candidate = candidate_dir(paths["state_dir"])
    model_dir = args.model_dir or paths["model_dir"]
    if not candidate.is_dir():
        raise MedDiffFMError(f"promote: there is no held-back model in {os.path.relpath(candidate, REPO)}; the last "
                             f"chunk's model already ships in {os.path.relpath(model_dir, REPO)}.")
    verify_model_folder(candidate)
    read_compact_state(paths["state_dir"], ema_model=candidate)
    settings = {k: v for k, v in paths["cfg"].controlnet.items() if k in CONTROLNET_RUNTIME_SETTINGS}
    if paths["task"] and settings:
        set_controlnet_settings(candidate, settings, reason=f"set in {args.config} after the chunk")
    incoming = model_dir.with_name(model_dir.name + ".promoting")
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.copytree(candidate, incoming)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    incoming.rename(model_dir)
    shutil.rmtree(candidate)
    verify_model_folder(model_dir)
    read_compact_state(paths["state_dir"], ema_model=model_dir)
    shipped, state_dir = (os.path.relpath(p, REPO) for p in (model_dir, paths["state_dir"]))
    print(f"Promoted: {shipped} now holds the state's model. Commit it with the benchmark that justified it:\n"
          f"  git add -A {shipped} {state_dir} && git commit")


# ---------------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_chunk", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser, default: Optional[Path] = None) -> None:
        p.add_argument("--config", type=Path, default=default,
                       help=f"training config (default: {default or 'the staged one, from the carry'})")

    p = sub.add_parser("stage", help="prepare the cache, shards and quality boxes; stage the next chunk's carry")
    common(p, DEFAULT_CONFIG)
    p.add_argument("--manifest", type=Path, default=Path("configs/shared_ct_manifest.json"))
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data" / "ct")
    p.add_argument("--shard", type=int, default=None, help="stage this shard instead of the rotation's")
    p.add_argument("--moments", action="store_true", help="budget for AdamW moments in the state")
    p.add_argument("--rebuild-shards", action="store_true")
    p.add_argument("--remake-quality", action="store_true")
    p.add_argument("--no-lzma", action="store_true", help="keep the cache's zlib compression in the shards")
    p.set_defaults(func=stage)

    p = sub.add_parser("run", help="train one chunk (on the device) and pack the results into --out")
    common(p)
    p.add_argument("--minutes", type=float, required=True, help="training budget in minutes")
    p.add_argument("--out", required=True, help="where the results go ($OUT)")
    p.add_argument("--carry", type=Path, default=CARRY)
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--model-dir", type=Path, default=None,
                   help="the shipped model folder (default: Resources/Models/NAME); a held-back candidate in "
                        "the state wins")
    p.add_argument("--device", default=None)
    p.add_argument("--overrides", default=None, help="JSON object of config keys (tests: a tiny CPU model)")
    p.add_argument("--moments", action="store_true")
    p.add_argument("--shard", type=int, default=None)
    p.add_argument("--no-quality", action="store_true")
    p.add_argument("--quality-steps", type=int, default=None)
    p.add_argument("--speed-probe", type=float, default=None, metavar="SECONDS",
                   help="after the chunk, time each training variant (tools/gpu_chunk/train_speed.py) this long on the "
                        "shard (about 5 x (SECONDS + 15) s more); the table comes back as train_speed.md")
    p.set_defaults(func=run)

    p = sub.add_parser("apply", help="install what a chunk returned into Resources/Models and training_state")
    common(p)
    p.add_argument("returned", type=Path, help="the folder the device's files came back to (files_at)")
    p.add_argument("--state-dir", type=Path, default=None, help="default: training_state/NAME")
    p.add_argument("--model-dir", type=Path, default=None, help="default: Resources/Models/NAME")
    p.add_argument("--hold", action="store_true",
                   help="keep the chunk's model in training_state/NAME/candidate instead of shipping it (ControlNets)")
    p.add_argument("--work", type=Path, default=WORK,
                   help=f"where the returned files are unpacked and the chunk logs kept (default: {WORK})")
    p.set_defaults(func=apply)

    p = sub.add_parser("promote", help="ship a held-back model: training_state/NAME/candidate -> Resources/Models/NAME")
    p.add_argument("--config", type=Path, required=True, help="the model's training config")
    p.add_argument("--state-dir", type=Path, default=None, help="default: training_state/NAME")
    p.add_argument("--model-dir", type=Path, default=None, help="default: Resources/Models/NAME")
    p.set_defaults(func=promote)

    p = sub.add_parser("size", help="print what a device call would send now")
    p.add_argument("--carry", type=Path, action="append", default=None)
    p.set_defaults(func=lambda a: print(mib(travelling_bytes(REPO, a.carry or [CARRY]))))

    args = parser.parse_args(argv)
    os.chdir(REPO)
    from MedDiffFMLib.errors import MedDiffFMError

    try:
        args.func(args)
    except MedDiffFMError as error:  # bad input: one paragraph, exit 2
        print(f"gpu_chunk: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


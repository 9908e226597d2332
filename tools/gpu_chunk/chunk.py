"""One training chunk of a short GPU lease: resume from the compact state (or start from a fresh init),
train one shard for a time budget, export the EMA as the shipped model folder, write the new compact
state, and pack everything so that it comes back through the device's limits (at most 8 files of at
most 16 MiB). A config with a ``task`` fine-tunes that ControlNet on its frozen base the same way
(``meddifffm finetune``); its state keeps no raw weights (:func:`keeps_raw_weights`), so that it adds
nothing to what travels beside the base's state, and its model may be held back in the state
(:func:`candidate_dir`) until a benchmark says it beats the shipped one. The quality check is a
callback (:mod:`tools.gpu_chunk.quality`), so this module does not import the benchmarks. See
tools/gpu_chunk/README.md for the routine around it.

The library's trainer knows nothing of chunks: this module resumes it from a compact state, gives it
the chunk's records as the state's ``extra`` keys, and writes the chunk history into the model card by
amending the trainer's :class:`~MedDiffFMLib.training.export.RunReport` before the export.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from MedDiffFMLib.errors import MedDiffFMError
from MedDiffFMLib.models.weights import MANIFEST, sha256_of, verify_model_folder
from MedDiffFMLib.training.cache import INDEX
from MedDiffFMLib.training.compact import is_compact_state, read_compact_meta
from MedDiffFMLib.training.config import TrainConfig
from MedDiffFMLib.training.export import export_run
from MedDiffFMLib.training.trainer import Trainer

from .shards import shard_for_chunk

MAX_RETURN_FILES = 8
MAX_RETURN_BYTES = 16 * 2**20
META_TAR = "meta.tar"
LOOSE_MIN_BYTES = 2**20  # files this big come back as they are; smaller ones go into meta.tar
CANDIDATE = "candidate"
CHUNKS_KEY = "chunks"  # the compact state's extra key that lists every chunk's record

# The quality check: (model folder) -> {"figures": {...}, "card": [model-card lines]}.
QualityCheck = Callable[[Path], dict]


@dataclass(frozen=True)
class SeenCase:
    """A training case known from a chunk record rather than from the cache on disk (what the model
    card reads of a case: :class:`~MedDiffFMLib.training.export.CaseSummary`)."""

    id: str
    region: Optional[str]
    source: str


@dataclass
class ChunkOptions:
    """Where a chunk reads and writes (paths relative to the repository root are resolved by the caller)."""

    config: Path                          # training config (JSON)
    shards: Path                          # a folder of shard-NN caches, or one prepared cache
    state_dir: Path                       # the committed compact state (absent: fresh init)
    model_dir: Path                       # the model folder that holds the state's EMA (ema_model_dir)
    out: Path                             # where the packed results go ($OUT on the device)
    work: Path                            # scratch: run folder and the staged results
    minutes: float = 6.0                  # training budget
    device: Optional[str] = None          # override the config's device
    overrides: dict = field(default_factory=dict)  # other config keys (e.g. a tiny model for tests)
    moments: bool = False                 # keep AdamW's moments in the state
    shard: Optional[int] = None           # override the rotation
    total_shards: Optional[int] = None    # shards in the whole plan, when only the chunk's own one travelled


def keeps_raw_weights(cfg: TrainConfig) -> bool:
    """Whether a chunk's compact state stores the raw weights: a base model's do; a ControlNet's
    (``task`` set) restart from its exported EMA, so its state costs nothing beside the model folder."""
    return not cfg.task


def can_hold_back(cfg: TrainConfig) -> bool:
    """Whether a chunk's model may wait in its state (:func:`candidate_dir`) instead of shipping, until a
    benchmark says it beats the shipped one. Only a state without raw weights leaves room in the device's
    64 MiB for a second copy of the model; ``python -m tools.gpu_chunk stage`` budgets for it then."""
    return not keeps_raw_weights(cfg)


def candidate_dir(state_dir: Path) -> Path:
    """Where a held-back chunk's model folder waits: inside the compact state it belongs to."""
    return Path(state_dir) / CANDIDATE


def other_candidates(state_dir: Path) -> list[Path]:
    """Held-back models of the other states beside ``state_dir``: one model is held back at a time, since
    each one held costs every chunk's shards its size (a second would leave a ControlNet chunk 1-case shards)."""
    state_dir = Path(state_dir).resolve()
    return sorted(p for p in state_dir.parent.glob(f"*/{CANDIDATE}") if p.parent != state_dir and p.is_dir())


def ema_model_dir(state_dir: Path, shipped_dir: Path) -> Path:
    """The model folder holding a compact state's EMA: its held-back candidate when it has one, else the
    shipped model folder."""
    candidate = candidate_dir(state_dir)
    return candidate if candidate.is_dir() else Path(shipped_dir)


def chunk_shards(shards: Path) -> list[Path]:
    """The shard caches under ``shards`` in order, or ``[shards]`` when it is itself a cache."""
    found = sorted(p for p in Path(shards).glob("shard-*") if (p / INDEX).is_file())
    if found:
        return found
    if (Path(shards) / INDEX).is_file():
        return [Path(shards)]
    raise MedDiffFMError(f"'{shards}' holds no training cache shard (shard-NN/{INDEX}). Stage the chunk first "
                         "(python -m tools.gpu_chunk stage).")


def run_chunk(options: ChunkOptions, quality: Optional[QualityCheck] = None, log=print) -> dict:
    """Train one chunk and pack its results into ``options.out``; returns the chunk's record."""
    started = time.time()
    overrides = dict(options.overrides)
    if options.device:
        overrides["device"] = options.device
    cfg = TrainConfig.from_file(options.config, overrides)
    meta = read_compact_meta(options.state_dir) if is_compact_state(options.state_dir) else None
    chunks = list(meta.get(CHUNKS_KEY, [])) if meta else []
    number = len(chunks)
    shards = chunk_shards(options.shards)
    pick = options.shard if options.shard is not None else shard_for_chunk(number, len(shards))
    shard = shards[pick % len(shards)]
    total = options.total_shards or len(shards)
    stage = Path(options.work) / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    cfg.cache = str(shard)
    cfg.run_dir = str(Path(options.work) / "run")
    shutil.rmtree(cfg.run_dir, ignore_errors=True)
    cfg.export.dir = str(stage / "model")
    # One exact checkpoint at the end is enough inside a lease (it stays on the machine).
    cfg.checkpoint_every = 10**9
    cfg.checkpoint_minutes = 10**6
    cfg.keep_checkpoints = 1
    mode = "finetune" if cfg.task else "train"
    fresh = f"fresh {cfg.task} ControlNet on {cfg.base_model}" if cfg.task else f"fresh init of {cfg.model}"
    log(f"chunk {number}: {'resuming from ' + str(options.state_dir) if meta else fresh}"
        f" (step {meta['step'] if meta else 0}); shard {shard.name} of {total}; "
        f"budget {options.minutes:g} min")
    trainer = Trainer(cfg, mode, resume_compact=options.state_dir if meta else None,
                      compact_ema_model=options.model_dir if meta else None, max_minutes=options.minutes,
                      progress="none", export=False)
    trainer.setup()
    step0, seconds0 = trainer.step, trainer.train_seconds
    # Slabs of one scan (shards.split_case_z) count as that scan.
    trained = list({(c.slab_of or c.id): {"id": c.slab_of or c.id, "region": c.region, "source": c.source}
                    for c in trainer.cases("train")}.values())
    result = trainer.run()
    record = {
        "chunk": number,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "hardware": trainer.report().hardware,
        "shard": f"{shard.name} of {total}",
        "train_cases": len(trained),
        "cases": trained,
        "steps": [step0, trainer.step],
        "samples": (trainer.step - step0) * trainer.global_batch,
        "train_minutes": round((trainer.train_seconds - seconds0) / 60.0, 2),
        "train_loss": result.train_loss,
        "val_loss": result.val_loss,
        "stopped_by": result.stopped_by,
    }
    all_chunks = chunks + [record]
    report = trainer.report()
    report = dataclasses.replace(
        report, notes=report.notes + chunk_card_lines(all_chunks),
        train_cases=cases_seen(all_chunks) or report.train_cases, hardware=chunks_hardware(all_chunks),
        extra={**report.extra, "gpu_chunks": len(all_chunks),
               "gpu_train_minutes": round(sum(c["train_minutes"] for c in all_chunks), 2),
               # ControlNets fine-tuned on an earlier chunk's export still load on this one.
               "lineage": [c["model_sha256"] for c in chunks if c.get("model_sha256")]})
    model = export_run(report, result)
    record["model_sha256"] = verify_model_folder(model).fingerprint
    if quality is not None:
        checked = quality(model)
        record["quality"] = checked.get("figures")
        append_to_card(model, checked.get("card", []))
    state = trainer.save_compact(stage / "state", ema_model=model, moments=options.moments,
                                 raw_weights=keeps_raw_weights(cfg), extra={CHUNKS_KEY: all_chunks})
    assert state is not None
    (stage / "chunk.json").write_text(json.dumps(record, indent=1))
    if (Path(cfg.run_dir) / "log.csv").is_file():
        shutil.copy2(Path(cfg.run_dir) / "log.csv", stage / f"log-chunk{number:03d}.csv")
    record["wall_minutes"] = round((time.time() - started) / 60.0, 2)
    returned = pack_outputs(stage, options.out)
    record["returned"] = returned
    return record


def chunk_card_lines(chunks: list[dict]) -> list[str]:
    """Model-card lines: what the GPU chunks so far did."""
    if not chunks:
        return []
    minutes = sum(c["train_minutes"] for c in chunks)
    samples = sum(c["samples"] for c in chunks)
    lines = [f"- GPU chunks: {len(chunks)}, {minutes:.1f} training minutes, {samples} samples in all "
             "(tools/gpu_chunk/README.md):"]
    for c in chunks[-12:]:
        lines.append(f"  - chunk {c['chunk']} ({c['date']}, {c['hardware']}): steps {c['steps'][0]}-{c['steps'][1]}, "
                     f"{c['samples']} samples in {c['train_minutes']:.1f} min on {c['shard']} ({c['train_cases']} "
                     f"training cases); train loss {_num(c.get('train_loss'))}, val loss {_num(c.get('val_loss'))}.")
    # Shards are named within the plan of their day (a re-staged plan may split the cache anew), so
    # the exact figure is the distinct cases; the shards are listed with their plan's size.
    shards = list(dict.fromkeys(c["shard"] for c in chunks))
    distinct = len(cases_seen(chunks))
    lines.append("  - data seen: " + (f"{distinct} distinct training cases, " if distinct else "")
                 + f"shards {', '.join(shards)} (chunk k trains shard k mod n of the plan staged for it; the n "
                 "shards of a plan together hold every training case it packs once)")
    if len(chunks) > 12:
        lines.append(f"  - (and {len(chunks) - 12} earlier chunks, listed in the compact state's state.json)")
    return lines


def chunks_hardware(chunks: list[dict]) -> str:
    """The machines the chunks ran on, once each in first-used order ("A and B" for the card)."""
    machines = list(dict.fromkeys(c["hardware"] for c in chunks))
    return machines[0] if len(machines) == 1 else ", ".join(machines[:-1]) + " and " + machines[-1]


def cases_seen(chunks: list[dict]) -> list[SeenCase]:
    """Every training case of every chunk, once each, in first-seen order (records without a case list,
    from before they had one, add nothing)."""
    seen: dict[str, SeenCase] = {}
    for record in chunks:
        for case in record.get("cases", []):
            seen.setdefault(case["id"], SeenCase(case["id"], case.get("region"), case.get("source", "")))
    return list(seen.values())


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def append_to_card(model: Path, lines: list[str]) -> None:
    """Add ``lines`` to a model folder's card and update its manifest's checksum (weights unchanged)."""
    if not lines:
        return
    card = model / "MODEL_CARD.md"
    card.write_text(card.read_text().rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    manifest = json.loads((model / MANIFEST).read_text())
    manifest["files"][card.name] = sha256_of(card)
    (model / MANIFEST).write_text(json.dumps(manifest, indent=2))


def pack_outputs(stage: Path, out: Path) -> list[dict]:
    """Put ``stage`` into ``out`` within the device's return limits: files of at least 1 MiB (the weight
    shards) as they are, every smaller file in ``meta.tar``. Raises before writing when it cannot fit."""
    stage, out = Path(stage), Path(out)
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    loose = [p for p in files if p.stat().st_size >= LOOSE_MIN_BYTES]
    small = [p for p in files if p not in loose]
    too_big = [str(p.relative_to(stage)) for p in loose if p.stat().st_size > MAX_RETURN_BYTES]
    deep = [str(p.relative_to(stage)) for p in loose if len(p.relative_to(stage).parts) > 3]
    count = len(loose) + (1 if small else 0)
    if too_big or deep or count > MAX_RETURN_FILES:
        raise MedDiffFMError(f"The chunk's results do not fit the device's return limits ({count} files; over "
                             f"16 MiB: {too_big or 'none'}; too deep: {deep or 'none'}). Lower export.max_shard_mib.")
    out.mkdir(parents=True, exist_ok=True)
    returned = []
    for path in loose:
        rel = path.relative_to(stage)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / rel)
        returned.append({"path": str(rel), "bytes": path.stat().st_size})
    if small:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path in small:
                tar.add(path, arcname=str(path.relative_to(stage)))
        data = buffer.getvalue()
        if len(data) > MAX_RETURN_BYTES:
            raise MedDiffFMError(f"The chunk's small files make a {len(data) / 2**20:.1f} MiB {META_TAR}; over 16 MiB.")
        (out / META_TAR).write_bytes(data)
        returned.append({"path": META_TAR, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return returned


def unpack_outputs(returned: Path, dest: Path) -> Path:
    """The reverse of :func:`pack_outputs`: rebuild the staged tree from what came back into ``dest``."""
    returned, dest = Path(returned), Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for path in sorted(returned.rglob("*")):
        if path.is_file() and path.name != META_TAR:
            target = dest / path.relative_to(returned)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    tar_path = returned / META_TAR
    if tar_path.is_file():
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if not member.isfile() or member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise MedDiffFMError(f"Unexpected entry '{member.name}' in {tar_path}.")
            tar.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(dest)
    return dest

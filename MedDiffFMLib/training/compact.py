"""The compact training state: what a later call needs to continue a run on another machine, small
enough to commit and to carry (the exact-resume checkpoint of :mod:`.checkpoint` stays for local runs).

A state folder holds::

    state.json                  format, step and sample counters, training seconds, the LR-schedule
                                position, the data position, the seed, the EMA update count, the model
                                config, a thinned loss curve, where the EMA is, and the caller's own
                                keys (``extra``: the library stores and carries them, never reads them)
    raw.safetensors             the raw (trained) weights as float16, split into safetensors files
                                (raw-00001-of-0000N.safetensors) each under ``max_shard_bytes``
    ema*.safetensors            the EMA weights, only when they are not taken from a model folder
    moments*.safetensors        AdamW's first and second moments as bfloat16 (optional)

**EMA stored once.** The shipped model folder (``Resources/Models/NAME``) already holds the EMA as
float16: that is what the export writes. So by default the state does not store it again; it names
the model and the sha256 fingerprint of its weights, and resuming reads the EMA from that folder (and
refuses a folder whose weights changed). A state can also carry its own EMA (``ema_model=None``).
The state is then raw weights + a small JSON: 2 bytes per parameter, and each saved state grows the
repository by the new model and the new raw weights (4 bytes per parameter in all).

**Raw weights from the EMA** (``raw=None``): the state stores no raw weights at all and a resumed run
restarts them from the EMA. A ControlNet fine-tune suits this: its state then costs nothing beyond
the model folder (trained with a short EMA, restarting from it loses little).

**Optimiser moments** are optional: without them a resumed run starts a fresh AdamW and re-warms the
learning rate linearly over ``rewarm_steps`` (see docs/TRAINING.md for what that costs, measured).
With them (``moments=True``) they take 4 more bytes per parameter as bfloat16 (the second moment
needs bfloat16's range: squared gradients underflow float16).

**Data position and seeds.** Training samples are a pure function of (seed, sample index) (see
:mod:`.dataset`), so the step, the seed and the cache a run trained are the whole data position;
no RNG state is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import MedDiffFMError
from ..io.durable import staged_folder
from ..models.weights import DEFAULT_MAX_SHARD_BYTES, _split_state, load_state, verify_model_folder

COMPACT_FORMAT = "meddifffm-compact-state/1"
STATE_JSON = "state.json"
MAX_HISTORY = 400  # loss-curve points kept (thinned evenly beyond that)
# The keys of state.json that the library writes; any other key is a caller's ``extra``.
OWN_KEYS = frozenset({"format", "kind", "step", "samples", "train_seconds", "seed", "lr_schedule", "data",
                      "ema_updates", "ema_decay", "model_config", "train_config", "history", "raw_files",
                      "raw_from_ema", "ema", "moment_files"})


@dataclass
class CompactState:
    """A compact state read back (tensors on the CPU, float32)."""

    path: Path
    meta: dict
    raw: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    moments: Optional[dict[str, dict[str, torch.Tensor]]] = None  # param name -> {exp_avg, exp_avg_sq}

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def extra(self) -> dict:
        """The caller's own keys saved with the state (see :attr:`CompactContent.extra`)."""
        return extra_of(self.meta)


@dataclass
class CompactContent:
    """What :func:`write_compact_state` stores (the trainer fills it in)."""

    meta: dict
    raw: Optional[dict[str, torch.Tensor]]                      # None: resume the raw weights from the EMA
    ema: Optional[dict[str, torch.Tensor]] = None               # None: taken from ``ema_model``
    ema_model: Optional[Path] = None                             # model folder holding the same EMA
    moments: Optional[dict[str, dict[str, torch.Tensor]]] = None
    extra: dict = field(default_factory=dict)  # the caller's own JSON keys, stored beside the library's


def extra_of(meta: dict) -> dict:
    """The keys of a state's ``state.json`` that a caller added (every key the library does not write)."""
    return {key: value for key, value in meta.items() if key not in OWN_KEYS}


def is_compact_state(folder: str | Path) -> bool:
    return (Path(folder) / STATE_JSON).is_file()


def _shard_names(prefix: str, count: int) -> list[str]:
    if count == 1:
        return [f"{prefix}.safetensors"]
    return [f"{prefix}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def _write_tensors(folder: Path, prefix: str, tensors: dict[str, torch.Tensor], max_bytes: int) -> list[str]:
    # safetensors stores only contiguous tensors (a channels-last run's weights and moments are not).
    shards = _split_state({key: value.contiguous() for key, value in tensors.items()}, max_bytes)
    names = _shard_names(prefix, len(shards))
    for name, shard in zip(names, shards):
        save_file(shard, str(folder / name), metadata={"format": COMPACT_FORMAT})
    return names


def _read_tensors(folder: Path, names: list[str]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name in names:
        try:
            out.update(load_file(str(folder / name)))
        except (SafetensorError, OSError, ValueError) as error:
            raise MedDiffFMError(f"The compact training state file '{folder / name}' is missing or corrupt "
                                 f"({error}). Restore the state folder from git.") from error
    return out


def write_compact_state(folder: str | Path, content: CompactContent,
                        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
    """Write a state folder atomically (a temporary folder renamed into place)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    clash = sorted(set(content.extra) & (OWN_KEYS | set(content.meta)))
    if clash:
        raise ValueError(f"a compact state's extra keys may not replace its own: {clash}")
    meta = dict(content.meta, **content.extra, format=COMPACT_FORMAT)
    with staged_folder(folder, what=f"the training state '{folder.name}'", replace=True) as tmp:
        if content.raw is None:
            meta["raw_files"], meta["raw_from_ema"] = [], True
        else:
            raw16 = {k: v.detach().to("cpu", torch.float16 if v.is_floating_point() else v.dtype).contiguous()
                     for k, v in content.raw.items()}
            meta["raw_files"], meta["raw_from_ema"] = _write_tensors(tmp, "raw", raw16, max_shard_bytes), False
        if content.ema_model is not None:
            files = verify_model_folder(content.ema_model)
            meta["ema"] = {"model": files.name, "fingerprint": files.fingerprint}
        elif content.ema is not None:
            ema16 = {k: v.detach().to("cpu", torch.float16 if v.is_floating_point() else v.dtype).contiguous()
                     for k, v in content.ema.items()}
            meta["ema"] = {"files": _write_tensors(tmp, "ema", ema16, max_shard_bytes)}
        else:
            raise ValueError("a compact state needs the EMA weights or the model folder that holds them")
        if content.moments:
            flat = {f"{kind}/{name}": m[kind].detach().to("cpu", torch.bfloat16).contiguous()
                    for name, m in content.moments.items() for kind in ("exp_avg", "exp_avg_sq")}
            meta["moment_files"] = _write_tensors(tmp, "moments", flat, max_shard_bytes)
        else:
            meta["moment_files"] = []
        meta["history"] = thin_history(meta.get("history", []))
        (tmp / STATE_JSON).write_text(json.dumps(meta, indent=1))
    return folder


def read_compact_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / STATE_JSON
    if not path.is_file():
        raise MedDiffFMError(f"'{folder}' is not a compact training state (no {STATE_JSON}).")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise MedDiffFMError(f"The compact training state '{path}' is not valid JSON ({error}).") from error
    if meta.get("format") != COMPACT_FORMAT:
        raise MedDiffFMError(f"'{path}' has format {meta.get('format')}; this MedDiffFM reads {COMPACT_FORMAT}.")
    return meta


def read_compact_state(folder: str | Path, ema_model: Optional[str | Path] = None) -> CompactState:
    """Read a state folder. ``ema_model``: the model folder holding its EMA (default: the model named in
    the state, found as a shipped/installed model)."""
    folder = Path(folder).expanduser().resolve()
    meta = read_compact_meta(folder)
    raw = {k: v.float() if v.is_floating_point() else v for k, v in _read_tensors(folder, meta["raw_files"]).items()}
    ema_entry = meta.get("ema", {})
    if "files" in ema_entry:
        ema = {k: v.float() if v.is_floating_point() else v for k, v in _read_tensors(folder, ema_entry["files"]).items()}
    else:
        if ema_model is None:
            from ..models.registry import resolve_model

            files = resolve_model(ema_entry["model"])
        else:
            files = verify_model_folder(ema_model)
        if files.fingerprint != ema_entry.get("fingerprint"):
            raise MedDiffFMError(
                f"The compact training state '{folder}' takes its EMA weights from the model '{ema_entry['model']}', "
                f"but the weights in '{files.path}' are not the ones it was saved with (fingerprint "
                f"{files.fingerprint[:12]} instead of {str(ema_entry.get('fingerprint'))[:12]}). Restore that model "
                "folder from the same commit as the state, or point --compact-ema-model at the right folder."
            )
        ema = load_state(files)
    moments = None
    if meta.get("moment_files"):
        flat = _read_tensors(folder, meta["moment_files"])
        moments = {}
        for key, value in flat.items():
            kind, name = key.split("/", 1)
            moments.setdefault(name, {})[kind] = value.float()
    if meta.get("raw_from_ema"):
        raw = {k: v.clone() for k, v in ema.items()}
    return CompactState(folder, meta, raw, ema, moments)


def thin_history(history: list[dict], limit: int = MAX_HISTORY) -> list[dict]:
    """Keep at most ``limit`` points of a loss curve: evenly spaced, always the first and the last."""
    if len(history) <= limit:
        return list(history)
    picks = sorted({round(i * (len(history) - 1) / (limit - 1)) for i in range(limit)})
    return [history[i] for i in picks]


def state_bytes(folder: str | Path, with_ema_model: bool = True) -> int:
    """Bytes of a state folder, plus the weight files of the model holding its EMA when it has one."""
    folder = Path(folder)
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    meta = read_compact_meta(folder)
    if with_ema_model and "model" in meta.get("ema", {}):
        from ..models.registry import resolve_model

        files = resolve_model(meta["ema"]["model"])
        total += sum((files.path / f).stat().st_size for f in files.files if f.endswith(".safetensors"))
    return total

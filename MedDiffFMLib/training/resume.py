"""Where a run continues from: an exact checkpoint (``checkpoint``: weights, EMA, optimiser, LR
schedule and RNG, bit for bit) or a compact state (``compact``: the small form that can be committed
and carried to another machine), read into a :class:`ResumePoint` that the trainer applies. Both
refuse a state of another kind of run or another architecture with the same check.

This module knows nothing of the trainer: it is given what the run is (:class:`RunIdentity`) and
returns plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import MedDiffFMError
from .checkpoint import load_checkpoint
from .compact import CompactState
from .run_state import RunState


def jsonable(value):
    """``value`` with paths as strings and tuples as lists (what JSON and a checkpoint keep)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class RunIdentity:
    """What a saved state must match to continue this run: the kind of network trained and its config."""

    kind: str            # unet | controlnet
    model_config: dict   # ModelConfig.to_dict()
    model_name: str


@dataclass
class ResumePoint:
    """A saved run read back: its counters (:class:`RunState`) and the tensors the trainer loads."""

    state: RunState
    weights: dict[str, torch.Tensor]           # the trained module's state dict
    ema: dict                                  # EMA.state_dict() form: decay, updates, shadow
    optimizer: Optional[dict] = None           # AdamW's whole state dict (exact checkpoint)
    lr_scheduler: Optional[dict] = None        # the LR scheduler's state dict (exact checkpoint)
    moments: Optional[dict[str, dict[str, torch.Tensor]]] = None  # param name -> {exp_avg, exp_avg_sq} (compact)
    rng: Optional[dict] = None                 # RNG states (exact checkpoint)


def check_same_run(run: RunIdentity, where: str, kind: Optional[str], model_config: Optional[dict]) -> None:
    """Refuse a saved state of another kind of run or another architecture than ``run``."""
    if kind != run.kind:
        raise MedDiffFMError(f"{where} is from a {kind} run, not {run.kind}.")
    if jsonable(model_config) != jsonable(run.model_config):
        name = (model_config or {}).get("name")
        raise MedDiffFMError(f"{where} was trained with another model config ('{name}' vs "
                             f"'{run.model_name}'); use a new run folder or state for a new architecture.")


def resume_from_checkpoint(run: RunIdentity, path: Path) -> ResumePoint:
    """Continue exactly where the checkpoint ``path`` stopped."""
    saved = load_checkpoint(path)
    check_same_run(run, f"The checkpoint '{path}'", saved.get("kind"), saved.get("model_config"))
    state = RunState(step=int(saved["step"]), train_seconds=float(saved.get("train_seconds", 0.0)),
                     history=list(saved.get("history", [])), resumed_from=path)
    return ResumePoint(state, weights=saved["model"], ema=saved["ema"], optimizer=saved["optimizer"],
                       lr_scheduler=saved["lr_scheduler"], rng=saved["rng"])


def resume_from_compact(run: RunIdentity, saved: CompactState, ema_decay: float) -> ResumePoint:
    """Continue from a compact state: weights, EMA, counters and the LR position; the AdamW moments
    when the state has them, else a fresh optimiser (with the config's LR re-warm-up from its step)."""
    meta = saved.meta
    check_same_run(run, f"The compact training state '{saved.path}'", meta.get("kind"), meta.get("model_config"))
    state = RunState(step=saved.step, train_seconds=float(meta.get("train_seconds", 0.0)),
                     history=list(meta.get("history", [])), resumed_from=saved.path, extra=saved.extra,
                     rewarm_from=None if saved.moments else saved.step)
    ema = {"decay": ema_decay, "updates": int(meta.get("ema_updates", 0)), "shadow": saved.ema}
    return ResumePoint(state, weights=saved.raw, ema=ema, moments=saved.moments or None)

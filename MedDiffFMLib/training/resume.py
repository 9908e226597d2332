"""How a :class:`~.trainer.Trainer` continues a run: from its exact checkpoint (``checkpoint``:
weights, EMA, optimiser, LR schedule and RNG, bit for bit) or from a compact state (``compact``:
the small form that travels with the repository between short GPU leases). Both refuse a state of
another kind of run or another architecture with the same check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from ..errors import MedDiffFMError
from .checkpoint import load_checkpoint, set_rng_state
from .compact import CompactContent, CompactState

if TYPE_CHECKING:
    from .trainer import Trainer


def jsonable(value):
    """``value`` with paths as strings and tuples as lists (what JSON and a checkpoint keep)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _check_same_run(trainer: "Trainer", where: str, kind: Optional[str], model_config: Optional[dict]) -> None:
    if kind != trainer.objective.kind:
        raise MedDiffFMError(f"{where} is from a {kind} run, not {trainer.objective.kind}.")
    if jsonable(model_config) != jsonable(trainer.model_config.to_dict()):
        name = (model_config or {}).get("name")
        raise MedDiffFMError(f"{where} was trained with another model config ('{name}' vs "
                             f"'{trainer.model_config.name}'); use a new run folder or state for a new architecture.")


def _optimised_names(trainer: "Trainer") -> list[str]:
    """Names of the optimised parameters, in the optimiser's index order."""
    return [n for n, p in trainer.trainable.named_parameters() if p.requires_grad]


def resume_from_checkpoint(trainer: "Trainer", path: Path) -> None:
    """Continue exactly where the checkpoint ``path`` stopped."""
    state = load_checkpoint(path)
    _check_same_run(trainer, f"The checkpoint '{path}'", state.get("kind"), state.get("model_config"))
    trainer.trainable.load_state_dict(state["model"])
    trainer.ema.load_state_dict(state["ema"], trainer.device)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.lr_scheduler.load_state_dict(state["lr_scheduler"])
    trainer.step = int(state["step"])
    trainer.train_seconds = float(state.get("train_seconds", 0.0))
    trainer.history = list(state.get("history", []))
    set_rng_state(state["rng"])
    trainer.resumed_from = path


def resume_from_compact(trainer: "Trainer", state: CompactState) -> None:
    """Continue from a compact state: weights, EMA, counters and the LR position; the AdamW moments
    when the state has them, else a fresh optimiser (with the config's LR re-warm-up)."""
    meta = state.meta
    _check_same_run(trainer, f"The compact training state '{state.path}'", meta.get("kind"), meta.get("model_config"))
    trainer.trainable.load_state_dict(state.raw)
    trainer.ema.load_state_dict({"decay": trainer.config.ema_decay, "updates": int(meta.get("ema_updates", 0)),
                                 "shadow": state.ema}, trainer.device)
    trainer.step = state.step
    trainer.train_seconds = float(meta.get("train_seconds", 0.0))
    trainer.history = list(meta.get("history", []))
    trainer.compact_meta = meta
    if state.moments:
        opt_state = trainer.optimizer.state_dict()
        opt_state["state"] = {
            index: {"step": torch.tensor(float(trainer.step)), "exp_avg": state.moments[name]["exp_avg"],
                    "exp_avg_sq": state.moments[name]["exp_avg_sq"]}
            for index, name in enumerate(_optimised_names(trainer))
        }
        trainer.optimizer.load_state_dict(opt_state)
    else:
        trainer._rewarm_from = trainer.step
    # The LR schedule continues at the state's step (with the re-warm-up when the moments are new).
    trainer.lr_scheduler.last_epoch = trainer.step
    for group, base in zip(trainer.optimizer.param_groups, trainer.lr_scheduler.base_lrs):
        group["lr"] = base * trainer._lr_factor(trainer.step)
    trainer.lr_scheduler._last_lr = [group["lr"] for group in trainer.optimizer.param_groups]  # get_last_lr()
    trainer.resumed_from = state.path


def compact_content(trainer: "Trainer", *, ema_model: Optional[str | Path] = None, moments: bool = False,
                    chunks: Optional[list] = None, data: Optional[dict] = None,
                    raw_weights: bool = True) -> CompactContent:
    """What :func:`~.compact.write_compact_state` writes for ``trainer``'s run now. ``ema_model``: a
    model folder exported from the current EMA, named instead of storing the EMA again.
    ``raw_weights=False``: no raw weights; a resumed run restarts them from the EMA."""
    cfg = trainer.config
    meta = {
        "kind": trainer.objective.kind,
        "step": trainer.step,
        "samples": trainer.samples_seen,
        "train_seconds": trainer.train_seconds,
        "seed": cfg.seed,
        "lr_schedule": {"step": trainer.step, "lr": trainer.lr_scheduler.get_last_lr()[0], "base_lr": cfg.lr,
                        "schedule": cfg.lr_schedule, "warmup_steps": cfg.warmup_steps,
                        "max_steps": cfg.max_steps, "min_lr_ratio": cfg.min_lr_ratio},
        "data": {"next_micro_step": trainer.step * cfg.grad_accum, "global_batch": trainer.global_batch,
                 "cache": str(trainer.cache.path.name), **(data or {})},
        "ema_updates": trainer.ema.updates,
        "ema_decay": trainer.ema.decay,
        "model_config": trainer.model_config.to_dict(),
        "train_config": jsonable(cfg.to_dict()),
        "history": trainer.history,
        "chunks": list(chunks if chunks is not None else getattr(trainer, "compact_meta", {}).get("chunks", [])),
    }
    moment_tensors = None
    if moments:
        names = _optimised_names(trainer)
        moment_tensors = {names[i]: {"exp_avg": v["exp_avg"], "exp_avg_sq": v["exp_avg_sq"]}
                          for i, v in trainer.optimizer.state_dict()["state"].items()}
    raw = {k: v.detach().cpu() for k, v in trainer.trainable.state_dict().items()} if raw_weights else None
    return CompactContent(
        meta=meta, raw=raw,
        ema=None if ema_model else trainer.ema.state_dict()["shadow"], ema_model=Path(ema_model) if ema_model else None,
        moments=moment_tensors,
    )

"""Where a training run stands (:class:`RunState`) and the learning-rate factor of a step (:func:`lr_factor`).

The trainer holds one RunState and updates it as it steps; a resume (see ``resume``) builds one from a
checkpoint or a compact state and the trainer applies it. Neither module needs the other's internals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .config import TrainConfig


@dataclass
class RunState:
    """The counters of a run that a resume restores (the weights, EMA and optimiser live in their modules)."""

    step: int = 0                          # optimiser steps taken
    train_seconds: float = 0.0             # seconds spent in training steps, over every call
    history: list[dict] = field(default_factory=list)  # logged {step, loss, val_loss} points
    rewarm_from: Optional[int] = None      # step at which a fresh AdamW began its re-warm-up (compact resume)
    resumed_from: Optional[Path] = None    # the checkpoint or compact state this call continued from
    extra: dict = field(default_factory=dict)  # a caller's own keys of a compact state, carried to the next one


def lr_factor(cfg: TrainConfig, step: int, rewarm_from: Optional[int] = None) -> float:
    """The learning rate of ``step`` as a fraction of ``cfg.lr``: linear warm-up over ``warmup_steps``, then
    constant or cosine down to ``min_lr_ratio`` at ``max_steps``; after a compact resume without optimiser
    moments (``rewarm_from`` set), also a linear re-warm-up over ``rewarm_steps`` for the fresh AdamW."""
    warm = max(0, int(cfg.warmup_steps))
    rewarm = 1.0
    if rewarm_from is not None and cfg.rewarm_steps > 0:
        rewarm = min(1.0, (step - rewarm_from + 1) / cfg.rewarm_steps)
    if warm and step < warm:
        return rewarm * (step + 1) / warm
    if cfg.lr_schedule == "cosine":
        span = max(1, cfg.max_steps - warm)
        progress = min(1.0, (step - warm) / span)
        return rewarm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    return rewarm

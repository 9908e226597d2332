"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint holds the trained weights, the EMA weights, the optimiser and LR-scheduler states, the
step and sample counters (the data position: samples are a function of their index), the RNG
states of python, numpy and torch (CPU and CUDA), the training time so far, and the config.
Files are ``RUN_DIR/checkpoints/step-00001234.pt``, written to a temporary file and renamed, so a
run killed while saving keeps its previous checkpoint.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..io.durable import atomic_file

from ..errors import MedDiffFMError

CHECKPOINT_FORMAT = "meddifffm-checkpoint/1"
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, ValueError):  # another GPU count than when saved
            pass


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(run_dir: Path, step: int, payload: dict, keep: int = 2) -> Path:
    """Write ``payload`` as the checkpoint of ``step`` atomically; keep the newest ``keep``."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"step-{int(step):08d}.pt"
    payload = dict(payload, format=CHECKPOINT_FORMAT, step=int(step))
    atomic_file(target, lambda tmp: torch.save(payload, tmp), what=f"the checkpoint '{target.name}'")
    for _, old in list_checkpoints(run_dir)[: -max(1, keep)]:
        old.unlink(missing_ok=True)
    return target


def load_checkpoint(path: Path) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise MedDiffFMError(f"Cannot read the checkpoint '{path}' ({type(error).__name__}: {error}). "
                             "Delete it to resume from the previous one.") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise MedDiffFMError(f"'{path}' is not a MedDiffFM training checkpoint.")
    return payload

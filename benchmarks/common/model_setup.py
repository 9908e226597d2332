"""The model a benchmark tests: the one named on the command line, the registry's default, or a random
model of a named config (written to a temporary folder, removed at exit), and the engine that runs it.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass
class BenchModel:
    """The model a benchmark runs: ``ref`` (a folder, for ``model=``) or None when there is none."""

    ref: Optional[str]
    name: str = ""
    config: str = ""
    trained: Optional[bool] = None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.ref is not None

    def describe(self) -> str:
        if not self.available:
            return f"none ({self.reason})"
        state = "trained" if self.trained else "UNTRAINED (random weights: quality figures are meaningless)"
        return f"{self.name} (config '{self.config}', {state}) at {self.ref}"


def _is_trained(files) -> bool:
    card = (files.card or "").lower()
    if "randomly initialised" in card or "randomly initialized" in card or "has not been trained" in card:
        return False
    extra = files.extra or {}
    if extra.get("trained") is False or extra.get("untrained") is True:
        return False
    return True


_TMP_DIRS: list[str] = []


def temporary_folder(prefix: str) -> Path:
    """A new temporary folder, removed when the process exits."""
    path = tempfile.mkdtemp(prefix=prefix)
    _TMP_DIRS.append(path)
    return Path(path)


@atexit.register
def _cleanup_tmp() -> None:
    for path in _TMP_DIRS:
        shutil.rmtree(path, ignore_errors=True)


def redraw_zero_weights(module, gain: float = 1.0) -> int:
    """Give the all-zero weight tensors of a fresh network random values (normal, std gain/sqrt(fan_in)).

    MONAI zero-initialises the U-Net's output convolution, the attention output projections and
    the ControlNet's zero convolutions, so a fresh model predicts exactly 0 and every path (naive,
    batched, sdpa...) agrees trivially. Redrawn, the random model's outputs are non-trivial and the
    speed benchmark's output-equality checks mean something. Returns the number of tensors redrawn.
    """
    import torch

    count = 0
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2 and not bool(param.any()):
                fan_in = param[0].numel()
                param.normal_(0.0, gain / max(fan_in, 1) ** 0.5)
                count += 1
    return count


def make_random_model(config: str, controlnet: Optional[str] = None, seed: int = 0) -> Path:
    """A randomly initialised model folder (like ``meddifffm init-model``) in a temporary folder;
    with ``controlnet`` ('superres' or 'lesion') a ControlNet beside its random base."""
    import torch

    from MedDiffFMLib.models.config import ControlNetConfig, named_config
    from MedDiffFMLib.models.network import MedDiffFMControlNet, MedDiffFMUNet
    from MedDiffFMLib.models.weights import save_model

    root = temporary_folder("meddifffm-bench-")
    torch.manual_seed(seed)
    cfg = named_config(config)
    base_name = f"random-{Path(config).stem}"
    card = (f"# {base_name}\n\nRandomly initialised MedDiffFM model (config '{config}', seed {seed}; zero-initialised "
            "layers redrawn by the benchmarks); not trained.\n")
    unet = MedDiffFMUNet(cfg)
    redraw_zero_weights(unet)
    base = save_model(unet, root / base_name, name=base_name, card=card)
    if controlnet is None:
        return base.path
    control = ControlNetConfig(task=controlnet, condition_channels=1, base_model=base.name, base_sha256=base.fingerprint)
    module = MedDiffFMControlNet(cfg, control)
    module.initialise_from(unet)
    redraw_zero_weights(module, gain=0.1)
    name = f"{base_name}-{controlnet}"
    files = save_model(module, root / name, name=name, card=card.replace(base_name, name, 1))
    return files.path


def resolve_bench_model(args: argparse.Namespace, role: str = "base") -> BenchModel:
    """``--model``, else a random ``--config`` model, else the registry's default for ``role``."""
    if args.model:
        return bench_model(args.model, role)
    if args.config:
        from MedDiffFMLib.errors import MedDiffFMError

        try:
            path = make_random_model(args.config, controlnet=None if role == "base" else role)
        except MedDiffFMError as error:
            return BenchModel(None, reason=f"no {role} model: {str(error).split('. ')[0]}")
        return bench_model(str(path), role)
    return bench_model(None, role)


def bench_model(ref: Optional[str], role: str = "base") -> BenchModel:
    """The model at ``ref`` (a folder or name; None: the registry's default for ``role``), or an
    unavailable :class:`BenchModel` saying why. A ControlNet counts as trained only when its base does."""
    from MedDiffFMLib.errors import MedDiffFMError
    from MedDiffFMLib.models.loading import find_base
    from MedDiffFMLib.models.registry import resolve_model

    try:
        files = resolve_model(ref, role)
    except MedDiffFMError as error:
        first = str(error).split(". ")[0]
        return BenchModel(None, reason=f"no {role} model: {first}. Pass --model PATH or --config default")
    trained = _is_trained(files)
    if files.kind == "controlnet":
        try:
            trained = trained and _is_trained(find_base(files))
        except MedDiffFMError:
            pass
    return BenchModel(str(files.path), files.name, files.model_config.name, trained)


def controlnet_base(model: BenchModel) -> BenchModel:
    """The base model a ControlNet ``model`` runs on, found the way the library finds it (a sibling
    folder named by its config, else the registry, with the base's sha256 checked); unavailable,
    with the library's reason, when there is none."""
    from MedDiffFMLib.errors import MedDiffFMError
    from MedDiffFMLib.models.loading import find_base
    from MedDiffFMLib.models.registry import resolve_model

    if not model.available:
        return BenchModel(None, reason=model.reason)
    try:
        files = resolve_model(model.ref)
        if files.kind != "controlnet":
            return model
        base = find_base(files)
    except MedDiffFMError as error:
        return BenchModel(None, reason=f"no base for {model.name}: {str(error).split('. ')[0]}")
    return BenchModel(str(base.path), base.name, base.model_config.name, _is_trained(base))


def training_status(model: Optional[BenchModel], case: str) -> str:
    """Whether ``case`` was held out from the model's training, from its model card: 'held out'
    when the card's "validation cases: N (a, b, ...)" lists it, 'seen in training' when the card
    says the model trained on the shared CT (shared/data/ct) and does not list it, else 'unknown'."""
    import re

    if model is None or not model.available:
        return "–"
    from MedDiffFMLib.models.registry import resolve_model

    try:
        card = resolve_model(model.ref).card or ""
    except Exception:  # noqa: BLE001 - a label, not a check
        return "unknown"
    if card.lower().startswith(f"# {model.name.lower()}") and "randomly initialised" in card.lower():
        return "untrained"
    held = re.search(r"validation cases:\s*\d+\s*\(([^)]*)\)", card, flags=re.IGNORECASE)
    names = {n.strip() for n in held.group(1).split(",")} if held else set()
    if case in names:
        return "held out"
    if "shared/data/ct" in card or "shared real ct" in card.lower():
        return "seen in training"
    return "unknown"


def make_engine(model: BenchModel, device: str, role: str = "base", **options):
    """An :class:`~MedDiffFMLib.tasks.Engine` for ``model`` (loaded once, reused over cases)."""
    from MedDiffFMLib.engine import Engine, EngineOptions

    return Engine(EngineOptions(model=model.ref, device=device, **options), role=role,
                  expect_task=None if role == "base" else role)



"""Export a run's EMA weights to the shipped weights format, with a generated model card.

The trainer describes its run in a :class:`RunReport` (plain data): this module knows nothing of the
trainer, so the trainer imports it and not the other way round.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from pathlib import Path
from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence

import torch

from ..models.conditions import describe_conditions
from ..models.config import ControlNetConfig, ModelConfig
from ..models.network import MedDiffFMControlNet, MedDiffFMUNet
from ..models.weights import save_model
from .cache import CacheCase
from .config import TrainConfig
from .ema import EMA


@dataclass
class TrainResult:
    """What a call to ``Trainer.run`` did."""

    step: int
    max_steps: int
    stopped_by: str                       # finished | budget | cancelled
    checkpoint: Optional[Path] = None
    export: Optional[Path] = None
    train_loss: Optional[float] = None
    val_loss: Optional[float] = None
    losses: list = field(default_factory=list)  # (step, loss) of this call


class CaseSummary(Protocol):
    """What the model card reads of a training case (a CacheCase, or any record with these fields)."""

    id: str
    region: Optional[str]
    source: str


@dataclass
class RunReport:
    """What the export and the model card need to know about a run (the trainer fills it in)."""

    config: TrainConfig
    model_config: ModelConfig
    mode: str                             # train | finetune
    kind: str                             # unet | controlnet
    control: Optional[ControlNetConfig]
    base_name: Optional[str]              # the frozen base model of a ControlNet
    condition: Optional[str]              # the condition builder's description
    cache_index: dict
    cache_spacing: tuple
    train_cases: Sequence[CaseSummary]   # every case the weights were trained on (earlier calls' too)
    val_cases: list[CacheCase]
    train_seconds: float
    hardware: str
    world_size: int
    global_batch: int
    samples_seen: int
    bf16: bool
    history: list[dict]
    final_val: Optional[dict]
    ema: EMA
    run_dir: Path
    notes: list[str] = field(default_factory=list)  # extra "## Training" lines (a caller's own)
    extra: dict = field(default_factory=dict)       # extra keys for config.json's "training" entry

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def hardware_description(device: torch.device, world_size: int) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{world_size} x {name}" if world_size > 1 else name
    cpu = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    return (f"{world_size} process(es) on CPU ({cpu}; {cores} cores on the machine, "
            f"{torch.get_num_threads()} torch thread(s) per process)")


def _fmt(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# Every exported card says it (issue 15: outputs are synthetic or altered images).
INTENDED_USE = (
    "Every output of this model is a synthetic or altered image: denoised, reconstructed, super-resolved, "
    "inpainted, generated or with a generated lesion. It is for research and development, not for diagnosis, "
    "treatment decisions or any clinical use, and has no regulatory clearance. Results written by the Slicer "
    "module carry names that say so (for example \"CT with generated lesion\")."
)


def model_card(run: RunReport, result: TrainResult, name: str) -> str:
    cfg = run.config
    mc = run.model_config
    train_cases = run.train_cases
    val_cases = run.val_cases
    regions = Counter(c.region or "unknown" for c in train_cases)
    sources = Counter(c.source for c in [*train_cases, *val_cases] if c.source)
    hours = run.train_seconds / 3600.0
    hardware = run.hardware
    what = ("base MedDiff-FM U-Net" if run.kind == "unet"
            else f"'{run.control.task}' ControlNet on the frozen base model '{run.base_name}'")
    finished = result.step >= cfg.max_steps
    lines = [f"# {name}", ""]
    lines.append(
        f"A {what} (config '{mc.name}', {mc.spacing_mm[0]:g} mm grid, {mc.patch_size[0]}^3 patches) trained by "
        f"`meddifffm {run.mode}` for {result.step} optimiser steps ({run.samples_seen} samples"
        f"{'' if finished else f', stopped by the time budget before the planned {cfg.max_steps}'}) in "
        f"{hours * 60:.0f} minutes on {hardware}, on {len(train_cases)} CT volumes. Final training loss "
        f"{_fmt(result.train_loss)}, validation loss {_fmt(result.val_loss)} (L1 on the noise)."
    )
    lines.append("")
    if cfg.export.summary:
        lines += [cfg.export.summary.strip(), ""]
    lines += ["## Intended use: research only", "", INTENDED_USE, ""]
    lines += ["## Conditions", "", *describe_conditions(mc, run.control), ""]
    lines += ["## Training data", ""]
    if cfg.data_description:
        lines += [cfg.data_description.strip(), ""]
    lines.append(f"- Cache: `{run.cache_index.get('manifest_name', '')}` prepared at "
                 f"{', '.join(f'{s:g}' for s in run.cache_spacing)} mm (z, y, x), {run.cache_index.get('dtype', 'int16')} storage.")
    lines.append(f"- Training cases: {len(train_cases)} ({', '.join(f'{k}: {v}' for k, v in sorted(regions.items()))}); "
                 f"validation cases: {len(val_cases)} ({', '.join(c.id for c in val_cases) or 'none'}).")
    if run.condition:
        lines.append(f"- Condition: {run.condition}.")
    if run.control is not None and run.control.min_timestep:
        lines.append(f"- Applied and trained at time steps t >= {run.control.min_timestep} only (`min_timestep`); below "
                     "it the base model predicts alone, so the validation losses there are the base's.")
    lines.append("- Sources and licences:")
    for source, count in sorted(sources.items()):
        lines.append(f"  - {source} ({count} volume{'s' if count != 1 else ''})")
    lines += ["", "## Training", ""]
    lines += [
        f"- Objective: cosine DDPM, T = {mc.num_train_timesteps}, L1 loss on the predicted noise"
        + (f" (lesion voxels weigh {1 + cfg.lesion_loss_weight:g}x)" if cfg.lesion_loss_weight > 0 else "")
        + "; multi-level "
        f"integrated sampling (image / double / patch chances {list(cfg.levels)}); whole-image sinusoidal position "
        f"embedding ({mc.position_frequencies} frequencies); region{' and anatomy' if mc.anatomy_channels else ''} "
        f"condition dropout {mc.condition_dropout:g}; left-right flip {cfg.flip_lr:g}, intensity jitter "
        f"+-{cfg.intensity_scale:g} x, +-{cfg.intensity_shift:g}.",
        f"- Optimiser: AdamW lr {cfg.lr:g} (warm-up {cfg.warmup_steps} steps, {cfg.lr_schedule}), weight decay "
        f"{cfg.weight_decay:g}, gradient clip {cfg.grad_clip:g}; EMA decay {cfg.ema_decay:g} (exported weights are the EMA).",
        f"- Batch: {cfg.batch_size} per process x {cfg.grad_accum} accumulation x {run.world_size} process(es) "
        f"= {run.global_batch} samples per step.",
        f"- Steps: {result.step} of {cfg.max_steps} planned; samples seen: {run.samples_seen}.",
        f"- Training time: {hours:.2f} h ({hours * 60:.1f} min) of optimisation on {hardware}; precision: "
        f"{'bf16 autocast' if run.bf16 else 'fp32'}.",
        *run.notes,
        f"- Exported {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, weights stored as {cfg.export.storage_dtype}.",
        "",
        "## Results",
        "",
        f"- Final training loss (mean of the last steps): {_fmt(result.train_loss)}.",
        f"- Validation loss (EMA weights, held-out cases, fixed crops, time steps and noise): {_fmt(result.val_loss)}.",
    ]
    final_val = run.final_val
    if final_val:
        per_t = ", ".join(f"t={t}: {v:.4f}" for t, v in final_val["per_timestep"].items())
        lines.append(f"- Validation loss per time step: {per_t}.")
    curve = [h for h in run.history if h.get("loss") is not None]
    if curve:
        picks = [curve[int(i * (len(curve) - 1) / min(7, max(len(curve) - 1, 1)))]
                 for i in range(min(8, len(curve)))]
        lines.append("- Loss curve (step: train / val): " + "; ".join(
            f"{h['step']}: {h['loss']:.4f}" + (f" / {h['val_loss']:.4f}" if h.get("val_loss") is not None else "")
            for h in picks) + ".")
    lines += [
        "",
        "## Limitations",
        "",
        "- Trained by this project on the data listed above only; the loss numbers are not image-quality metrics.",
        "- The paper's model saw 5,376 CT volumes on GPUs; compare the steps and data above before relying on it.",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps({"model": mc.to_dict(), "training": _training_settings(cfg)}, indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


def _training_settings(cfg: TrainConfig) -> dict:
    """The training config as the card lists it: a fine-tune's network comes from its base model, so the
    ``model`` field (used by ``train`` only) would name an architecture the ControlNet never had."""
    unused = {"config_path"} | ({"model"} if cfg.task else set())
    return {k: v for k, v in _plain(cfg.to_dict()).items() if k not in unused}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def export_run(run: RunReport, result: TrainResult) -> Path:
    """Write the EMA weights of ``run`` as a model folder (see ``models.weights``)."""
    cfg = run.config
    name = cfg.export.name or run.run_dir.name
    out = Path(cfg.export.dir) if cfg.export.dir else run.run_dir / "export" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    if run.kind == "controlnet":
        module = MedDiffFMControlNet(run.model_config, run.control)
    else:
        module = MedDiffFMUNet(run.model_config)
    run.ema.copy_to(module)
    card = model_card(run, result, name)
    extra = {
        "training": {
            "steps": result.step, "max_steps": cfg.max_steps, "samples": run.samples_seen,
            "train_hours": round(run.train_seconds / 3600.0, 4),
            "hardware": run.hardware,
            "train_loss": result.train_loss, "val_loss": result.val_loss,
            "cache_sources": run.cache_index.get("sources", []),
            **run.extra,
        }
    }
    files = save_model(module, out, name=name, card=card, storage_dtype=_DTYPES[cfg.export.storage_dtype],
                       max_shard_bytes=int(cfg.export.max_shard_mib * 2**20), extra=extra)
    return files.path

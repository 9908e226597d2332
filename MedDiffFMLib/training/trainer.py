"""The one training loop: pre-training and ControlNet fine-tuning differ only by their objective.

Features: AdamW with linear warm-up (constant or cosine after it), gradient accumulation, gradient
clipping, EMA weights, bf16 autocast on CUDA, DistributedDataParallel under torchrun, exact resume
(see ``checkpoint``), resume from a compact state (see ``compact``), a wall-clock budget that stops
cleanly with a checkpoint, CSV (and TensorBoard) logs (``run_log``), validation on held-out cases at fixed time
steps with fixed noise, and the final export to the shipped weights format with a generated model card.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..device import resolve_device
from ..errors import CancelledError, MedDiffFMError
from ..models.config import ControlNetConfig
from ..models.network import MedDiffFMUNet
from ..io.durable import atomic_write_text
from .cache import TrainingCache
from .checkpoint import latest_checkpoint, list_checkpoints, rng_state, save_checkpoint, set_rng_state
from .compact import CompactContent, read_compact_state, write_compact_state
from .condition_builders import condition_builder
from .config import CONTROLNET_TRAIN_KEYS, TrainConfig, TrainConfigError
from .dataset import MicroBatchDataset, SampleOptions, SampleSource, ValidationSet, micro_batches
from .distributed import DistInfo, barrier, broadcast_flag, mean_across, setup, teardown
from .ema import EMA
from .export import RunReport, TrainResult, export_run, hardware_description
from .manifest import ManifestError
from .objective import ControlNetObjective, DiffusionObjective
from .resume import ResumePoint, RunIdentity, jsonable, resume_from_checkpoint, resume_from_compact
from .run_log import RunLog
from .run_state import RunState, lr_factor


class Trainer:
    """Runs one training or fine-tuning run described by a :class:`TrainConfig`.

    Where the run stands (step, training seconds, loss history, what it resumed from) is its ``state``
    (a :class:`RunState`); ``step``, ``train_seconds`` and ``history`` read it.

    Args:
        config: the run's settings.
        mode: ``train`` (base U-Net) or ``finetune`` (ControlNet on a frozen base).
        resume: continue from the run folder's latest checkpoint (start fresh when there is none).
        resume_compact: continue from this compact state folder instead (see ``compact``); the run folder
            must hold no checkpoint.
        compact_ema_model: the model folder holding the compact state's EMA (default: the model it names).
        max_minutes: wall-clock budget of this call; stops with a checkpoint before it runs out.
        progress: ``bar`` | ``json`` | ``none``.
        export: write the model folder when the run stops.
        cancel: returns True to stop (a checkpoint is saved first).
    """

    def __init__(
        self,
        config: TrainConfig,
        mode: str = "train",
        *,
        resume: bool = False,
        resume_compact: Optional[str | Path] = None,
        compact_ema_model: Optional[str | Path] = None,
        max_minutes: Optional[float] = None,
        progress: str = "bar",
        export: bool = True,
        cancel: Optional[Callable[[], bool]] = None,
        stream=None,
    ) -> None:
        if mode not in ("train", "finetune"):
            raise ValueError("mode must be 'train' or 'finetune'")
        self.config = config
        self.mode = mode
        self.resume = resume
        self.resume_compact = Path(resume_compact) if resume_compact else None
        self.compact_ema_model = Path(compact_ema_model) if compact_ema_model else None
        if resume and self.resume_compact:
            raise MedDiffFMError("Pass either --resume (the run folder's checkpoint) or --resume-compact, not both.")
        self.state = RunState()
        self.max_minutes = max_minutes
        self.progress_mode = progress
        self.do_export = export
        self.cancel = cancel
        self.stream = stream or sys.stdout
        self.run_dir = Path(config.run_dir)
        self._setup_done = False

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        if self._setup_done:
            return
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        base_device = resolve_device(cfg.device)
        self.dist: DistInfo = setup(base_device.type)
        self.device = torch.device("cuda", self.dist.local_rank) if base_device.type == "cuda" and self.dist.enabled \
            else base_device
        if cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda"
                                       and torch.cuda.is_bf16_supported()):
            self.amp_dtype: Optional[torch.dtype] = torch.bfloat16
        else:
            self.amp_dtype = None
        self.cache = TrainingCache(cfg.cache)
        self.base_files = None
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every fresh start
        if self.mode == "finetune":
            self.objective = self._finetune_objective()
        else:
            if cfg.task:
                raise TrainConfigError("'task' is a fine-tuning setting: run `meddifffm finetune` with this config.")
            self.model_config = cfg.model_config()
            if cfg.condition_dropout is not None:
                self.model_config.condition_dropout = float(cfg.condition_dropout)
            self.objective = DiffusionObjective(self.model_config, cfg.recipe())
        self.model = self.objective.build_model().to(self.device)
        if cfg.channels_last:  # before the optimiser and the EMA, so their copies take the same layout
            self.model.to(memory_format=torch.channels_last_3d)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = bool(cfg.cudnn_benchmark)
        self.trainable = self.objective.trainable(self.model)
        self.trainable.train()
        params = [p for p in self.trainable.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.ema = EMA(self.trainable, cfg.ema_decay)
        self._load_resume_state()
        self.ddp_model: nn.Module = self.model
        if self.dist.enabled:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self._build_data()
        self._setup_done = True

    def _finetune_objective(self) -> ControlNetObjective:
        from ..models.registry import resolve_model
        from ..models.weights import build_module

        cfg = self.config
        if not cfg.task:
            raise TrainConfigError("A fine-tuning config needs 'task' (superres or lesion).")
        if not cfg.base_model:
            raise TrainConfigError("A fine-tuning config needs 'base_model' (a base model name or folder).")
        self.base_files = resolve_model(cfg.base_model)
        if self.base_files.kind != "unet":
            raise TrainConfigError(f"'base_model' {cfg.base_model} is a {self.base_files.kind}; it must be a base model.")
        base = build_module(self.base_files)
        assert isinstance(base, MedDiffFMUNet)
        self.model_config = self.base_files.model_config
        if cfg.condition_dropout is not None:
            self.model_config.condition_dropout = float(cfg.condition_dropout)
        builder = condition_builder(cfg.task, {"superres_factors": cfg.superres_factors})
        control = ControlNetConfig(task=cfg.task, condition_channels=builder.channels,
                                   base_model=self.base_files.name, base_sha256=self.base_files.fingerprint,
                                   **{k: v for k, v in cfg.controlnet.items() if k in CONTROLNET_TRAIN_KEYS})
        if control.min_timestep >= self.model_config.num_train_timesteps:
            raise TrainConfigError(f"'controlnet.min_timestep' {control.min_timestep} leaves no time step to train: "
                                   f"the base model has {self.model_config.num_train_timesteps}.")
        recipe = dataclasses.replace(cfg.recipe(), min_timestep=control.min_timestep)
        return ControlNetObjective(self.model_config, base, control, builder, recipe)

    def _lr_factor(self, step: int) -> float:
        # Read at every step: a resume may set the state's re-warm-up after the scheduler was built.
        return lr_factor(self.config, step, self.state.rewarm_from)

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def train_seconds(self) -> float:
        return self.state.train_seconds

    @property
    def history(self) -> list[dict]:
        return self.state.history

    def cases(self, split: str):
        """The cache's cases of ``split`` that this run uses (a lesion ControlNet: those with a lesion)."""
        cases = self.cache.split(split)
        builder = self.objective.builder
        if builder is not None and builder.needs_lesion:
            cases = [c for c in cases if c.lesion_voxels > 0]
        return cases

    def _build_data(self) -> None:
        cfg = self.config
        train_cases = self.cases("train")
        if not train_cases:
            what = " with a lesion mask" if self.objective.builder and self.objective.builder.needs_lesion else ""
            raise ManifestError(f"The cache '{self.cache.path}' has no training cases{what}: its 'train' split is empty.")
        options = SampleOptions(
            level_weights=tuple(cfg.levels), flip_lr=cfg.flip_lr, intensity_scale=cfg.intensity_scale,
            intensity_shift=cfg.intensity_shift, condition_dropout=self.model_config.condition_dropout,
            lesion_focus=cfg.lesion_focus, recipe=self.objective.recipe,
            region_weights=dict(cfg.region_weights) or None,
        )
        if self.dist.is_main:
            for case in self.cache.cases:
                wanted = tuple(self.model_config.window_for(case.region))
                if case.window is not None and tuple(case.window) != wanted:
                    print(f"meddifffm: warning: case '{case.id}' is cached as uint8 codes of the window {case.window}, "
                          f"but the model uses {wanted}; values outside the cached window are clipped. Prepare the "
                          "cache with this model's --config (or --dtype int16).", file=sys.stderr)
        self.train_source = SampleSource(self.cache, train_cases, self.model_config, options, cfg.seed,
                                         self.objective.builder)
        self.dataset = MicroBatchDataset(self.train_source, cfg.batch_size, self.dist.rank, self.dist.world_size)
        self.val_set: Optional[ValidationSet] = None
        val_cases = self.cases("val")
        if val_cases and self.dist.is_main:
            val_options = SampleOptions(level_weights=tuple(cfg.levels), augment=False, condition_dropout=0.0,
                                        lesion_focus=1.0, timesteps=tuple(cfg.val_timesteps))
            val_source = SampleSource(self.cache, val_cases, self.model_config, val_options, cfg.seed + 1_000_003,
                                      self.objective.builder)
            self.val_set = ValidationSet.build(val_source, cfg.val_samples_per_case, cfg.val_batch_size)

    def _load_resume_state(self) -> None:
        existing = list_checkpoints(self.run_dir)
        if existing and not self.resume:
            raise MedDiffFMError(
                f"The run folder '{self.run_dir}' already has checkpoints (latest: step {existing[-1][0]}). "
                "Pass --resume to continue it, or set another run_dir."
            )
        run = RunIdentity(self.objective.kind, self.model_config.to_dict(), self.model_config.name)
        if self.resume_compact is not None:
            saved = read_compact_state(self.resume_compact, self.compact_ema_model)
            self._apply(resume_from_compact(run, saved, self.config.ema_decay))
        elif self.resume and existing:
            path = latest_checkpoint(self.run_dir)
            assert path is not None
            self._apply(resume_from_checkpoint(run, path))

    def _optimised_names(self) -> list[str]:
        """Names of the optimised parameters, in the optimiser's index order."""
        return [n for n, p in self.trainable.named_parameters() if p.requires_grad]

    def _apply(self, point: ResumePoint) -> None:
        """Continue from ``point``: its weights, EMA and counters; the optimiser and LR schedule exactly when
        it has them, else AdamW's moments when it has those, and the LR schedule at its step."""
        self.trainable.load_state_dict(point.weights)
        self.ema.load_state_dict(point.ema, self.device)
        self.state = point.state
        if point.optimizer is not None:
            self.optimizer.load_state_dict(point.optimizer)
        elif point.moments:
            opt_state = self.optimizer.state_dict()
            opt_state["state"] = {
                index: {"step": torch.tensor(float(self.step)), "exp_avg": point.moments[name]["exp_avg"],
                        "exp_avg_sq": point.moments[name]["exp_avg_sq"]}
                for index, name in enumerate(self._optimised_names())
            }
            self.optimizer.load_state_dict(opt_state)
        if point.lr_scheduler is not None:
            self.lr_scheduler.load_state_dict(point.lr_scheduler)
        else:  # the schedule continues at the state's step (with the re-warm-up when the moments are new)
            self.lr_scheduler.last_epoch = self.step
            for group, base in zip(self.optimizer.param_groups, self.lr_scheduler.base_lrs):
                group["lr"] = base * self._lr_factor(self.step)
            self.lr_scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]  # get_last_lr()
        if point.rng is not None:
            set_rng_state(point.rng)

    def save_compact(self, folder: str | Path, *, ema_model: Optional[str | Path] = None, moments: bool = False,
                     raw_weights: bool = True, extra: Optional[dict] = None) -> Optional[Path]:
        """Write the compact state of this run (see ``compact``). ``ema_model``: a model folder exported
        from this run's current EMA, which the state then names instead of storing the EMA again;
        ``raw_weights=False`` stores no raw weights (a resumed run restarts them from the EMA);
        ``extra``: the caller's own JSON keys, stored beside the state's (they replace the same keys
        carried from the state this run resumed from)."""
        if not self.dist.is_main:
            return None
        content = self._compact_content(ema_model, moments, raw_weights, {**self.state.extra, **(extra or {})})
        return write_compact_state(folder, content, int(self.config.export.max_shard_mib * 2**20))

    def _compact_content(self, ema_model: Optional[str | Path], moments: bool, raw_weights: bool,
                         extra: dict) -> CompactContent:
        cfg = self.config
        meta = {
            "kind": self.objective.kind,
            "step": self.step,
            "samples": self.samples_seen,
            "train_seconds": self.train_seconds,
            "seed": cfg.seed,
            "lr_schedule": {"step": self.step, "lr": self.lr_scheduler.get_last_lr()[0], "base_lr": cfg.lr,
                            "schedule": cfg.lr_schedule, "warmup_steps": cfg.warmup_steps,
                            "max_steps": cfg.max_steps, "min_lr_ratio": cfg.min_lr_ratio},
            "data": {"next_micro_step": self.step * cfg.grad_accum, "global_batch": self.global_batch,
                     "cache": str(self.cache.path.name)},
            "ema_updates": self.ema.updates,
            "ema_decay": self.ema.decay,
            "model_config": self.model_config.to_dict(),
            "train_config": jsonable(cfg.to_dict()),
            "history": self.history,
        }
        moment_tensors = None
        if moments:
            names = self._optimised_names()
            moment_tensors = {names[i]: {"exp_avg": v["exp_avg"], "exp_avg_sq": v["exp_avg_sq"]}
                              for i, v in self.optimizer.state_dict()["state"].items()}
        raw = {k: v.detach().cpu() for k, v in self.trainable.state_dict().items()} if raw_weights else None
        return CompactContent(
            meta=meta, raw=raw, ema=None if ema_model else self.ema.state_dict()["shadow"],
            ema_model=Path(ema_model) if ema_model else None, moments=moment_tensors, extra=extra,
        )

    # ------------------------------------------------------------------ pieces
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def forward_backward(self, batches) -> float:
        """Accumulate the gradients of one optimiser step over ``batches`` (micro-batches); returns the loss."""
        accum = len(batches)
        total = 0.0
        for index, batch in enumerate(batches):
            sync = index == accum - 1 or not self.dist.enabled
            ctx = contextlib.nullcontext() if sync else self.ddp_model.no_sync()
            with ctx:
                per_sample = self.objective.per_sample_loss(self.ddp_model, batch, self.device, self._autocast)
                loss = per_sample.mean()
                (loss / accum).backward()
            total += float(loss.detach()) / accum
        return total

    def optimizer_step(self) -> None:
        if self.config.grad_clip and self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in self.trainable.parameters() if p.requires_grad],
                                           self.config.grad_clip)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.trainable)

    @torch.no_grad()
    def validate(self) -> Optional[dict]:
        """Mean L1 noise loss of the EMA weights on the fixed validation batches (rank 0)."""
        if self.val_set is None:
            return None
        model = self._eval_model()
        per_t: dict[int, list[float]] = {}
        values = []
        for batch in self.val_set.batches:
            losses = self.objective.per_sample_loss(model, batch, self.device, self._autocast)
            for t, value in zip(batch["timestep"].tolist(), losses.tolist()):
                per_t.setdefault(int(t), []).append(value)
                values.append(value)
        return {"loss": sum(values) / len(values),
                "per_timestep": {t: sum(v) / len(v) for t, v in sorted(per_t.items())}}

    def _eval_model(self) -> nn.Module:
        if not hasattr(self, "_eval_copy"):
            self._eval_copy = copy.deepcopy(self.model)
            self._eval_copy.eval()
        self.ema.copy_to(self.objective.trainable(self._eval_copy))
        return self._eval_copy

    def save(self) -> Optional[Path]:
        if not self.dist.is_main:
            return None
        payload = {
            "kind": self.objective.kind,
            "mode": self.mode,
            "model": {k: v.detach().cpu() for k, v in self.trainable.state_dict().items()},
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "samples": self.samples_seen,
            "rng": rng_state(),
            "train_seconds": self.train_seconds,
            "history": self.history,
            "model_config": self.model_config.to_dict(),
            "controlnet_config": self.objective.control.to_dict() if self.objective.kind == "controlnet" else None,
            "train_config": jsonable(self.config.to_dict()),
            "world_size": self.dist.world_size,
        }
        return save_checkpoint(self.run_dir, self.step, payload, self.config.keep_checkpoints)

    def report(self) -> RunReport:
        """The run described for the export and the model card."""
        kind = self.objective.kind
        return RunReport(
            config=self.config, model_config=self.model_config, mode=self.mode, kind=kind,
            control=self.objective.control if kind == "controlnet" else None,
            base_name=self.base_files.name if self.base_files is not None else None,
            condition=self.objective.builder.describe() if self.objective.builder is not None else None,
            cache_index=self.cache.index, cache_spacing=self.cache.spacing_mm,
            train_cases=self.cases("train"), val_cases=self.cases("val"), train_seconds=self.train_seconds,
            hardware=hardware_description(self.device, self.dist.world_size),
            world_size=self.dist.world_size,
            global_batch=self.global_batch, samples_seen=self.samples_seen, bf16=self.amp_dtype is not None,
            history=self.history, final_val=getattr(self, "final_val", None), ema=self.ema, run_dir=self.run_dir,
        )

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.config.grad_accum * self.dist.world_size

    @property
    def samples_seen(self) -> int:
        return self.step * self.global_batch

    # ------------------------------------------------------------------ progress
    def _emit(self, payload: dict) -> None:
        if self.dist.is_main and self.progress_mode == "json":
            self.stream.write(json.dumps(payload) + "\n")
            self.stream.flush()

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        started = time.time()
        self.setup()
        cfg = self.config
        is_main = self.dist.is_main
        if is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "train_config.json", json.dumps(jsonable(cfg.to_dict()), indent=2))
            self.run_log = RunLog(self.run_dir, self.step, self.config.tensorboard)
        budget_s = self.max_minutes * 60.0 if self.max_minutes is not None else None
        stream = micro_batches(self.dataset, self.step * cfg.grad_accum, cfg.num_workers)
        bar = None
        if is_main and self.progress_mode == "bar":
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc=self.mode, unit="step", file=sys.stderr,
                       dynamic_ncols=True)
        step_time = None
        last_save = time.time()
        last_saved_step = self.step
        stopped_by = "finished"
        losses: list[tuple[int, float]] = []
        window: list[float] = []
        val = None
        checkpoint = None
        save_cost = 0.0
        val_cost = 0.0
        try:
            while self.step < cfg.max_steps:
                if self.cancel is not None and broadcast_flag(self.dist, bool(self.cancel()), self.device):
                    stopped_by = "cancelled"
                    break
                t0 = time.time()
                batches = [next(stream) for _ in range(cfg.grad_accum)]
                loss = self.forward_backward(batches)
                self.optimizer_step()
                self.state.step += 1
                loss = mean_across(self.dist, loss, self.device)
                dt = time.time() - t0
                self.state.train_seconds += dt
                step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
                losses.append((self.step, loss))
                window.append(loss)
                speed = self.global_batch / max(step_time, 1e-9)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{speed:.2f}", refresh=False)
                    bar.update(1)
                val = None
                if cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.max_steps:
                    v0 = time.time()
                    val = self.validate() if is_main else None
                    barrier(self.dist)
                    val_cost = time.time() - v0
                if is_main and (self.step % cfg.log_every == 0 or val is not None or self.step == cfg.max_steps):
                    mean_loss = sum(window) / len(window)
                    window = []
                    row = {"step": self.step, "samples": self.samples_seen, "loss": f"{mean_loss:.6f}",
                           "lr": f"{self.lr_scheduler.get_last_lr()[0]:.3e}", "samples_per_s": f"{speed:.3f}",
                           "elapsed_s": f"{time.time() - started:.1f}",
                           "train_hours": f"{self.train_seconds / 3600:.4f}",
                           "val_loss": f"{val['loss']:.6f}" if val else ""}
                    self.run_log.write(row)
                    self.history.append({"step": self.step, "loss": mean_loss, "val_loss": val["loss"] if val else None})
                    eta = (cfg.max_steps - self.step) * step_time
                    self._emit({"stage": "training", "step": self.step, "total": cfg.max_steps, "loss": round(mean_loss, 6),
                                "lr": self.lr_scheduler.get_last_lr()[0], "samples_per_s": round(speed, 3),
                                "eta_s": round(eta, 1), **({"val_loss": round(val["loss"], 6)} if val else {})})
                due = (self.step % cfg.checkpoint_every == 0
                       or (time.time() - last_save) > cfg.checkpoint_minutes * 60.0)
                due = broadcast_flag(self.dist, due, self.device)
                if due and self.step < cfg.max_steps:
                    s0 = time.time()
                    checkpoint = self.save() or checkpoint
                    barrier(self.dist)
                    save_cost = time.time() - s0
                    last_save, last_saved_step = time.time(), self.step
                if budget_s is not None:
                    # Stop while there is still time for one more step's worth, a checkpoint and the export.
                    reserve = 2.0 * step_time + 2.0 * save_cost + 1.5 * val_cost + 5.0
                    stop = (time.time() - started) + reserve > budget_s
                    if broadcast_flag(self.dist, stop, self.device) and self.step < cfg.max_steps:
                        stopped_by = "budget"
                        break
        finally:
            if bar is not None:
                bar.close()
        if self.step != last_saved_step or checkpoint is None:
            checkpoint = self.save() or checkpoint
        barrier(self.dist)
        result = TrainResult(self.step, cfg.max_steps, stopped_by, checkpoint, losses=losses)
        result.train_loss = _recent_loss(self.history, losses)
        if is_main:
            final_val = self.validate()
            if final_val is not None:
                result.val_loss = final_val["loss"]
                self.final_val = final_val
                self.run_log.write({"step": self.step, "samples": self.samples_seen,
                                    "val_loss": f"{final_val['loss']:.6f}", "elapsed_s": f"{time.time() - started:.1f}",
                                    "train_hours": f"{self.train_seconds / 3600:.4f}"})
                if not self.history or self.history[-1]["step"] != self.step:
                    self.history.append({"step": self.step, "loss": result.train_loss, "val_loss": final_val["loss"]})
                else:
                    self.history[-1]["val_loss"] = final_val["loss"]
                self._emit({"stage": "validation", "step": self.step, "total": cfg.max_steps,
                            "val_loss": round(final_val["loss"], 6),
                            "per_timestep": {str(k): round(v, 6) for k, v in final_val["per_timestep"].items()}})
            if self.do_export and stopped_by != "cancelled":
                result.export = export_run(self.report(), result)
            self.run_log.close()
            summary = {"step": self.step, "max_steps": cfg.max_steps, "stopped_by": stopped_by,
                       "train_loss": result.train_loss, "val_loss": result.val_loss,
                       "checkpoint": str(checkpoint) if checkpoint else None,
                       "export": str(result.export) if result.export else None,
                       "train_hours": self.train_seconds / 3600}
            atomic_write_text(self.run_dir / "last_run.json", json.dumps(summary, indent=2))
        teardown(self.dist)
        if stopped_by == "cancelled":
            raise CancelledError(f"Training stopped at step {self.step}; a checkpoint was saved in {self.run_dir}. "
                                 "Continue with --resume.")
        return result


def _recent_loss(history: list[dict], losses: list) -> Optional[float]:
    if losses:
        tail = [v for _, v in losses[-50:]]
        return sum(tail) / len(tail)
    values = [h["loss"] for h in history[-5:] if h.get("loss") is not None]
    return sum(values) / len(values) if values else None


def export_only(config: TrainConfig, mode: str = "train") -> Path:
    """Export the EMA weights of a run's latest checkpoint (no training)."""
    trainer = Trainer(config, mode, resume=True, progress="none")
    trainer.setup()
    if latest_checkpoint(trainer.run_dir) is None:
        raise MedDiffFMError(f"The run folder '{trainer.run_dir}' has no checkpoint to export.")
    val = trainer.validate()
    trainer.final_val = val
    result = TrainResult(trainer.step, config.max_steps, "export-only",
                         latest_checkpoint(trainer.run_dir), train_loss=_recent_loss(trainer.history, []),
                         val_loss=val["loss"] if val else None)
    path = export_run(trainer.report(), result)
    teardown(trainer.dist)
    return path

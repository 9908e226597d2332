"""Training configuration: one JSON file per run (YAML is not a dependency).

Relative paths in the file (``cache``, ``run_dir``, ``export.dir``, ``base_model`` when it is a
path) are resolved against the folder of the JSON file. See ``docs/TRAINING.md`` for every key;
``configs/*.json`` are worked examples.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import InputError
from ..models.config import CONTROLNET_RUNTIME_SETTINGS, ModelConfig, named_config
from ..models.weights import DEFAULT_MAX_SHARD_BYTES
from .recipe import Recipe
from .region_sampling import region_weight_problems

# What a fine-tuning config's 'controlnet' section may set (fields of models.config.ControlNetConfig).
CONTROLNET_TRAIN_KEYS = ("embedding_channels", *CONTROLNET_RUNTIME_SETTINGS)


class TrainConfigError(InputError):
    """The training config file is unusable."""


@dataclass
class ExportOptions:
    dir: Optional[str] = None           # model folder to write at the end (None: RUN_DIR/export/NAME)
    name: Optional[str] = None          # model name (default: the run folder's name)
    storage_dtype: str = "float16"      # float32 | float16 | bfloat16
    max_shard_mib: float = DEFAULT_MAX_SHARD_BYTES / 2**20  # every safetensors file stays below this
    summary: str = ""                   # first paragraph of the model card (after the generated one)


@dataclass
class TrainConfig:
    """Every setting of a training or fine-tuning run (JSON keys = attribute names)."""

    model: Any = "tiny"                 # named config, JSON path, or a ModelConfig dict (train only)
    cache: str = ""                     # prepared cache folder (meddifffm prepare)
    run_dir: str = ""                   # checkpoints, logs and the export go here
    seed: int = 0
    max_steps: int = 1000               # optimiser steps
    batch_size: int = 2                 # samples per process per micro step
    grad_accum: int = 1                 # micro steps per optimiser step
    lr: float = 1e-4                    # paper: Adam, 1e-4
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    warmup_steps: int = 100
    lr_schedule: str = "constant"       # constant | cosine (after warm-up, down to min_lr_ratio * lr)
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0              # 0 disables
    rewarm_steps: int = 0               # LR re-warm-up after a compact resume without moments (docs/TRAINING.md 8)
    ema_decay: float = 0.999
    levels: tuple = (1.0, 1.0, 1.0)     # chances of image / double / patch level (paper: equal)
    flip_lr: float = 0.5
    intensity_scale: float = 0.02       # +-2 % contrast jitter in model units
    intensity_shift: float = 0.02       # +-0.02 brightness jitter in model units (about 1 % of the window)
    condition_dropout: Optional[float] = None  # None: the model config's
    # Training recipe (training/recipe.py; defaults = the paper's method)
    loss_weighting: str = "none"        # none | min_snr
    min_snr_gamma: float = 5.0
    timestep_sampling: str = "uniform"  # uniform | low_biased
    low_t_fraction: float = 0.5         # low_biased: share of samples with t < low_t_max
    low_t_max: int = 250
    lesion_loss_weight: float = 0.0     # > 0: lesion voxels weigh 1 + this in the L1 mean
    lesion_exclusion_mm: float = 0.0    # > 0 (base, healthy prior): lesions dilated by this many mm weigh 0
    region_weights: dict = field(default_factory=dict)  # region (or "unknown") -> share of samples; {}: by case
    val_every: int = 200                # steps between validations (0: only at the end)
    val_samples_per_case: int = 4
    val_timesteps: tuple = (50, 250, 500, 750, 950)
    val_batch_size: int = 4
    checkpoint_every: int = 500         # steps
    checkpoint_minutes: float = 10.0    # also save when this much time passed since the last save
    keep_checkpoints: int = 2
    log_every: int = 10
    num_workers: int = 0                # data-loading processes per training process
    device: str = "auto"
    precision: str = "auto"             # auto (bf16 autocast on CUDA) | bf16 | fp32
    channels_last: bool = False         # channels-last 3D weights and activations (faster on some GPUs)
    cudnn_benchmark: bool = False       # let cuDNN time its convolution algorithms on the first steps (CUDA)
    threads: Optional[int] = None       # torch CPU threads (None: torch's default / OMP_NUM_THREADS)
    tensorboard: bool = True            # also write TensorBoard events when tensorboard is installed
    data_description: str = ""          # for the model card
    export: ExportOptions = field(default_factory=ExportOptions)
    # Fine-tuning (meddifffm finetune)
    task: Optional[str] = None          # superres | lesion
    base_model: Optional[str] = None    # base model name or folder (frozen)
    controlnet: dict = field(default_factory=dict)  # ControlNetConfig fields of CONTROLNET_TRAIN_KEYS
    superres_factors: tuple = (2, 3, 4, 5)
    lesion_focus: float = 0.8           # chance that a crop is centred on a lesion voxel
    # Filled in on load
    config_path: Optional[str] = None

    @classmethod
    def from_file(cls, path: str | Path, overrides: Optional[dict] = None) -> "TrainConfig":
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise TrainConfigError(f"The training config '{path}' does not exist.")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise TrainConfigError(f"The training config '{path}' is not valid JSON ({error}).") from error
        if not isinstance(data, dict):
            raise TrainConfigError(f"The training config '{path}' must be a JSON object.")
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(data, base_dir=path.parent, config_path=str(path))

    @classmethod
    def from_dict(cls, data: dict, base_dir: Optional[Path] = None, config_path: Optional[str] = None) -> "TrainConfig":
        data = {k: v for k, v in data.items() if not k.startswith("_")}  # "_comment" keys
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(f"The training config has unknown keys {unknown}. Known keys: {', '.join(sorted(known))}.")
        export = data.pop("export", None) or {}
        if not isinstance(export, dict):
            raise TrainConfigError("'export' must be an object")
        try:
            export_opts = ExportOptions(**export)
        except TypeError as error:
            raise TrainConfigError(f"Bad 'export' options: {error}.") from error
        try:
            config = cls(**data, export=export_opts)
        except TypeError as error:
            raise TrainConfigError(f"Bad training config: {error}.") from error
        base = Path(base_dir) if base_dir else Path.cwd()
        for key in ("cache", "run_dir"):
            value = getattr(config, key)
            if value:
                setattr(config, key, str((base / value).resolve()) if not Path(value).is_absolute() else value)
        if config.export.dir and not Path(config.export.dir).is_absolute():
            config.export.dir = str((base / config.export.dir).resolve())
        if config.base_model and ("/" in config.base_model or config.base_model.startswith(".")):
            candidate = (base / config.base_model).resolve()
            config.base_model = str(candidate)
        if isinstance(config.model, str) and config.model.endswith(".json") and not Path(config.model).is_absolute():
            config.model = str((base / config.model).resolve())
        config.config_path = config_path
        config.validate()
        return config

    def validate(self) -> None:
        problems = []
        if not self.cache:
            problems.append("'cache' (a folder made by `meddifffm prepare`) is required")
        if not self.run_dir:
            problems.append("'run_dir' (where checkpoints and logs go) is required")
        if int(self.rewarm_steps) < 0:
            problems.append("'rewarm_steps' must be 0 or more")
        for key in ("max_steps", "batch_size", "grad_accum", "log_every", "keep_checkpoints"):
            if int(getattr(self, key)) < 1:
                problems.append(f"'{key}' must be at least 1")
        if self.lr <= 0:
            problems.append("'lr' must be positive")
        if self.lr_schedule not in ("constant", "cosine"):
            problems.append("'lr_schedule' must be 'constant' or 'cosine'")
        if self.precision not in ("auto", "bf16", "fp32"):
            problems.append("'precision' must be auto, bf16 or fp32")
        for key in ("channels_last", "cudnn_benchmark"):
            if not isinstance(getattr(self, key), bool):
                problems.append(f"'{key}' must be true or false")
        if len(self.levels) != 3 or min(self.levels) < 0 or sum(self.levels) <= 0:
            problems.append("'levels' must be three non-negative chances (image, double, patch), not all zero")
        if not 0.0 <= float(self.ema_decay) < 1.0:
            problems.append("'ema_decay' must be in [0, 1)")
        if self.condition_dropout is not None and not 0.0 <= self.condition_dropout <= 1.0:
            problems.append("'condition_dropout' must be in [0, 1]")
        problems.extend(self.recipe().problems())
        problems.extend(region_weight_problems(self.region_weights))
        unknown = sorted(set(self.controlnet) - set(CONTROLNET_TRAIN_KEYS))
        if unknown:
            problems.append(f"'controlnet' takes only {', '.join(CONTROLNET_TRAIN_KEYS)}, not {', '.join(unknown)}")
        min_t = self.controlnet.get("min_timestep", 0)
        if not isinstance(min_t, int) or isinstance(min_t, bool) or min_t < 0:
            problems.append("'controlnet.min_timestep' must be a whole time step, 0 or more")
        if self.export.storage_dtype not in ("float32", "float16", "bfloat16"):
            problems.append("'export.storage_dtype' must be float32, float16 or bfloat16")
        if problems:
            raise TrainConfigError("The training config is invalid: " + "; ".join(problems) + ".")

    def recipe(self) -> Recipe:
        """The loss weighting and time-step distribution of this run."""
        return Recipe(loss_weighting=self.loss_weighting, min_snr_gamma=float(self.min_snr_gamma),
                      timestep_sampling=self.timestep_sampling, low_t_fraction=float(self.low_t_fraction),
                      low_t_max=int(self.low_t_max), lesion_loss_weight=float(self.lesion_loss_weight),
                      lesion_exclusion_mm=float(self.lesion_exclusion_mm))

    def model_config(self) -> ModelConfig:
        if isinstance(self.model, dict):
            return ModelConfig.from_dict(self.model)
        return named_config(str(self.model))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

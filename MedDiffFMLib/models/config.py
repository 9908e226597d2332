"""Model configurations: every architectural and preprocessing number of MedDiff-FM lives here.

A config is saved as JSON beside the weights, so a model folder is self-describing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError

# The solver tasks use unless a model or a run says otherwise (benchmarks/studies/sampler_steps.py).
DEFAULT_SAMPLER = "ddim"

REGIONS: tuple[str, ...] = ("head_neck", "chest", "abdomen")
# A task's region "unknown": no guess from the image, the region-less class (0) and the default window,
# as training gives a case whose manifest region is empty (e.g. limb CT, or a crop the guess misreads).
UNKNOWN_REGION = "unknown"

# What the network may predict (models/prediction.py turns each into the noise inference uses).
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "v")

# Paper defaults (W/L in HU) for the per-region intensity windows.
PAPER_WINDOWS: dict[str, tuple[float, float]] = {
    "head_neck": (50.0, 400.0),
    "chest": (-500.0, 1800.0),
    "abdomen": (60.0, 360.0),
}


@dataclass
class ModelConfig:
    """Architecture, intensity and diffusion settings of a MedDiff-FM U-Net.

    Attributes:
        name: config name (``paper``, ``default``, ``tiny`` or a user's own).
        channels: feature channels per U-Net level (its length is the number of levels).
        num_res_blocks: residual blocks per level.
        attention_levels: self-attention per level (paper: deepest level only).
        num_head_channels: channels per attention head.
        norm_num_groups: group-norm groups (must divide every entry of ``channels``).
        patch_size: (z, y, x) voxels of one network input.
        spacing_mm: (z, y, x) voxel size the model works at.
        position_frequencies: NeRF-style sinusoid frequencies per axis (0 disables the embedding).
        regions: region class names (a class embedding; index 0 means "unknown").
        windows: region -> (level, width) HU window mapped to [-1, 1].
        default_window: window used when the region is unknown.
        anatomy_channels: one-hot anatomy label channels (0 disables anatomy conditioning).
        num_train_timesteps: diffusion steps T.
        schedule: MONAI noise schedule name.
        prediction_type: what the network outputs, ``epsilon`` (the paper's noise) or ``v``
            (see :mod:`~MedDiffFMLib.models.prediction`); inference converts it to noise.
        sampler: the reverse-diffusion solver tasks use by default (``ddim`` or ``dpmpp_2m``, see
            :mod:`MedDiffFMLib.sampling.schedulers`); ``--sampler`` overrides it per run. Model folders
            written before these two fields load with the defaults (epsilon; the default sampler).
        condition_dropout: probability of dropping each condition in training (classifier-free).
    """

    name: str = "custom"
    channels: tuple[int, ...] = (32, 64, 128, 256)
    num_res_blocks: int = 1
    attention_levels: tuple[bool, ...] = (False, False, False, True)
    num_head_channels: int = 32
    norm_num_groups: int = 16
    patch_size: tuple[int, int, int] = (128, 128, 128)
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    position_frequencies: int = 4
    regions: tuple[str, ...] = REGIONS
    windows: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(PAPER_WINDOWS))
    default_window: tuple[float, float] = (-500.0, 1800.0)
    anatomy_channels: int = 0
    num_train_timesteps: int = 1000
    schedule: str = "cosine"
    condition_dropout: float = 0.1
    prediction_type: str = "epsilon"
    sampler: str = DEFAULT_SAMPLER

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        self.patch_size = tuple(int(p) for p in self.patch_size)  # type: ignore[assignment]
        self.spacing_mm = tuple(float(s) for s in self.spacing_mm)  # type: ignore[assignment]
        self.regions = tuple(self.regions)
        self.windows = {k: (float(v[0]), float(v[1])) for k, v in self.windows.items()}
        self.default_window = (float(self.default_window[0]), float(self.default_window[1]))
        self.validate()

    @property
    def position_channels(self) -> int:
        """Channels of the position embedding: raw coordinates plus sin/cos per frequency."""
        return 0 if self.position_frequencies <= 0 else 3 + 3 * 2 * self.position_frequencies

    @property
    def input_channels(self) -> int:
        """U-Net input channels: the image, the position embedding and the anatomy labels."""
        return 1 + self.position_channels + self.anatomy_channels

    @property
    def downsampling(self) -> int:
        """Total down-sampling factor of the U-Net; patch sizes must be multiples of it."""
        return 2 ** (len(self.channels) - 1)

    def region_index(self, region: str | None) -> int:
        """Class label of a region: 0 for unknown, 1.. for ``regions``."""
        if region is None:
            return 0
        if region not in self.regions:
            raise ModelError(
                f"Unknown region '{region}'. This model knows: {', '.join(self.regions)} (or leave it unset)."
            )
        return 1 + self.regions.index(region)

    def window_for(self, region: str | None) -> tuple[float, float]:
        """(level, width) of the HU window for ``region``."""
        if region is not None and region in self.windows:
            return self.windows[region]
        return self.default_window

    def validate(self) -> None:
        """Raise :class:`ModelError` when the numbers cannot make a working network."""
        problems = []
        if len(self.attention_levels) != len(self.channels):
            problems.append("attention_levels must have one entry per level in channels")
        if any(c % self.norm_num_groups for c in self.channels):
            problems.append(f"every channel count must be divisible by norm_num_groups={self.norm_num_groups}")
        if any(p % self.downsampling for p in self.patch_size):
            problems.append(f"patch_size {self.patch_size} must be a multiple of {self.downsampling}")
        if len(self.patch_size) != 3 or len(self.spacing_mm) != 3:
            problems.append("patch_size and spacing_mm need three values (z, y, x)")
        if any(s <= 0 for s in self.spacing_mm):
            problems.append("spacing_mm must be positive")
        if self.prediction_type not in PREDICTION_TYPES:
            problems.append(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}")
        if problems:
            raise ModelError(f"Model config '{self.name}' is invalid: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["windows"] = {k: list(v) for k, v in self.windows.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"Model config has unknown keys {unknown}; is it from a newer MedDiffFM?")
        return cls(**data)


# The ControlNet tasks, the one table of them: each is a model role (its shipped model is
# ``meddifffm-<task>`` unless ``models.json`` says otherwise), a choice of ``init-model --controlnet``
# and ``finetune --task``, and its condition as the model card names it. Its condition volume is built
# by ``models/conditions.py`` and, for fine-tuning, ``training/condition_builders.py``.
CONTROLNET_TASKS = {
    "superres": "the thick-slice CT (interpolated along z onto the model grid)",
    "lesion": "a lesion mask (1 inside the lesion)",
}

# ControlNetConfig fields that change how a trained ControlNet is applied, not its weights.
CONTROLNET_RUNTIME_SETTINGS = ("conditioning_scale", "min_timestep")


@dataclass
class ControlNetConfig:
    """A ControlNet for one downstream task, attached to a base model.

    Attributes:
        task: one of :data:`CONTROLNET_TASKS` (what builds the condition).
        condition_channels: channels of the condition volume.
        embedding_channels: channels of the condition encoder; one entry keeps it at full resolution,
            as a voxel-space model needs.
        conditioning_scale: weight of the ControlNet residuals.
        min_timestep: the residuals apply at time steps t >= min_timestep only; below it the base
            model predicts alone, and training draws no time step there. diffusers'
            ``control_guidance_end`` as a time step, so it means the same at any number of sampler
            steps. 0: every step.
        base_model: name of the base model it was trained with.
        base_sha256: checksum of that base model's weights.
    """

    task: str = "lesion"
    condition_channels: int = 1
    embedding_channels: tuple[int, ...] = (16,)
    conditioning_scale: float = 1.0
    min_timestep: int = 0
    base_model: str = ""
    base_sha256: str = ""

    def __post_init__(self) -> None:
        self.embedding_channels = tuple(int(c) for c in self.embedding_channels)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ControlNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _paper() -> ModelConfig:
    return ModelConfig(name="paper")


def _default() -> ModelConfig:
    # The GPU-trained default (docs/TRAINING.md, "The default model's GPU design"): a 1 mm grid, so
    # the fine noise of diagnostic CT is on the model grid; 16 channels at full resolution and a
    # fourth level keep a 256x256x128 denoise on a 2-core CPU under 5 minutes, 80^3 patches keep
    # training >= 50 samples/s on one H100 (estimate) with 7.2 M parameters (27.5 MiB bf16 raw + EMA).
    return ModelConfig(
        name="default",
        channels=(16, 32, 64, 128),
        attention_levels=(False, False, False, True),
        num_head_channels=32,
        norm_num_groups=8,
        patch_size=(80, 80, 80),
        spacing_mm=(1.0, 1.0, 1.0),
        position_frequencies=4,
    )


def _default_2mm() -> ModelConfig:
    # The 'default' before the 1 mm design (kept so earlier figures can be reproduced).
    return ModelConfig(
        name="default_2mm",
        channels=(32, 64, 128),
        attention_levels=(False, False, True),
        num_head_channels=32,
        patch_size=(64, 64, 64),
        spacing_mm=(2.0, 2.0, 2.0),
        position_frequencies=4,
    )


def _tiny() -> ModelConfig:
    return ModelConfig(
        name="tiny",
        channels=(8, 16),
        attention_levels=(False, True),
        num_head_channels=8,
        norm_num_groups=4,
        patch_size=(16, 16, 16),
        spacing_mm=(4.0, 4.0, 4.0),
        position_frequencies=2,
        num_train_timesteps=1000,
    )


def _cpu_starter() -> ModelConfig:
    # Trainable on a 2-core CPU in an hour (about 0.5 samples/s with one torch thread, see
    # docs/TRAINING.md): the shipped starter model until GPU training replaces it.
    return ModelConfig(
        name="cpu_starter",
        channels=(16, 32, 64),
        attention_levels=(False, False, True),
        num_head_channels=32,
        norm_num_groups=8,
        patch_size=(32, 32, 32),
        spacing_mm=(3.0, 3.0, 3.0),
        position_frequencies=4,
    )


NAMED_CONFIGS = {"paper": _paper, "default": _default, "default_2mm": _default_2mm, "tiny": _tiny,
                 "cpu_starter": _cpu_starter}


def named_config(name: str) -> ModelConfig:
    """The built-in config ``name`` (a key of :data:`NAMED_CONFIGS`), or a JSON file path."""
    if name in NAMED_CONFIGS:
        return NAMED_CONFIGS[name]()
    from pathlib import Path

    path = Path(name)
    if path.is_file():
        try:
            return ModelConfig.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise ModelError(f"Cannot read the model config '{path}': {error}.") from error
    raise ModelError(
        f"Unknown model config '{name}'. Use one of {', '.join(NAMED_CONFIGS)} or a path to a JSON config file."
    )

"""How each condition volume is built on the model grid: the contract between the tasks (sampling)
and fine-tuning (training must build its conditions with these same functions).

* anatomy (U-Net input channels): one-hot label channels; label ``c`` (1..C) -> channel ``c - 1``,
  background and labels above C -> all zeros.
* lesion ControlNet: one channel, 1.0 inside the lesion and 0.0 elsewhere.
* super-resolution ControlNet: one channel, the low-resolution image in model units ([-1, 1]),
  linearly interpolated along z onto the model grid (:func:`degrade_z` simulates it from a thin
  volume for training); -1 (air) in the padding.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import CONTROLNET_TASKS, ControlNetConfig, ModelConfig
from .inputs import anatomy_one_hot



def describe_conditions(config: ModelConfig, control: ControlNetConfig | None = None) -> list[str]:
    """The conditions a model takes, as model-card bullet lines (what ``synthesize --anatomy`` and
    the Slicer panel's anatomy input depend on)."""
    regions = ", ".join(config.regions)
    lines = [f"- Body region ({regions}; `--region`, or unknown) and the voxel's position in the image "
             "(whole-image sinusoidal embedding)."]
    if config.anatomy_channels > 0:
        lines.append(f"- An anatomy label map (`synthesize --anatomy`): {config.anatomy_channels} channels, label c "
                     "(1..C) drives channel c - 1; higher labels are ignored.")
    else:
        lines.append("- No anatomy label map: trained without anatomy channels (`anatomy_channels` 0), so "
                     "`synthesize --anatomy` is refused and the Slicer module hides its anatomy input.")
    if control is not None:
        what = CONTROLNET_TASKS.get(control.task, f"the '{control.task}' condition")
        lines.append(f"- As a '{control.task}' ControlNet: {what}, on top of its base model's conditions above.")
    return lines


def anatomy_condition(labels: np.ndarray, channels: int) -> torch.Tensor:
    """(C, z, y, x) float one-hot channels of an integer label map (z, y, x), by the network-input
    contract's :func:`~MedDiffFMLib.models.inputs.anatomy_one_hot`."""
    labels = torch.as_tensor(np.asarray(labels).astype(np.int64, copy=False))
    return anatomy_one_hot(labels[None], channels, torch.zeros((1, 1, *labels.shape)))[0]


def lesion_condition(mask: np.ndarray) -> torch.Tensor:
    """(1, z, y, x): 1 inside the lesion mask, 0 outside."""
    return torch.as_tensor(np.asarray(mask, dtype=np.float32))[None]


def superres_condition(low_res_model_units: np.ndarray) -> torch.Tensor:
    """(1, z, y, x): the interpolated low-resolution image in model units."""
    return torch.as_tensor(np.asarray(low_res_model_units, dtype=np.float32)).clamp(-1.0, 1.0)[None]


def degrade_z(volume: np.ndarray, factor: int) -> np.ndarray:
    """Simulate thick slices for training: average blocks of ``factor`` slices along z (axis 0;
    a last partial block averages what it has), then interpolate linearly back to every slice
    (nearest value beyond the first/last block centre), as sampling does with real thick slices."""
    volume = np.asarray(volume, dtype=np.float32)
    factor = int(factor)
    if factor <= 1:
        return volume.copy()
    nz = volume.shape[0]
    starts = np.arange(0, nz, factor)
    blocks = np.stack([volume[s : s + factor].mean(axis=0) for s in starts])
    centres = np.array([s + (min(s + factor, nz) - s - 1) / 2.0 for s in starts])
    position = np.clip(np.arange(nz, dtype=np.float64), centres[0], centres[-1])
    upper = np.clip(np.searchsorted(centres, position, side="left"), 0, len(centres) - 1)
    lower = np.clip(upper - 1, 0, len(centres) - 1)
    span = np.where(upper == lower, 1.0, centres[upper] - centres[lower])
    weight = np.where(upper == lower, 1.0, (position - centres[lower]) / span).astype(np.float32)
    shape = (nz,) + (1,) * (volume.ndim - 1)
    return (1.0 - weight.reshape(shape)) * blocks[lower] + weight.reshape(shape) * blocks[upper]

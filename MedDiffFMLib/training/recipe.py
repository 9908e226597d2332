"""Training-recipe choices on top of the paper's objective (L1 noise loss, uniform time steps).

Three training-only knobs, each off by default (the paper's method):

* ``loss_weighting = "min_snr"``: Min-SNR-gamma weighting (Hang et al., ICCV 2023) of each sample's
  loss, ``min(SNR_t, gamma) / SNR_t`` for an epsilon target (``/ (SNR_t + 1)`` for a v target), with
  ``SNR_t = abar_t / (1 - abar_t)``: it balances the time steps, which otherwise pull the shared
  weights in conflicting directions.
* ``timestep_sampling = "low_biased"``: a share ``low_t_fraction`` of the samples draws its time step
  uniformly from ``[0, low_t_max)`` instead of ``[0, T)``. Denoising starts DiffPIR at the step whose
  noise matches the CT's (10-60 HU: t of about 2-200 with the paper's windows, see
  ``tasks/denoise.py``), so these steps get more of a short training's samples while every step
  is still trained (synthesis and inpainting start at T - 1).
* ``lesion_loss_weight = w > 0``: each voxel of the crop's lesion mask weighs ``1 + w`` in the L1
  mean (the other voxels 1). A lesion fills a small part of an 80^3 crop, so in the plain mean the
  lesion ControlNet's one job, what goes inside the mask, is a few per cent of the loss (the first
  GPU-trained one hardly moved a lesion's intensity from its surroundings).

* ``lesion_exclusion_mm = r > 0`` (the healthy prior): voxels of the crop's lesion mask dilated by ``r`` mm
  weigh 0 in the base model's L1 mean, so the prior never learns a tumour (or the tissue it displaces
  at its rim) as normal anatomy: an anomaly map reconstructs what healthy tissue would be there. A crop
  entirely inside the dilated lesion contributes no loss. Only for the base model: a lesion ControlNet
  must learn lesions, so it cannot be combined with ``lesion_loss_weight``.

``benchmarks/studies/training_recipe.py`` compares them at a fixed budget; docs/TRAINING.md gives the figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

LOSS_WEIGHTINGS = ("none", "min_snr")
TIMESTEP_SAMPLINGS = ("uniform", "low_biased")


@dataclass(frozen=True)
class Recipe:
    """Loss weighting and time-step distribution of a training run (TrainConfig keys of the same names)."""

    loss_weighting: str = "none"
    min_snr_gamma: float = 5.0
    timestep_sampling: str = "uniform"
    low_t_fraction: float = 0.5
    low_t_max: int = 250
    lesion_loss_weight: float = 0.0
    lesion_exclusion_mm: float = 0.0
    # Set from a ControlNet's min_timestep (not a TrainConfig key): steps where it is off are not drawn.
    min_timestep: int = 0

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty when they are usable)."""
        found = []
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            found.append(f"'loss_weighting' must be one of {', '.join(LOSS_WEIGHTINGS)}")
        if self.min_snr_gamma <= 0:
            found.append("'min_snr_gamma' must be positive")
        if self.timestep_sampling not in TIMESTEP_SAMPLINGS:
            found.append(f"'timestep_sampling' must be one of {', '.join(TIMESTEP_SAMPLINGS)}")
        if not 0.0 <= self.low_t_fraction <= 1.0:
            found.append("'low_t_fraction' must be in [0, 1]")
        if int(self.low_t_max) < 1:
            found.append("'low_t_max' must be at least 1")
        if not float(self.lesion_loss_weight) >= 0.0:
            found.append("'lesion_loss_weight' must be 0 (off) or more")
        if not float(self.lesion_exclusion_mm) >= 0.0:
            found.append("'lesion_exclusion_mm' must be 0 (off) or more (mm the lesion mask is dilated by)")
        if float(self.lesion_exclusion_mm) > 0.0 and float(self.lesion_loss_weight) > 0.0:
            found.append("'lesion_exclusion_mm' (leave lesions out of the base's loss) and 'lesion_loss_weight' "
                         "(weigh them more, for the lesion ControlNet) cannot both be on")
        if int(self.min_timestep) < 0:
            found.append("'min_timestep' must be at least 0")
        return found

    def sample_timestep(self, rng: np.random.Generator, num_timesteps: int) -> int:
        """One training time step in ``[min_timestep, num_timesteps)``, drawn from ``rng``."""
        low = min(int(self.min_timestep), num_timesteps - 1)
        if self.timestep_sampling == "low_biased" and rng.random() < self.low_t_fraction:
            high = min(int(self.low_t_max), num_timesteps)
            if high > low:
                return int(rng.integers(low, high))
        return int(rng.integers(low, num_timesteps))

    def voxel_weights(self, lesion: torch.Tensor, spacing_mm: Sequence[float] = (1.0, 1.0, 1.0)) -> torch.Tensor | None:
        """Per-voxel L1 weights from a batch's lesion masks (B, 1, z, y, x) on a grid of ``spacing_mm``
        (x, y, z): 0 inside the lesion dilated by ``lesion_exclusion_mm``, else ``1 + lesion_loss_weight``
        inside a lesion and 1 elsewhere; None when both are off (every voxel weighs the same)."""
        if float(self.lesion_exclusion_mm) > 0.0:
            return 1.0 - dilate(lesion > 0, self.lesion_exclusion_mm, spacing_mm).float()
        if float(self.lesion_loss_weight) <= 0.0:
            return None
        return 1.0 + float(self.lesion_loss_weight) * (lesion > 0).float()

    def loss_weight(self, abar: torch.Tensor, prediction_type: str = "epsilon") -> torch.Tensor:
        """Per-sample loss weights for the cumulative signal fractions ``abar`` (shape (B,))."""
        if self.loss_weighting == "none":
            return torch.ones_like(abar)
        snr = abar / (1.0 - abar).clamp_min(1e-12)
        clipped = snr.clamp(max=float(self.min_snr_gamma))
        return clipped / (snr + 1.0) if prediction_type == "v" else clipped / snr


def dilate(mask: torch.Tensor, radius_mm: float, spacing_mm: Sequence[float]) -> torch.Tensor:
    """``mask`` (bool, (B, 1, z, y, x)) dilated by a box of ``radius_mm`` mm per side (at least the voxel
    itself; ``spacing_mm`` is (x, y, z)), with a max-pool, on the mask's device."""
    radius = [max(0, int(round(float(radius_mm) / float(s)))) for s in reversed(tuple(spacing_mm))]
    if not any(radius) or not bool(mask.any()):
        return mask
    kernel = tuple(2 * r + 1 for r in radius)
    return F.max_pool3d(mask.float(), kernel_size=kernel, stride=1, padding=tuple(radius)) > 0

"""DiffPIR plug-and-play restoration on the model grid (Zhu et al. 2023): the maths shared by the
denoising and super-resolution tasks (which add the trip to and from the model grid) and any caller that
works on the model grid directly, without SimpleITK (a training run's quality check).

The noisy image y is taken as a point on the diffusion trajectory: with its noise std sigma_n (in
model units) the matching step t* has sigma_t / alpha_t = sigma_n, so alpha_t* y is a valid x_t*.
From there the sampler runs down to 0; at each step the predicted clean image x0 is pulled towards
the measurement by the closed-form data-consistency step of DiffPIR,
x0 <- (y + rho_t x0) / (1 + rho_t) with rho_t = lambda * sigma_n^2 / sigma_t^2.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..progress import CancelCheck, ProgressCallback
from .schedulers.base import Sampler
from .predictor import VolumeNoisePredictor
from .loop import SamplingHooks, run_sampler
from .schedule import NoiseSchedule

# The noise of a CT puts t* low on the schedule, so few steps reach t = 0: with the shipped model, 5
# steps scored the same as 10 (mean of 6 cases: 35.93 dB, SSIM 0.704 both) at half the network
# evaluations (benchmarks/results/denoise_steps_starter_*.md at commit d5c1bef).
DEFAULT_DENOISE_STEPS = 5


def measurement_sigma(noise_hu: float, window_width: float, floor: float = 1e-4) -> float:
    """A noise std in HU expressed in model units ([-1, 1] over the window)."""
    return max(float(noise_hu) / (window_width / 2.0), floor) if math.isfinite(noise_hu) else floor


def diffpir_rho(schedule: NoiseSchedule, t: int, lam: float, sigma_n: float) -> float:
    """rho_t = lambda sigma_n^2 / sigma_t^2 (0 means: trust the measurement fully)."""
    return float(lam) * float(sigma_n) ** 2 / max(schedule.noise_to_signal(t) ** 2, 1e-12)


def diffpir_denoise(
    predictor: VolumeNoisePredictor,
    sampler: Sampler,
    y: torch.Tensor,
    sigma_n: float,
    steps: int,
    *,
    lam: float = 10.0,
    generator: Optional[torch.Generator] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    stage: str = "denoising",
) -> tuple[Optional[torch.Tensor], list[int]]:
    """Denoise ``y`` (1, 1, z, y, x), model units, noise std ``sigma_n``; returns (result, time steps),
    or (None, []) when the noise is below the schedule's first step (nothing to remove)."""
    schedule = sampler.schedule
    start = schedule.step_for_noise(sigma_n)
    if start == 0:
        return None, []
    timesteps = sampler.set_timesteps(steps, start_step=start)
    x = schedule.alpha(timesteps[0]) * y

    def data_consistency(x0: torch.Tensor, t: int, x_t: torch.Tensor) -> torch.Tensor:
        rho = diffpir_rho(schedule, t, lam, sigma_n)
        return (y + rho * x0) / (1.0 + rho)

    result = run_sampler(predictor, sampler, x, hooks=SamplingHooks(x0_transform=data_consistency),
                         generator=generator, progress=progress, cancel=cancel, stage=stage)
    return result, list(timesteps)

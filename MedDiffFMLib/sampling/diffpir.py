"""DiffPIR plug-and-play denoising on the model grid (Zhu et al. 2023): the maths shared by the
denoising task (which adds the trip to and from the model grid) and the GPU training chunk's quality
check (which works on the model grid directly, without SimpleITK).

The noisy image y is taken as a point on the diffusion trajectory: with its noise std sigma_n (in
model units) the matching step t* has sqrt((1 - abar)/abar) = sigma_n, so sqrt(abar_t*) * y is a
valid x_t*. From there the sampler runs down to 0; at each step the predicted clean image x0 is
pulled towards the measurement by the closed-form data-consistency step of DiffPIR,
x0 <- (y + rho_t x0) / (1 + rho_t) with rho_t = lambda * sigma_n^2 / sigma_t^2.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..progress import CancelCheck, ProgressCallback
from .predictor import VolumeNoisePredictor
from .sampler import SamplingHooks, run_sampler
from .schedulers import noise_to_signal, prepare_timesteps, step_for_noise

# The noise of a CT puts t* low on the schedule, so few steps reach t = 0: with the shipped model, 5
# steps scored the same as 10 (mean of 6 cases: 35.93 dB, SSIM 0.704 both) at half the network
# evaluations (benchmarks/results/denoise_steps_starter_*.md).
DEFAULT_DENOISE_STEPS = 5


def diffpir_denoise(
    predictor: VolumeNoisePredictor,
    scheduler,
    y: torch.Tensor,
    sigma_n: float,
    steps: int,
    *,
    lam: float = 10.0,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    stage: str = "denoising",
) -> tuple[Optional[torch.Tensor], list[int]]:
    """Denoise ``y`` (1, 1, z, y, x), model units, noise std ``sigma_n``; returns (result, time steps),
    or (None, []) when the noise is below the schedule's first step (nothing to remove)."""
    start = step_for_noise(scheduler, sigma_n)
    if start == 0:
        return None, []
    timesteps = prepare_timesteps(scheduler, steps, start_step=start)
    x = math.sqrt(float(scheduler.alphas_cumprod[timesteps[0]])) * y

    def data_consistency(x0: torch.Tensor, t: int, x_t: torch.Tensor) -> torch.Tensor:
        rho = lam * sigma_n**2 / max(noise_to_signal(scheduler, t) ** 2, 1e-12)
        return (y + rho * x0) / (1.0 + rho)

    result = run_sampler(predictor, scheduler, x, timesteps, eta=eta, hooks=SamplingHooks(x0_transform=data_consistency),
                         generator=generator, progress=progress, cancel=cancel, stage=stage)
    return result, timesteps

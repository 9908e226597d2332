"""MONAI noise schedulers configured from a model config, and the time-step arithmetic tasks need."""

from __future__ import annotations

import math

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from ..models.config import ModelConfig


def training_scheduler(config: ModelConfig) -> DDPMScheduler:
    """The forward process the model is trained with (paper: cosine, T = 1000)."""
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, schedule=config.schedule, clip_sample=False)


def sampling_scheduler(config: ModelConfig) -> DDIMScheduler:
    """DDIM over the training schedule: few steps, deterministic with eta = 0."""
    return DDIMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        schedule=config.schedule,
        clip_sample=True,
        set_alpha_to_one=True,
    )


def prepare_timesteps(scheduler: DDIMScheduler, steps: int, start_step: int | None = None) -> list[int]:
    """Set ``scheduler`` up for about ``steps`` steps and return the time steps to visit.

    With ``start_step`` (partial diffusion: denoising, anomaly maps, inpainting) the grid is made
    finer so that about ``steps`` of its steps lie at or below ``start_step``; MONAI's DDIM step
    derives each previous time step from the grid spacing, so the grid must stay uniform.
    """
    total = scheduler.num_train_timesteps
    steps = max(1, int(steps))
    if start_step is None or start_step >= total - 1:
        scheduler.set_timesteps(min(steps, total))
        return [int(t) for t in scheduler.timesteps]
    start_step = max(0, int(start_step))
    steps = min(steps, start_step + 1)
    full = min(total, max(steps, int(round(steps * total / (start_step + 1)))))
    scheduler.set_timesteps(full)
    return [int(t) for t in scheduler.timesteps if int(t) <= start_step]


def alpha_bar(scheduler, t: int) -> float:
    """Cumulative signal fraction at step ``t`` (1 before step 0)."""
    if t < 0:
        return 1.0
    return float(scheduler.alphas_cumprod[int(t)])


def noise_to_signal(scheduler, t: int) -> float:
    """sigma_t = sqrt((1 - abar_t) / abar_t): the noise std of x_t / sqrt(abar_t) in model units."""
    a = alpha_bar(scheduler, t)
    return math.sqrt(max(1.0 - a, 0.0) / max(a, 1e-12))


def step_for_noise(scheduler, sigma: float) -> int:
    """The time step whose noise-to-signal ratio is closest to ``sigma`` (model units)."""
    abar = scheduler.alphas_cumprod.double()
    ratios = torch.sqrt((1.0 - abar) / abar.clamp_min(1e-12))
    return int(torch.argmin((ratios - float(sigma)).abs()))


def add_noise(scheduler, x0: torch.Tensor, t: int, generator: torch.Generator | None) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) with the scheduler's forward process."""
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    return scheduler.add_noise(x0, noise, torch.tensor([int(t)], device=x0.device))

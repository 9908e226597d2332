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
    """The time steps to visit: ``steps`` of them, evenly spaced from ``start_step`` (default T - 1,
    pure noise) down to 0. Partial diffusion (denoising, anomaly maps, inpainting) passes
    ``start_step``; ``steps`` is capped at ``start_step + 1``, so each step is a distinct integer."""
    total = scheduler.num_train_timesteps
    start = total - 1 if start_step is None else min(max(0, int(start_step)), total - 1)
    count = min(max(1, int(steps)), start + 1)
    if count == 1:
        return [start]
    # Spacing >= 1, so rounding half up keeps the steps distinct.
    return [int(math.floor(start * (1.0 - k / (count - 1)) + 0.5)) for k in range(count)]


def ddim_step(
    scheduler,
    eps: torch.Tensor,
    t: int,
    t_prev: int,
    x: torch.Tensor,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM update (Song et al. 2021, eq. 12) from step ``t`` to ``t_prev`` (-1: the clean image).

    Written here because MONAI's ``DDIMScheduler.step`` derives the previous step as
    ``t - T // num_inference_steps`` while its ``set_timesteps`` visits a linspace grid: with few
    steps the two disagree (2 steps: 999 -> 0 visited, 999 -> 499 computed), so the next network
    call would see a sample at another noise level than it is told. The predicted x0 is clipped to
    the model range as MONAI does (``clip_sample``).
    """
    a_t = alpha_bar(scheduler, t)
    a_prev = alpha_bar(scheduler, t_prev)
    x0 = (x - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
    if getattr(scheduler, "clip_sample", False):
        low, high = getattr(scheduler, "clip_sample_values", (-1.0, 1.0))
        x0 = x0.clamp(float(low), float(high))
    variance = (1.0 - a_prev) / max(1.0 - a_t, 1e-12) * (1.0 - a_t / a_prev)
    std = float(eta) * math.sqrt(max(variance, 0.0))
    x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1.0 - a_prev - std**2, 0.0)) * eps
    if std > 0:
        # The generator lives on the CPU so that a seed gives the same noise on every device.
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x_prev = x_prev + std * noise.to(x.device)
    return x_prev


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

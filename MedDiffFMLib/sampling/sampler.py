"""The one diffusion sampling loop every task shares.

Tasks customise it through two hooks instead of copying it:

* ``x0_transform(x0, t, x_t)`` changes the predicted clean image at each step (DiffPIR data
  consistency for denoising and super-resolution);
* ``after_step(x_prev, t_prev)`` changes the next sample (RePaint keeps the known region).

``resample_repeats`` > 1 re-noises and repeats each step (RePaint's resampling), harmonising the
generated region with its surroundings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from .predictor import VolumeNoisePredictor
from .schedulers import alpha_bar, ddim_step

X0Transform = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]
AfterStep = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class SamplingHooks:
    """Optional per-step modifications (see the module docstring)."""

    x0_transform: Optional[X0Transform] = None
    after_step: Optional[AfterStep] = None


def run_sampler(
    predictor: VolumeNoisePredictor,
    scheduler,
    x: torch.Tensor,
    timesteps: Sequence[int],
    *,
    eta: float = 0.0,
    hooks: Optional[SamplingHooks] = None,
    resample_repeats: int = 1,
    generator: Optional[torch.Generator] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    stage: str = "sampling",
) -> torch.Tensor:
    """Run the reverse diffusion from ``x`` (the sample at ``timesteps[0]``) down to a clean image.

    ``timesteps`` come from :func:`prepare_timesteps` (any decreasing list works). Returns the final sample
    (1, 1, z, y, x) in model units. Raises :class:`CancelledError` between steps when ``cancel()``.
    """
    hooks = hooks or SamplingHooks()
    repeats = max(1, int(resample_repeats))
    steps = list(timesteps)
    total = sum(repeats if i < len(steps) - 1 else 1 for i in range(len(steps)))
    done = 0
    report(progress, stage, 0, total)
    for index, t in enumerate(steps):
        rounds = repeats if index < len(steps) - 1 else 1
        for round_ in range(rounds):
            check_cancel(cancel)
            eps = predictor(x, t)
            if hooks.x0_transform is not None:
                eps = _eps_after_x0_change(scheduler, x, eps, t, hooks.x0_transform)
            t_prev = steps[index + 1] if index + 1 < len(steps) else -1
            x_prev = ddim_step(scheduler, eps, t, t_prev, x, eta=eta, generator=generator)
            if hooks.after_step is not None:
                x_prev = hooks.after_step(x_prev, t_prev)
            done += 1
            report(progress, stage, done, total)
            if round_ < rounds - 1:
                x = _renoise(scheduler, x_prev, t_prev, t, generator)
            else:
                x = x_prev
    return x


def _eps_after_x0_change(scheduler, x_t: torch.Tensor, eps: torch.Tensor, t: int, transform: X0Transform) -> torch.Tensor:
    # Express the changed x0 as the equivalent noise so that MONAI's DDIM step applies it unchanged.
    a = alpha_bar(scheduler, t)
    x0 = (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)
    x0 = transform(x0.clamp(-1, 1), t, x_t)
    return (x_t - math.sqrt(a) * x0) / math.sqrt(max(1 - a, 1e-12))


def _renoise(scheduler, x_prev: torch.Tensor, t_prev: int, t: int, generator) -> torch.Tensor:
    # q(x_t | x_t_prev): go back up one step with fresh noise (RePaint's resampling).
    ratio = alpha_bar(scheduler, t) / alpha_bar(scheduler, t_prev)
    noise = torch.randn(x_prev.shape, generator=generator, dtype=x_prev.dtype, device=x_prev.device)
    return math.sqrt(ratio) * x_prev + math.sqrt(max(1 - ratio, 0.0)) * noise

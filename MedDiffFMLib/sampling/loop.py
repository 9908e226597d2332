"""The one diffusion sampling loop every task shares: it calls the network and hands its noise
estimate to the sampler object (:mod:`.base`: DDIM, DPM-Solver++ ...), with progress between steps and cancel
within them (between the network's layers).

Tasks customise it through two hooks instead of copying it:

* ``x0_transform(x0, t, x_t)`` changes the predicted clean image at each step (DiffPIR data
  consistency for denoising and super-resolution);
* ``after_step(x_prev, t_prev)`` changes the next sample (RePaint keeps the known region).

``resample_repeats`` > 1 re-noises and repeats each step (RePaint's resampling), harmonising the
generated region with its surroundings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from .schedulers.base import Sampler
from .predictor import VolumeNoisePredictor

X0Transform = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]
AfterStep = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class SamplingHooks:
    """Optional per-step modifications (see the module docstring)."""

    x0_transform: Optional[X0Transform] = None
    after_step: Optional[AfterStep] = None


def run_sampler(
    predictor: VolumeNoisePredictor,
    sampler: Sampler,
    x: torch.Tensor,
    *,
    hooks: Optional[SamplingHooks] = None,
    resample_repeats: int = 1,
    generator: Optional[torch.Generator] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    stage: str = "sampling",
) -> torch.Tensor:
    """Run the reverse diffusion from ``x`` (the sample at ``sampler.timesteps[0]``, planned by
    :meth:`Sampler.set_timesteps`) down to a clean image.

    Returns the final sample (1, 1, z, y, x) in model units. Raises :class:`CancelledError` between
    steps when ``cancel()``.
    """
    hooks = hooks or SamplingHooks()
    schedule = sampler.schedule
    repeats = max(1, int(resample_repeats))
    steps: Sequence[int] = list(sampler.timesteps)
    if not steps:
        raise ValueError("The sampler has no timesteps: call set_timesteps first.")
    sampler.reset()
    total = sum(repeats if i < len(steps) - 1 else 1 for i in range(len(steps)))
    done = 0
    report(progress, stage, 0, total)
    for index, t in enumerate(steps):
        rounds = repeats if index < len(steps) - 1 else 1
        for round_ in range(rounds):
            check_cancel(cancel)
            eps = predictor(x, t, cancel=cancel)  # also checked between the network's layers
            if hooks.x0_transform is not None:
                # The changed x0 expressed as the equivalent noise estimate, so every sampler applies it.
                x0 = hooks.x0_transform(schedule.clip(schedule.predict_x0(x, eps, t)), t, x)
                eps = schedule.noise_for_x0(x, x0, t)
            t_prev = steps[index + 1] if index + 1 < len(steps) else -1
            x_prev = sampler.step(eps, t, t_prev, x, generator)
            if hooks.after_step is not None:
                x_prev = hooks.after_step(x_prev, t_prev)
            done += 1
            report(progress, stage, done, total)
            if round_ < rounds - 1:
                x = schedule.renoise(x_prev, t_prev, t, generator)
            else:
                x = x_prev
    return x

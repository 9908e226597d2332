"""DDIM (Song et al. 2021, eq. 12): the first-order solver of the probability-flow ODE (eta = 0),
or ancestral sampling in between (eta > 0).

Written here rather than taken from MONAI because MONAI's ``DDIMScheduler.step`` derives the
previous step as ``t - T // num_inference_steps`` while its ``set_timesteps`` visits a linspace
grid: with few steps the two disagree (2 steps: 999 -> 0 visited, 999 -> 499 computed), so the next
network call would see a sample at another noise level than it is told.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from .base import Sampler
from ..schedule import NoiseSchedule


class DDIMSampler(Sampler):
    """DDIM with stochasticity ``eta`` (0: deterministic). The predicted x0 is clipped to the model range."""

    name = "ddim"

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0) -> None:
        super().__init__(schedule)
        self.eta = float(eta)
        self.stochastic = self.eta > 0

    def step(self, eps, t, t_prev, x, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        a_t = self.schedule.alpha_bar(t)
        a_prev = self.schedule.alpha_bar(t_prev)
        x0 = self.schedule.clip(self.schedule.predict_x0(x, eps, t))
        variance = (1.0 - a_prev) / max(1.0 - a_t, 1e-12) * (1.0 - a_t / a_prev)
        std = self.eta * math.sqrt(max(variance, 0.0))
        x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1.0 - a_prev - std**2, 0.0)) * eps
        if std > 0:
            # The generator lives on the CPU so that a seed gives the same noise on every device.
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x_prev = x_prev + std * noise.to(x.device)
        return x_prev

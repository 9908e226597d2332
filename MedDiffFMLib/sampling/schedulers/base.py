"""The sampler interface (as diffusers' schedulers and MONAI's): ``set_timesteps`` plans the steps
to visit, ``step`` moves a sample from one step to the next. A sampler owns no network; the shared
loop (:func:`~.sampler.run_sampler`) calls the network and hands its noise estimate to ``step``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Optional

import torch

from ..schedule import NoiseSchedule


class Sampler(ABC):
    """A reverse-diffusion solver on a :class:`NoiseSchedule`.

    Usage: ``timesteps = sampler.set_timesteps(steps, start_step)``, then for each visited step ``t``
    (next ``t_prev``, -1 after the last) ``x = sampler.step(eps, t, t_prev, x, generator)``.
    """

    name = ""
    #: True when the result depends on the generator (stochastic steps).
    stochastic = False
    #: How the visited steps are spread: ``time`` (evenly in t) or ``quadratic`` (t evenly in its
    #: square root: denser at low noise, which suits higher-order solvers with few steps).
    spacing = "time"

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule
        self.timesteps: list[int] = []

    def set_timesteps(self, steps: int, start_step: Optional[int] = None) -> list[int]:
        """The steps to visit: ``steps`` of them from ``start_step`` (default T - 1, pure noise) down to
        0, spread by :attr:`spacing`. Partial diffusion (denoising, anomaly maps, inpainting) passes
        ``start_step``; ``steps`` is capped at ``start_step + 1`` so that each step is a distinct
        integer (``quadratic`` spacing may merge a few more at t near 0). Resets the solver's state."""
        total = self.schedule.num_train_timesteps
        start = total - 1 if start_step is None else min(max(0, int(start_step)), total - 1)
        count = min(max(1, int(steps)), start + 1)
        if count == 1:
            self.timesteps = [start]
        elif self.spacing == "quadratic":
            self.timesteps = self._quadratic_steps(start, count)
        else:
            # Spacing >= 1, so rounding half up keeps the steps distinct.
            self.timesteps = [int(math.floor(start * (1.0 - k / (count - 1)) + 0.5)) for k in range(count)]
        self.reset()
        return list(self.timesteps)

    @staticmethod
    def _quadratic_steps(start: int, count: int) -> list[int]:
        # t_k = start (1 - k / (count - 1))^2: denser at low noise; rounding may merge the last few.
        visited: list[int] = []
        for k in range(count):
            t = int(math.floor(start * (1.0 - k / (count - 1)) ** 2 + 0.5))
            if not visited or t < visited[-1]:
                visited.append(t)
        return visited

    def reset(self) -> None:
        """Forget the state of a previous run (multistep history)."""

    @abstractmethod
    def step(
        self,
        eps: torch.Tensor,
        t: int,
        t_prev: int,
        x: torch.Tensor,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """The sample at ``t_prev`` (-1: the clean image) from ``x`` at ``t`` and the noise
        estimate ``eps`` there (epsilon, whatever the network predicts)."""

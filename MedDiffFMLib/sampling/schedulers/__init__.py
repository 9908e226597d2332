"""The samplers (the field's "schedulers": an object with ``set_timesteps`` / ``step``, as in
diffusers and MONAI), one file each, and their registry: a model's ``config.json`` (``sampler``) or
``--sampler`` names one.

Adding a solver is one file here with a :class:`~.base.Sampler` subclass plus one entry in ``SAMPLERS``.
"""

from __future__ import annotations

from typing import Optional

from ...errors import InputError
from ...models.config import ModelConfig
from .base import Sampler
from .ddim import DDIMSampler
from .dpm_solver import DPMSolverPP2MSampler
from ..schedule import NoiseSchedule

SAMPLERS: dict[str, type[Sampler]] = {
    DDIMSampler.name: DDIMSampler,
    DPMSolverPP2MSampler.name: DPMSolverPP2MSampler,
}


def make_sampler(name: str, schedule: NoiseSchedule, eta: float = 0.0) -> Sampler:
    """The sampler ``name`` on ``schedule``; a clear InputError for an unknown name."""
    if name not in SAMPLERS:
        raise InputError(f"Unknown sampler '{name}'; use one of {', '.join(SAMPLERS)} (--sampler).")
    return SAMPLERS[name](schedule, eta=eta)


def sampler_for(config: ModelConfig, name: Optional[str] = None, eta: float = 0.0) -> Sampler:
    """The sampler a model uses: ``name`` when given, else the model config's ``sampler``."""
    return make_sampler(name or config.sampler, NoiseSchedule.from_config(config), eta)

"""Sampling: the noise schedule (``schedule.py``), the samplers and their registry (``schedulers/``: DDIM,
DPM-Solver++), whole-volume patch prediction (``predictor.py``) and the shared diffusion loop (``loop.py``)."""

from .loop import SamplingHooks, run_sampler
from .predictor import Conditions, VolumeNoisePredictor
from .schedule import NoiseSchedule
from .schedulers import SAMPLERS, make_sampler, sampler_for
from .schedulers.base import Sampler
from .schedulers.ddim import DDIMSampler
from .schedulers.dpm_solver import DPMSolverPP2MSampler

__all__ = [
    "Conditions",
    "DDIMSampler",
    "DPMSolverPP2MSampler",
    "NoiseSchedule",
    "SAMPLERS",
    "Sampler",
    "SamplingHooks",
    "VolumeNoisePredictor",
    "make_sampler",
    "run_sampler",
    "sampler_for",
]

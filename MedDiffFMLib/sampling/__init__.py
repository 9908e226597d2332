"""Sampling: the noise schedule, the samplers (DDIM, DPM-Solver++), whole-volume patch prediction
and the shared diffusion loop."""

from .base import Sampler
from .ddim import DDIMSampler
from .dpm_solver import DPMSolverPP2MSampler
from .predictor import Conditions, VolumeNoisePredictor
from .sampler import SamplingHooks, run_sampler
from .samplers import SAMPLERS, make_sampler, sampler_for
from .schedule import NoiseSchedule

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

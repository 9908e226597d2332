"""Sampling: schedulers, whole-volume patch prediction and the shared diffusion loop."""

from .predictor import Conditions, VolumeNoisePredictor
from .sampler import SamplingHooks, run_sampler
from .schedulers import (
    add_noise,
    alpha_bar,
    ddim_step,
    noise_to_signal,
    prepare_timesteps,
    sampling_scheduler,
    step_for_noise,
    training_scheduler,
)

__all__ = [
    "Conditions",
    "VolumeNoisePredictor",
    "SamplingHooks",
    "run_sampler",
    "add_noise",
    "alpha_bar",
    "ddim_step",
    "noise_to_signal",
    "prepare_timesteps",
    "sampling_scheduler",
    "step_for_noise",
    "training_scheduler",
]

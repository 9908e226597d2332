"""Downstream tasks of MedDiff-FM, each built on the shared sampler."""

from .denoise import DenoiseOptions, DenoiseResult, denoise_image
from .engine import Engine, EngineOptions, prepare_ct

__all__ = ["DenoiseOptions", "DenoiseResult", "denoise_image", "Engine", "EngineOptions", "prepare_ct"]

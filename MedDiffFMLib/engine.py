"""The layer between sampling and the tasks: a loaded model on a device, the model grid of a volume,
the sampler, a seeded generator and a patch predictor. Loading the model once here lets a batch
reuse it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import SimpleITK as sitk
import torch

from .device import PRECISION_CHOICES, autocast_dtype, configure_cpu_runtime, resolve_device
from .errors import ModelError
from .models.loading import LoadedModel, load_pipeline_model
from .preprocessing import HUWindow, ModelSpace
from .sampling import Conditions, NoiseSchedule, Sampler, VolumeNoisePredictor, sampler_for
from .sampling.tiling import DEFAULT_OVERLAP


@dataclass
class EngineOptions:
    """How to run the network.

    Attributes:
        model: model name or folder (None: the default for the task's role).
        device: ``auto|cpu|cuda|mps``.
        batch_size: patches per network call (None: 8 on GPU, 1 on CPU, where a batch of 2 was no
            faster per patch and held twice the activations: benchmarks/results/speed_issue40_*.md).
        overlap: the least overlap of neighbouring patches, a fraction of the patch
            (:data:`~MedDiffFMLib.sampling.tiling.DEFAULT_OVERLAP`; Gaussian blending hides the seams).
        sampler: the reverse-diffusion solver (``ddim``, ``dpmpp_2m``; None: the model config's).
        threads: PyTorch's CPU threads on the CPU device (None: the cores this process may use).
        precision: the network's arithmetic: ``auto`` (bf16 on GPUs and on CPUs with native bf16, where
            it is 2x faster per patch at equal denoising quality; fp32 elsewhere), ``float32`` or
            ``bfloat16``.
    """

    model: Optional[str | Path] = None
    device: str = "auto"
    batch_size: Optional[int] = None
    overlap: float = DEFAULT_OVERLAP
    sampler: Optional[str] = None
    threads: Optional[int] = None
    precision: str = "auto"

    def validate(self) -> None:
        """Raise InputError (one paragraph) on a value out of range; loads nothing."""
        from . import option_checks as checks

        if self.batch_size is not None:
            checks.check_int(self.batch_size, "--batch-size", 1, why=" (patches per network call)")
        if self.threads is not None:
            checks.check_int(self.threads, "threads", 1, why=" (CPU threads of the network)")
        checks.check_choice(self.precision, "--precision", PRECISION_CHOICES)
        checks.check_number(self.overlap, "--overlap", 0.0, 1.0, high_open=True,
                            why=" (the fraction of a patch shared with its neighbour; 1 would never advance; "
                                f"the default {DEFAULT_OVERLAP} hides seams)")


class Engine:
    """A verified model on its device, ready to process any number of volumes."""

    def __init__(self, options: EngineOptions | None = None, role: str = "base", expect_task: Optional[str] = None):
        self.options = options or EngineOptions()
        self.options.validate()
        self.device = resolve_device(self.options.device)
        if self.device.type == "cpu":
            configure_cpu_runtime(self.options.threads)
        self.autocast_dtype = autocast_dtype(self.device, self.options.precision)
        self.loaded: LoadedModel = load_pipeline_model(self.options.model, role, self.device, expect_task)

    @property
    def config(self):
        return self.loaded.config

    @property
    def model_name(self) -> str:
        return self.loaded.files.name

    def window(self, region: Optional[str]) -> HUWindow:
        level, width = self.config.window_for(region)
        return HUWindow(level, width)

    def model_space(self, image: sitk.Image, region: Optional[str]) -> ModelSpace:
        """The image on the model's grid and intensity scale (padded to at least one patch)."""
        return ModelSpace.from_image(
            image, self.config.spacing_mm[::-1], self.window(region), min_size=self.config.patch_size
        )

    def predictor(
        self, space: ModelSpace, conditions: Conditions | None = None, crop_start: Sequence[int] = (0, 0, 0)
    ) -> VolumeNoisePredictor:
        """A patch predictor for ``space.model_array`` or for a crop of it starting at ``crop_start``
        (z, y, x): the crop keeps its whole-image position embedding."""
        batch = self.options.batch_size or (8 if self.device.type == "cuda" else 1)
        predictor = VolumeNoisePredictor(
            self.loaded.model,
            device=self.device,
            patch_size=self.config.patch_size,
            overlap=self.options.overlap,
            batch_size=batch,
            autocast_dtype=self.autocast_dtype,
            coordinate_shape=tuple(space.model_geometry.shape),
            coordinate_offset=tuple(before - start for (before, _), start in zip(space.padding, crop_start)),
        )
        if conditions is not None:
            predictor.set_conditions(conditions)
        return predictor

    @property
    def schedule(self) -> NoiseSchedule:
        """The model's noise schedule (alpha, sigma, adding noise, the step of a noise level)."""
        return NoiseSchedule.from_config(self.config)

    def sampler(self, eta: float = 0.0) -> Sampler:
        """A fresh sampler: ``EngineOptions.sampler`` or the model's, with DDIM stochasticity ``eta``."""
        return sampler_for(self.config, self.options.sampler, eta)

    @staticmethod
    def generator(seed: Optional[int]) -> torch.Generator:
        """A CPU generator: the same seed gives the same result on every device."""
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        return generator

    def region_index(self, region: Optional[str]) -> int:
        return self.config.region_index(region)

    def require_controlnet(self, task: str, what: str) -> None:
        """ModelError unless the loaded model is a ControlNet for ``task`` (``what``: the task's name
        for the user, e.g. "Lesion generation")."""
        control = self.loaded.files.controlnet_config
        if control is None or control.task != task:
            raise ModelError(f"{what} needs a '{task}' ControlNet model (--model); '{self.model_name}' is not one.")


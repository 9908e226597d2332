"""The noise schedule of a model: the forward process q(x_t | x_0) and its arithmetic.

One object answers every question the tasks and training ask about the diffusion process:
alpha and sigma at step t, adding noise, the step of a noise level, the training target and the
clean image predicted from a network output. The betas come from MONAI's named schedules (the
same tensor the model was trained with); ``prediction_type`` says what the network predicts.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from monai.networks.schedulers import DDPMScheduler

from ..errors import ModelError
from ..models.config import PREDICTION_TYPES, ModelConfig
from ..models.prediction import noise_from_output, training_target


class NoiseSchedule:
    """Forward diffusion x_t = alpha_t x_0 + sigma_t eps with alpha_t^2 = abar_t, sigma_t^2 = 1 - abar_t.

    Args:
        num_train_timesteps: T; steps are 0..T-1 and step -1 stands for the clean image.
        schedule: MONAI schedule name (``cosine``, ``linear_beta``, ``scaled_linear_beta``).
        prediction_type: what the network outputs (``epsilon``: the noise; ``v``: see
            :mod:`~MedDiffFMLib.models.prediction`, which holds the epsilon / v relation).
        clip_range: the model-unit range a predicted clean image is clipped to.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        schedule: str = "cosine",
        prediction_type: str = "epsilon",
        clip_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ModelError(f"Prediction type '{prediction_type}' is not supported; use one of {PREDICTION_TYPES}.")
        self.num_train_timesteps = int(num_train_timesteps)
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.clip_range = (float(clip_range[0]), float(clip_range[1]))
        # MONAI builds the betas (the same float32 tensor the model was trained with).
        self.alphas_cumprod: torch.Tensor = DDPMScheduler(
            num_train_timesteps=self.num_train_timesteps, schedule=schedule, clip_sample=False
        ).alphas_cumprod  # (T,) float32
        self._device_alphas: Optional[torch.Tensor] = None

    @classmethod
    def from_config(cls, config: ModelConfig) -> "NoiseSchedule":
        return cls(config.num_train_timesteps, config.schedule, config.prediction_type)

    # --- one step t (python floats, for the sampler) ---------------------------------------------

    def alpha_bar(self, t: int) -> float:
        """Cumulative signal fraction abar_t (1 before step 0, t = -1)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[int(t)])

    def alpha(self, t: int) -> float:
        """alpha_t = sqrt(abar_t): the signal scale of x_t."""
        return math.sqrt(self.alpha_bar(t))

    def sigma(self, t: int) -> float:
        """sigma_t = sqrt(1 - abar_t): the noise scale of x_t."""
        return math.sqrt(max(1.0 - self.alpha_bar(t), 0.0))

    def noise_to_signal(self, t: int) -> float:
        """sigma_t / alpha_t: the noise std of x_t / alpha_t in model units."""
        a = self.alpha_bar(t)
        return math.sqrt(max(1.0 - a, 0.0) / max(a, 1e-12))

    def step_for_noise(self, noise_to_signal: float) -> int:
        """The step whose noise-to-signal ratio is closest to ``noise_to_signal`` (model units)."""
        abar = self.alphas_cumprod.double()
        ratios = torch.sqrt((1.0 - abar) / abar.clamp_min(1e-12))
        return int(torch.argmin((ratios - float(noise_to_signal)).abs()))

    def add_noise(self, x0: torch.Tensor, t: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        """A sample of q(x_t | x_0) with fresh noise from ``generator`` (every sample of the batch at step t)."""
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return self.noisy(x0, noise, torch.full((x0.shape[0],), int(t), dtype=torch.long, device=x0.device))

    def renoise(self, x_s: torch.Tensor, s: int, t: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        """A sample of q(x_t | x_s) for t > s: back up the chain with fresh noise (RePaint)."""
        ratio = self.alpha_bar(t) / self.alpha_bar(s)
        noise = torch.randn(x_s.shape, generator=generator, dtype=x_s.dtype, device=x_s.device)
        return math.sqrt(ratio) * x_s + math.sqrt(max(1 - ratio, 0.0)) * noise

    def predict_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """The clean image the noise estimate ``eps`` implies at step t (not clipped). The samplers only
        see noise: :meth:`noise_from_output` turns a v-predicting network's output into it first."""
        a = self.alpha_bar(t)
        return (x_t - math.sqrt(1.0 - a) * eps) / math.sqrt(a)

    def noise_for_x0(self, x_t: torch.Tensor, x0: torch.Tensor, t: int) -> torch.Tensor:
        """The noise estimate that implies clean image ``x0`` at step t (inverse of :meth:`predict_x0`)."""
        a = self.alpha_bar(t)
        return (x_t - math.sqrt(a) * x0) / math.sqrt(max(1 - a, 1e-12))

    def clip(self, x0: torch.Tensor) -> torch.Tensor:
        return x0.clamp(*self.clip_range)

    # --- batches of steps (tensors, for training) -------------------------------------------------

    def _alphas_on(self, device: torch.device) -> torch.Tensor:
        if self._device_alphas is None or self._device_alphas.device != device:
            self._device_alphas = self.alphas_cumprod.to(device, torch.float32)
        return self._device_alphas

    def noisy(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t for a batch: sample b at step ``t[b]`` with the given ``noise``."""
        a = self.abar_of(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def abar_of(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """abar of each sample's step ``t[b]``, shaped to broadcast over ``like`` (B, ...)."""
        return self._alphas_on(like.device)[t].view(-1, *([1] * (like.ndim - 1)))

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output for (x0, noise, t): the noise for ``epsilon``, v for ``v``."""
        return training_target(x0, noise, self.abar_of(t, x0), self.prediction_type)

    def noise_from_output(self, output: torch.Tensor, x_t: torch.Tensor, t: "int | torch.Tensor") -> torch.Tensor:
        """The noise a network output implies for ``x_t`` at step ``t`` (one int, or one step per sample)."""
        if self.prediction_type == "epsilon":
            return output
        abar = self.alpha_bar(t) if isinstance(t, int) else self.abar_of(t, output)
        return noise_from_output(output, x_t, abar, self.prediction_type)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t) of a batch of steps (for loss weighting)."""
        a = self._alphas_on(t.device)[t]
        return a / (1 - a).clamp_min(1e-12)

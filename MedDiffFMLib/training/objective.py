"""Training objectives: what is trained and how the loss is computed. One trainer runs them all.

``DiffusionObjective`` trains the base U-Net (pre-training); ``ControlNetObjective`` trains a
ControlNet against a frozen base (fine-tuning), with a pluggable condition builder.
The loss is the paper's: L1 between the predicted and the true noise of the forward process
(cosine DDPM, T = 1000, from :class:`~MedDiffFMLib.sampling.NoiseSchedule`).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..models.config import ControlNetConfig, ModelConfig
from ..models.network import ConditionedModel, MedDiffFMControlNet, MedDiffFMUNet
from ..models.inputs import anatomy_one_hot, network_input
from ..sampling.schedule import NoiseSchedule
from .conditions import ConditionBuilder


def build_model_input(x_t: torch.Tensor, coords: torch.Tensor, anatomy: Optional[torch.Tensor],
                      config: ModelConfig) -> torch.Tensor:
    """The U-Net input of a training batch by the network-input contract (labels (B, z, y, x) -> one-hot)."""
    one_hot = anatomy_one_hot(anatomy, config.anatomy_channels, x_t.float()) if config.anatomy_channels else None
    return network_input(x_t, coords, one_hot, config)


class DiffusionObjective:
    """Pre-training of the base U-Net."""

    kind = "unet"
    builder: Optional[ConditionBuilder] = None

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.schedule = NoiseSchedule.from_config(config)

    def build_model(self) -> ConditionedModel:
        return ConditionedModel(MedDiffFMUNet(self.config))

    def trainable(self, model: ConditionedModel) -> nn.Module:
        """The sub-module whose weights are optimised, averaged (EMA) and exported."""
        return model.unet

    def noisy(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.noisy(x0, noise, t)

    def per_sample_loss(self, model: nn.Module, batch: dict, device: torch.device, autocast) -> torch.Tensor:
        """L1 noise-prediction loss of each sample of ``batch`` (a tensor of shape (B,))."""
        x0 = batch["image"].to(device, non_blocking=True)
        noise = batch["noise"].to(device, non_blocking=True)
        t = batch["timestep"].to(device)
        x_t = self.noisy(x0, noise, t)
        anatomy = batch["anatomy"] if self.config.anatomy_channels else None
        inputs = build_model_input(x_t, batch["coords"].to(device), anatomy, self.config)
        control = batch["control"].to(device) if "control" in batch else None
        with autocast():
            pred = model(inputs, t, batch["region"].to(device), control)
        target = self.schedule.training_target(x0, noise, t)
        return (pred.float() - target).abs().flatten(1).mean(dim=1)


class ControlNetObjective(DiffusionObjective):
    """Fine-tuning a ControlNet for a task; the base U-Net is frozen."""

    kind = "controlnet"

    def __init__(self, config: ModelConfig, base: MedDiffFMUNet, control: ControlNetConfig,
                 builder: ConditionBuilder) -> None:
        super().__init__(config)
        self.base = base
        self.control = control
        self.builder = builder

    def build_model(self) -> ConditionedModel:
        controlnet = MedDiffFMControlNet(self.config, self.control)
        controlnet.initialise_from(self.base)
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.base.eval()
        return ConditionedModel(self.base, controlnet)

    def trainable(self, model: ConditionedModel) -> nn.Module:
        assert model.controlnet is not None
        return model.controlnet

"""Training objectives: what is trained and how the loss is computed. One trainer runs them all.

``DiffusionObjective`` trains the base U-Net (pre-training); ``ControlNetObjective`` trains a
ControlNet against a frozen base (fine-tuning), with a pluggable condition builder.
The loss is the paper's: L1 between the predicted and the true noise of the forward process
(cosine DDPM, T = 1000, from :class:`~MedDiffFMLib.sampling.NoiseSchedule`); a model config may
predict v instead (``prediction_type``), and a :class:`~.recipe.Recipe` may weight the loss per time
step (docs/TRAINING.md, "Training recipe").
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..models.config import ControlNetConfig, ModelConfig
from ..models.network import ConditionedModel, MedDiffFMControlNet, MedDiffFMUNet
from ..models.inputs import anatomy_one_hot, network_input
from ..sampling.schedule import NoiseSchedule
from .condition_builders import ConditionBuilder
from .recipe import Recipe


def build_model_input(x_t: torch.Tensor, coords: torch.Tensor, anatomy: Optional[torch.Tensor],
                      config: ModelConfig) -> torch.Tensor:
    """The U-Net input of a training batch by the network-input contract (labels (B, z, y, x) -> one-hot)."""
    one_hot = anatomy_one_hot(anatomy, config.anatomy_channels, x_t.float()) if config.anatomy_channels else None
    return network_input(x_t, coords, one_hot, config)


class DiffusionObjective:
    """Pre-training of the base U-Net."""

    kind = "unet"
    builder: Optional[ConditionBuilder] = None

    def __init__(self, config: ModelConfig, recipe: Optional[Recipe] = None) -> None:
        self.config = config
        self.recipe = recipe or Recipe()
        self.schedule = NoiseSchedule.from_config(config)

    def build_model(self) -> ConditionedModel:
        return ConditionedModel(MedDiffFMUNet(self.config))

    def trainable(self, model: ConditionedModel) -> nn.Module:
        """The sub-module whose weights are optimised, averaged (EMA) and exported."""
        return model.unet

    def _forward(self, model: nn.Module, batch: dict, device: torch.device, autocast):
        x0 = batch["image"].to(device, non_blocking=True)
        noise = batch["noise"].to(device, non_blocking=True)
        t = batch["timestep"].to(device)
        x_t = self.schedule.noisy(x0, noise, t)
        anatomy = batch["anatomy"] if self.config.anatomy_channels else None
        inputs = build_model_input(x_t, batch["coords"].to(device), anatomy, self.config)
        control = batch["control"].to(device) if "control" in batch else None
        with autocast():
            output = model(inputs, t, batch["region"].to(device), control)
        return output.float(), x0, noise, x_t, t

    def predicted_noise(self, model: nn.Module, batch: dict, device: torch.device, autocast) -> torch.Tensor:
        """The noise the model implies for ``batch`` (whatever it predicts), as inference sees it."""
        output, _, _, x_t, t = self._forward(model, batch, device, autocast)
        return self.schedule.noise_from_output(output, x_t, t)

    def per_sample_loss(self, model: nn.Module, batch: dict, device: torch.device, autocast) -> torch.Tensor:
        """L1 loss of each sample of ``batch`` (a tensor of shape (B,)).

        In training mode: L1 to the model's target (noise or v), weighted by the recipe (per voxel on
        lesions, per sample by time step). In eval mode (validation): the unweighted L1 of the implied
        noise, so runs of any recipe compare.
        """
        output, x0, noise, x_t, t = self._forward(model, batch, device, autocast)
        if not model.training:
            return (self.schedule.noise_from_output(output, x_t, t) - noise).abs().flatten(1).mean(dim=1)
        error = (output - self.schedule.training_target(x0, noise, t)).abs()
        weights = (self.recipe.voxel_weights(batch["lesion"].to(device), self.config.spacing_mm)
                   if "lesion" in batch else None)
        if weights is None:
            loss = error.flatten(1).mean(dim=1)
        else:  # a weighted mean: a crop without a lesion keeps the plain mean's scale; one all inside
            # an excluded lesion weighs nothing (clamp: 0 / 1 rather than 0 / 0)
            loss = (error * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1).clamp_min(1.0)
        return loss * self.recipe.loss_weight(self.schedule.abar_of(t, x0).flatten(), self.config.prediction_type)


class ControlNetObjective(DiffusionObjective):
    """Fine-tuning a ControlNet for a task; the base U-Net is frozen."""

    kind = "controlnet"

    def __init__(self, config: ModelConfig, base: MedDiffFMUNet, control: ControlNetConfig,
                 builder: ConditionBuilder, recipe: Optional[Recipe] = None) -> None:
        super().__init__(config, recipe)
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

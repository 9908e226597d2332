"""Exponential moving average of the trained weights (what is exported and validated)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copy of a module's floating-point state, updated after each optimiser step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` so that early weights do not linger.
    """

    def __init__(self, module: nn.Module, decay: float = 0.999) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {k: v.detach().clone().float() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for key, value in module.state_dict().items():
            shadow = self.shadow[key]
            if value.dtype.is_floating_point:
                shadow.mul_(d).add_(value.detach().float(), alpha=1.0 - d)
            else:
                shadow.copy_(value)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict({k: v.to(module.state_dict()[k].dtype) for k, v in self.shadow.items()})

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.shadow = {k: v.to(device).float() for k, v in state["shadow"].items()}

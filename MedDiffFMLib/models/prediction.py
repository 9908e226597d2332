"""What the network predicts, and the noise it implies: the one place for the epsilon / v relation.

With ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps`` the network's output is either

* ``epsilon``: the noise ``eps`` (the paper's target), or
* ``v``: ``sqrt(abar) eps - sqrt(1 - abar) x0`` (Salimans & Ho 2022), from which
  ``eps = sqrt(abar) v + sqrt(1 - abar) x_t``.

Training builds its target with :func:`training_target`; inference turns every output into a noise
estimate with :func:`noise_from_output`, so the sampler and the tasks only ever see epsilon.
"""

from __future__ import annotations

import torch

from .config import PREDICTION_TYPES

__all__ = ["PREDICTION_TYPES", "training_target", "noise_from_output"]


def training_target(x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor | float,
                    prediction_type: str) -> torch.Tensor:
    """The regression target for a clean image ``x0`` noised with ``noise`` at signal fraction ``abar``."""
    if prediction_type == "epsilon":
        return noise
    abar = torch.as_tensor(abar, dtype=torch.float32, device=x0.device)
    return abar.sqrt() * noise - (1.0 - abar).sqrt() * x0


def noise_from_output(output: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor | float,
                      prediction_type: str) -> torch.Tensor:
    """The noise estimate implied by the network ``output`` for the sample ``x_t`` at ``abar``."""
    if prediction_type == "epsilon":
        return output
    abar = torch.as_tensor(abar, dtype=torch.float32, device=output.device)
    return abar.sqrt() * output + (1.0 - abar).sqrt() * x_t.to(output.dtype)

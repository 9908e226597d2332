"""The network-input contract: what the U-Net is fed, built in one place for training and inference.

Channels, in order: the noisy image x_t (1), the sinusoidal embedding of each voxel's whole-image
coordinates (``config.position_channels``, :mod:`.position`), the anatomy one-hot
(``config.anatomy_channels``: label ``c`` in 1..C -> channel ``c - 1``; background, labels above C
and missing or dropped anatomy -> all zeros). The body region is a class label beside the input.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .config import ModelConfig
from .position import grid_embedding, sinusoidal_embedding


def anatomy_one_hot(labels: Optional[torch.Tensor | np.ndarray], channels: int, like: torch.Tensor) -> torch.Tensor:
    """(B, channels, z, y, x) one-hot of integer ``labels`` (B, z, y, x) on ``like``'s device and dtype.

    ``labels=None`` (no anatomy, or anatomy dropped in training) gives all zeros.
    """
    batch, spatial = like.shape[0], like.shape[2:]
    out = torch.zeros((batch, int(channels), *spatial), device=like.device, dtype=like.dtype)
    if labels is None or channels <= 0:
        return out
    labels = torch.as_tensor(labels).to(like.device).long()
    valid = (labels >= 1) & (labels <= channels)
    index = (labels.clamp(1, channels) - 1).unsqueeze(1)
    out.scatter_(1, index, valid.unsqueeze(1).to(out.dtype))
    return out


def network_input(
    x_t: torch.Tensor,
    coords: Optional[torch.Tensor],
    anatomy: Optional[torch.Tensor],
    config: ModelConfig,
    axes: Optional[Sequence[Sequence[torch.Tensor]]] = None,
) -> torch.Tensor:
    """The U-Net input (B, ``config.input_channels``, z, y, x).

    Args:
        x_t: (B, 1, z, y, x) noisy image in model units.
        coords: (B, 3, z, y, x) normalised whole-image coordinates (:func:`.position.grid_coordinates`);
            ignored when the model has no position embedding.
        anatomy: (B, C, z, y, x) anatomy one-hot (:func:`anatomy_one_hot`), or None for all zeros.
        config: the model config (which channels exist).
        axes: instead of ``coords``, each sample's box as its three axes of coordinates
            (:func:`.position.grid_axes`; the sliding window's patches): the same embedding, made axis by
            axis straight into the input (a third of the time on a CPU).
    """
    if config.position_channels and axes is not None:
        return _box_input(x_t, axes, anatomy, config)
    parts = [x_t.float()]
    if config.position_channels:
        if coords is None:
            raise ValueError("This model embeds whole-image coordinates; pass coords.")
        parts.append(sinusoidal_embedding(coords.to(x_t.device, torch.float32), config.position_frequencies))
    if config.anatomy_channels:
        parts.append(_anatomy_channels(anatomy, x_t, config))
    return torch.cat(parts, dim=1)


def _anatomy_channels(anatomy: Optional[torch.Tensor], x_t: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    if anatomy is None:
        return anatomy_one_hot(None, config.anatomy_channels, x_t.float())
    return anatomy.to(x_t.device, torch.float32)


def _box_input(x_t: torch.Tensor, axes: Sequence[Sequence[torch.Tensor]], anatomy: Optional[torch.Tensor],
               config: ModelConfig) -> torch.Tensor:
    """:func:`network_input` for boxes given by their axes, written into one buffer (no concatenation)."""
    batch, spatial = x_t.shape[0], x_t.shape[2:]
    out = torch.empty((batch, config.input_channels, *spatial), device=x_t.device, dtype=torch.float32)
    out[:, :1] = x_t
    position = slice(1, 1 + config.position_channels)
    for index, box in enumerate(axes):
        grid_embedding([axis.to(x_t.device) for axis in box], config.position_frequencies, out=out[index, position])
    if config.anatomy_channels:
        out[:, position.stop:] = _anatomy_channels(anatomy, x_t, config)
    return out

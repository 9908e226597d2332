"""Whole-image position embedding (MedDiff-FM): NeRF-style sinusoids of normalised coordinates.

Each voxel's coordinates in the *whole* image are scaled to [-1, 1], so a patch knows where in the
body it lies; the embedding of a patch is the crop of the whole volume's embedding.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def normalised_axis(start: float, stop: float, count: int, full_length: int, device=None) -> torch.Tensor:
    """Coordinates in [-1, 1] of ``count`` voxels spanning index ``start``..``stop`` (inclusive) of an
    axis of ``full_length`` voxels. Indices outside 0..full_length-1 (padding) map beyond [-1, 1]."""
    idx = torch.linspace(start, stop, count, device=device, dtype=torch.float32) if count > 1 else torch.tensor(
        [float(start)], device=device
    )
    scale = 2.0 / max(full_length - 1, 1)
    return idx * scale - 1.0


def grid_coordinates(
    starts: Sequence[float], stops: Sequence[float], shape: Sequence[int], full_shape: Sequence[int], device=None
) -> torch.Tensor:
    """(3, *shape) normalised whole-image coordinates of a box of voxel indices.

    ``starts``/``stops`` are the (possibly fractional) voxel indices of the box's first and last
    voxel centres along (z, y, x) in a volume of ``full_shape`` voxels.
    """
    axes = [normalised_axis(a, b, n, f, device) for a, b, n, f in zip(starts, stops, shape, full_shape)]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([zz, yy, xx])


def sinusoidal_embedding(coords: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """Embed (B, 3, ...) coordinates as (B, 3 + 6 * num_frequencies, ...): the raw coordinates, then
    sin and cos of ``2**k * pi * coord`` for k = 0..num_frequencies-1."""
    if num_frequencies <= 0:
        return coords[:, :0]
    features = [coords]
    for k in range(num_frequencies):
        scaled = coords * (math.pi * 2.0**k)
        features.append(torch.sin(scaled))
        features.append(torch.cos(scaled))
    return torch.cat(features, dim=1)

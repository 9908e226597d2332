"""Where the patches of a sliding window go: as few as the overlap allows, spread evenly, over the body.

MONAI's sliding window steps by ``int(patch * (1 - overlap))`` and pushes the last window back to the
volume's end, so the window count jumps with the volume's size: 272 voxels and an 80-voxel patch at
overlap 0.25 take 5 windows where 4 would still overlap by 16 voxels. :func:`fitted_overlaps` picks,
per axis, the fewest windows whose neighbours overlap by at least ``overlap * patch`` voxels and the
stride that spreads them evenly, and hands MONAI the per-axis overlap that gives that stride; MONAI
still enumerates the windows and blends them. :func:`body_box` is the box the windows need to cover
when only the body's voxels use the network's answer (restoration tasks): the rest is known already.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

# The least overlap of neighbouring patches, as a fraction of the patch (EngineOptions, --overlap): an
# eighth of an 80-voxel patch (10 voxels) under Gaussian blending leaves no seam in the denoising and
# super-resolution benchmarks (benchmarks/results/tiling_issue40.md) and saves a third of the patches
# on the bundled sample against MONAI's windows at 0.25.
DEFAULT_OVERLAP = 0.125


def axis_windows(size: int, patch: int, overlap: float) -> tuple[int, int]:
    """(count, stride) of the fewest windows of ``patch`` voxels that cover ``size`` voxels with
    neighbours overlapping by at least ``ceil(overlap * patch)`` voxels, the stride spreading them evenly."""
    if size <= patch:
        return 1, patch
    least = min(patch - 1, math.ceil(overlap * patch))
    count = math.ceil((size - least) / (patch - least))  # >= 2, as size > patch
    stride = math.ceil((size - patch) / (count - 1))
    # The even stride may reach the end with a window to spare (MONAI then stops there).
    count = math.ceil((size - patch) / stride) + 1
    return count, stride


def fitted_overlaps(shape: Sequence[int], patch: Sequence[int], overlap: float) -> tuple[float, ...]:
    """Per-axis overlap fractions for MONAI's ``sliding_window_inference`` that give the windows of
    :func:`axis_windows` (MONAI's stride is ``int(patch * (1 - overlap))``)."""
    fractions = []
    for size, length in zip(shape, patch):
        _, stride = axis_windows(int(size), int(length), overlap)
        # Half a voxel above the stride, so int() lands on it despite rounding.
        fractions.append(0.0 if stride >= length else 1.0 - (stride + 0.5) / length)
    return tuple(fractions)


def window_count(shape: Sequence[int], patch: Sequence[int], overlap: float) -> int:
    """How many patches one network pass over a volume of ``shape`` evaluates (before any skip)."""
    return math.prod(axis_windows(int(s), int(p), overlap)[0] for s, p in zip(shape, patch))


def body_box(body: Optional[torch.Tensor], patch: Sequence[int]) -> Optional[tuple[slice, ...]]:
    """The (z, y, x) box the windows must cover for ``body`` (bool): its bounding box, grown evenly to
    at least one patch and kept inside the volume. None when there is no body voxel (or no mask)."""
    if body is None:
        return None
    box = []
    for axis, length in enumerate(patch):
        other = tuple(a for a in range(body.dim()) if a != axis)
        present = torch.nonzero(body.any(dim=other)).flatten()
        if present.numel() == 0:
            return None
        size = body.shape[axis]
        low, high = int(present[0]), int(present[-1]) + 1
        short = max(0, int(length) - (high - low))
        low -= short // 2
        high += short - short // 2
        shift = max(0, -low) - max(0, high - size)
        box.append(slice(max(0, low + shift), min(size, high + shift)))
    return tuple(box)

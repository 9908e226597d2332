"""The physical size of a volume, checked against the grid the model works on before any resampling.

A header with a wrong spacing (1000 mm voxels) makes a volume of kilometres: resampling it to the
model grid would try to allocate terabytes. A volume smaller than the model's voxels has nothing the
model could change. Both are refused up front, with the sizes that show what is wrong.
"""

from __future__ import annotations

import math
from typing import Sequence

import SimpleITK as sitk

from ..device import check_fits_in_memory
from ..errors import InputError

# No CT covers more than this along an axis (a whole-body scan is about 2 m long).
MAX_EXTENT_MM = 3000.0


def _dims(values: Sequence[float], unit: str = "", digits: int = 1) -> str:
    return " x ".join(f"{v:,.{digits}f}" for v in values) + unit


def model_grid_size(image: sitk.Image, spacing_xyz: Sequence[float]) -> tuple[int, int, int]:
    """(x, y, z) voxels the image's physical extent covers at ``spacing_xyz`` mm."""
    extent = [n * s for n, s in zip(image.GetSize(), image.GetSpacing())]
    return tuple(max(1, math.ceil(e / t - 1e-6)) for e, t in zip(extent, spacing_xyz))  # type: ignore[return-value]


def check_extent(image: sitk.Image, spacing_xyz: Sequence[float], name: str = "input", copies: float = 6.0) -> None:
    """Raise InputError when the ``name`` volume is larger than any CT, or smaller than two voxels of the
    model's ``spacing_xyz`` (mm) grid along an axis; ResourceError when its model grid cannot fit in memory."""
    size, spacing = image.GetSize(), image.GetSpacing()
    extent = [n * s for n, s in zip(size, spacing)]
    grid = model_grid_size(image, spacing_xyz)
    voxels = math.prod(grid)
    where = (f"{_dims(size, digits=0)} voxels of {_dims(spacing, ' mm', 3)}")
    model = f"the model's {_dims(spacing_xyz, ' mm', 2)} grid"
    if max(extent) > MAX_EXTENT_MM:
        raise InputError(
            f"The {name} covers {_dims([e / 1000 for e in extent], ' m', 2)} ({where}); on {model} that would be "
            f"{voxels:.3g} voxels ({voxels * 4 / 2**30:,.3g} GiB per float copy). No CT is that large: the voxel "
            "spacing in the file header is probably wrong (CT spacing is normally 0.2-10 mm). Fix the header's "
            "spacing and try again. Nothing was processed."
        )
    small = [axis for axis, (e, t) in zip("xyz", zip(extent, spacing_xyz)) if e < 2 * t]
    if small:
        raise InputError(
            f"The {name} covers only {_dims(extent, ' mm', 2)} ({where}): less than two voxels of {model} along "
            f"{', '.join(small)}, so the model has nothing to work on. Check the voxel spacing in the file header, "
            "or give a larger volume. Nothing was processed."
        )
    check_fits_in_memory(voxels, copies, f"Processing the {name} on {model} ({_dims(grid, digits=0)} voxels)")

"""DICOM series acquired with a gantry tilt: detected and resampled onto a regular grid.

With a tilted gantry, each slice is shifted within its own plane relative to the previous one, so
the slice positions (ImagePositionPatient) do not follow the normal of the slice orientation.
GDCM only warns, and ITK then builds the volume along the normal with the distance between
positions as spacing: every slice after the first lands in the wrong place (a vertical structure
comes out slanted, and the z spacing is too large).

The exact geometry is a sheared grid: voxel (i, j, k) lies at P0 + i sx row + j sy col + k d, with d
the step between slice positions. ITK accepts that (non-orthogonal) direction, so the correct
volume is that sheared image resampled (linear) onto a regular grid along the normal that covers
it; voxels outside the scanned field get the image's minimum (air).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

# Shifts below this fraction of the in-plane voxel size over the whole stack are no tilt.
_NEGLIGIBLE_SHIFT = 0.1
NOTE_KEY = "MedDiffFM_note"


def slice_positions(reader: sitk.ImageSeriesReader) -> Optional[np.ndarray]:
    """(slices, 3) ImagePositionPatient of each file (read with MetaDataDictionaryArrayUpdateOn),
    or None when a file has none."""
    positions = []
    for k in range(len(reader.GetFileNames())):
        if not reader.HasMetaDataKey(k, "0020|0032"):
            return None
        try:
            positions.append([float(v) for v in reader.GetMetaData(k, "0020|0032").split("\\")])
        except ValueError:
            return None
    return np.asarray(positions, dtype=float)


def tilt_of(image: sitk.Image, positions: Optional[np.ndarray]) -> Optional[Tuple[float, np.ndarray]]:
    """(tilt angle in degrees, mean step between slice positions) when the positions leave the
    normal by a noticeable shift over the stack; None otherwise."""
    if positions is None or len(positions) < 2:
        return None
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    normal = direction[:, 2]
    step = (positions[-1] - positions[0]) / (len(positions) - 1)
    along = float(step @ normal)
    across = step - along * normal
    shift = float(np.linalg.norm(across)) * (len(positions) - 1)
    if shift <= _NEGLIGIBLE_SHIFT * min(image.GetSpacing()[:2]) or abs(along) < 1e-6:
        return None
    return math.degrees(math.atan2(float(np.linalg.norm(across)), abs(along))), step


def resample_tilted(image: sitk.Image, positions: np.ndarray, step: np.ndarray, angle: float,
                    where: str) -> sitk.Image:
    """The tilted series on a regular grid (see the module doc), with a note in its metadata under
    :data:`NOTE_KEY`. Raises InputError when the slice steps are uneven."""
    steps = np.diff(positions, axis=0)
    length = float(np.linalg.norm(step))
    if float(np.max(np.linalg.norm(steps - step, axis=1))) > max(0.01, 0.01 * length):
        raise InputError(
            f"The DICOM series {where} was acquired with a gantry tilt (about {angle:.1f} degrees) and its "
            "slices are not evenly spaced, so it cannot be put on a regular grid. Check that no file is missing, "
            "or resample it in 3D Slicer (Volumes module) first."
        )
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    row, col, normal = direction[:, 0], direction[:, 1], direction[:, 2]
    if step @ normal < 0:
        normal = -normal
    sx, sy = image.GetSpacing()[:2]
    array = sitk.GetArrayFromImage(image)
    sheared = sitk.GetImageFromArray(array.astype(np.float32))
    sheared.SetSpacing((sx, sy, length))
    sheared.SetOrigin(tuple(float(v) for v in positions[0]))
    sheared.SetDirection(tuple(np.column_stack([row, col, step / length]).ravel().tolist()))
    # The regular grid: axes row, col, normal; its box covers the eight corners of the sheared one.
    nx, ny, nz = image.GetSize()
    corners = np.array([positions[0] + i * sx * row + j * sy * col + k * step
                        for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)])
    axes = np.column_stack([row, col, normal])
    local = corners @ axes
    spacing = (sx, sy, float(step @ normal))
    low, high = local.min(axis=0), local.max(axis=0)
    size = [int(math.floor((h - lo) / s + 1e-6)) + 1 for lo, h, s in zip(low, high, spacing)]
    origin = axes @ low
    air = float(array.min())
    regular = sitk.Resample(sheared, size, sitk.Transform(), sitk.sitkLinear, tuple(origin.tolist()), spacing,
                            tuple(axes.ravel().tolist()), air, sitk.sitkFloat32)
    values = sitk.GetArrayFromImage(regular)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        values = np.clip(np.rint(values), info.min, info.max).astype(array.dtype)
    result = sitk.GetImageFromArray(values)
    result.CopyInformation(regular)
    for key in image.GetMetaDataKeys():
        result.SetMetaData(key, image.GetMetaData(key))
    shift = float(np.linalg.norm(step - (step @ normal) * normal))
    result.SetMetaData(NOTE_KEY, (
        f"the DICOM series {where} was acquired with a gantry tilt of {angle:.1f} degrees (each slice shifted "
        f"{shift:.2f} mm in its plane); it was resampled (linear) onto a regular grid of {size[0]}x{size[1]}x{size[2]} "
        f"voxels with {spacing[2]:.3g} mm between slices along their normal, the field outside the scan set to "
        f"{air:.0f}."
    ))
    return result

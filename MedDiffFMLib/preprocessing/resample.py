"""Resampling with SimpleITK: to a new spacing (same extent), or onto another image's grid."""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import Geometry, blank_image, geometry_of

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
    "nearest": sitk.sitkNearestNeighbor,
}

Spacing = Union[float, Sequence[float]]


def _interpolator(name: str) -> int:
    try:
        return _INTERPOLATORS[name]
    except KeyError:
        raise ValueError(f"interpolator must be one of {sorted(_INTERPOLATORS)}; got {name!r}") from None


def _spacing3(spacing: Spacing) -> Tuple[float, float, float]:
    arr = np.atleast_1d(np.asarray(spacing, dtype=float)).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.all(arr > 0) or not np.all(np.isfinite(arr)):
        raise InputError(
            f"The target spacing must be one positive number or three (x, y, z), in mm; got {spacing!r}."
        )
    return tuple(float(v) for v in arr)  # type: ignore[return-value]


def grid_for_spacing(image: Union[sitk.Image, Geometry], spacing: Spacing) -> Geometry:
    """The grid with ``spacing`` (mm, ``(x, y, z)`` or one number) covering the same physical
    extent as ``image``: same origin and direction, size = round(extent / spacing), at least 1."""
    g = geometry_of(image)
    sp = _spacing3(spacing)
    size = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(g.size, g.spacing, sp))
    return Geometry(size=size, spacing=sp, origin=g.origin, direction=g.direction)


def _output_type(image: sitk.Image, interpolator: str) -> int:
    # Interpolated values of an integer image would be truncated: give them float32.
    if interpolator == "nearest" or image.GetPixelID() == sitk.sitkFloat64:
        return image.GetPixelID()
    return sitk.sitkFloat32


def resample_like(
    image: sitk.Image,
    reference: Union[sitk.Image, Geometry],
    interpolator: str = "linear",
    default_value: float = 0.0,
    extrapolate: bool = False,
) -> sitk.Image:
    """Resample ``image`` onto the grid of ``reference`` by physical position.

    Points of the reference outside ``image`` get ``default_value``, or, with ``extrapolate``,
    the nearest voxel's value. "linear" and "bspline" give float32 (float64 stays float64);
    "nearest" keeps the pixel type.
    """
    ref = reference if isinstance(reference, sitk.Image) else blank_image(reference)
    return sitk.Resample(
        image,
        ref,
        sitk.Transform(),
        _interpolator(interpolator),
        float(default_value),
        _output_type(image, interpolator),
        bool(extrapolate),
    )


def resample_to_spacing(
    image: sitk.Image,
    spacing: Spacing,
    interpolator: str = "linear",
    default_value: float = 0.0,
) -> sitk.Image:
    """Resample ``image`` to ``spacing`` (mm; one number or ``(x, y, z)``) keeping its origin and
    direction (oblique directions included); the new size covers the same physical extent.

    Samples up to half a new voxel beyond the last input voxel centre take the nearest voxel's
    value (they lie inside the input's voxel extent); ``default_value`` is then practically
    never used. Output type as in :func:`resample_like`.
    """
    return resample_like(
        image, grid_for_spacing(image, spacing), interpolator, default_value, extrapolate=True
    )

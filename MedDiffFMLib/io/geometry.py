"""Image geometry (size, spacing, origin, direction) and numpy <-> SimpleITK conversion.

Conventions: numpy arrays are in SimpleITK's array order ``(z, y, x)``; ``size``, ``spacing`` and
``origin`` are in SimpleITK's index order ``(x, y, z)``; ``direction`` is the 3x3 matrix of
direction cosines flattened row by row (9 floats), as ``SimpleITK.Image.GetDirection()`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

Vector3 = Union[float, Sequence[float]]


@dataclass(frozen=True)
class Geometry:
    """The sampling grid of a 3D image, in SimpleITK order (see the module docstring)."""

    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]

    @property
    def shape(self) -> Tuple[int, ...]:
        """The numpy array shape ``(z, y, x)`` of an image on this grid."""
        return tuple(reversed(self.size))

    @property
    def direction_matrix(self) -> np.ndarray:
        """The direction cosines as a ``(3, 3)`` array (columns are the index axes)."""
        n = len(self.size)
        return np.asarray(self.direction, dtype=float).reshape(n, n)


def geometry_of(image: Union[sitk.Image, Geometry]) -> Geometry:
    """Return the :class:`Geometry` of ``image`` (a Geometry is returned unchanged)."""
    if isinstance(image, Geometry):
        return image
    return Geometry(
        size=tuple(int(s) for s in image.GetSize()),
        spacing=tuple(float(s) for s in image.GetSpacing()),
        origin=tuple(float(o) for o in image.GetOrigin()),
        direction=tuple(float(d) for d in image.GetDirection()),
    )


def same_geometry(
    a: Union[sitk.Image, Geometry], b: Union[sitk.Image, Geometry], tol: float = 1e-6
) -> bool:
    """True when ``a`` and ``b`` have the same size and, within ``tol`` (absolute, in mm for
    spacing and origin), the same spacing, origin and direction."""
    ga, gb = geometry_of(a), geometry_of(b)
    if ga.size != gb.size:
        return False
    return all(
        np.allclose(getattr(ga, f), getattr(gb, f), rtol=0.0, atol=tol)
        for f in ("spacing", "origin", "direction")
    )


def copy_geometry(src: Union[sitk.Image, Geometry], dst: sitk.Image) -> sitk.Image:
    """Give ``dst`` the spacing, origin and direction of ``src`` (in place) and return it.

    Raises ValueError when the sizes differ: that is a programming error, not a user one.
    """
    g = geometry_of(src)
    if tuple(dst.GetSize()) != g.size:
        raise ValueError(f"copy_geometry: size {dst.GetSize()} differs from {g.size}")
    dst.SetSpacing(g.spacing)
    dst.SetOrigin(g.origin)
    dst.SetDirection(g.direction)
    return dst


def _vector3(value: Optional[Vector3], default: float, what: str) -> Tuple[float, float, float]:
    if value is None:
        return (default,) * 3
    arr = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3:
        raise InputError(f"The {what} must be one number or three numbers (x, y, z); got {value!r}.")
    return tuple(float(v) for v in arr)  # type: ignore[return-value]


def _direction9(direction: Optional[Sequence[float]]) -> Tuple[float, ...]:
    if direction is None:
        return tuple(np.eye(3).ravel())
    arr = np.asarray(direction, dtype=float).ravel()
    if arr.size != 9:
        raise InputError(
            f"The direction must be a 3x3 matrix (or 9 numbers, row by row); got {arr.size} numbers."
        )
    if abs(np.linalg.det(arr.reshape(3, 3))) < 1e-6:
        raise InputError(
            "The direction matrix is singular (its axes are not independent); pass the image's "
            "direction cosines, or leave it out for the identity."
        )
    return tuple(float(v) for v in arr)


def image_from_array(
    array: np.ndarray,
    spacing: Optional[Vector3] = None,
    origin: Optional[Vector3] = None,
    direction: Optional[Sequence[float]] = None,
) -> sitk.Image:
    """Build a 3D SimpleITK image from a ``(z, y, x)`` numpy array and its geometry.

    ``spacing`` (mm, one number or ``(x, y, z)``) defaults to 1, ``origin`` (mm, ``(x, y, z)``)
    to 0 and ``direction`` (3x3 or 9 numbers) to the identity. Boolean arrays become uint8 and
    float16 becomes float32 (SimpleITK has neither type).
    """
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise InputError(
            f"Expected a 3D array in (z, y, x) order; got an array with shape {arr.shape}. "
            "Pass one 3D volume."
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    sp = _vector3(spacing, 1.0, "spacing")
    if min(sp) <= 0 or not np.all(np.isfinite(sp)):
        raise InputError(
            f"The spacing must be positive (mm per voxel along x, y, z); got {sp}. "
            "Pass the voxel size of the scan."
        )
    org = _vector3(origin, 0.0, "origin")
    if not np.all(np.isfinite(org)):
        raise InputError(f"The origin must be finite numbers (mm); got {org}.")
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=False)
    image.SetSpacing(sp)
    image.SetOrigin(org)
    image.SetDirection(_direction9(direction))
    return image


def to_image(
    image_or_array: Union[sitk.Image, np.ndarray],
    spacing: Optional[Vector3] = None,
    origin: Optional[Vector3] = None,
    direction: Optional[Sequence[float]] = None,
) -> sitk.Image:
    """Return a SimpleITK image: an image is returned unchanged, a ``(z, y, x)`` array is wrapped
    with the given geometry (see :func:`image_from_array` for the defaults)."""
    if isinstance(image_or_array, sitk.Image):
        if any(v is not None for v in (spacing, origin, direction)):
            # The image carries its own geometry; silently ignoring another one would hide a bug.
            raise ValueError("to_image: spacing/origin/direction are only for numpy arrays")
        return image_or_array
    return image_from_array(image_or_array, spacing, origin, direction)


def blank_image(
    geometry: Union[sitk.Image, Geometry], pixel_id: int = sitk.sitkFloat32, value: float = 0.0
) -> sitk.Image:
    """A new image filled with ``value`` on the grid of ``geometry`` (for use as a reference)."""
    g = geometry_of(geometry)
    image = sitk.Image(list(g.size), pixel_id)
    if value:
        image = image + value
    image.SetSpacing(g.spacing)
    image.SetOrigin(g.origin)
    image.SetDirection(g.direction)
    return image

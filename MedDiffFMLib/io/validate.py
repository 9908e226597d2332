"""Check that an image is a usable 3D scalar volume before any work is done on it."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

_FLOAT_TYPES = {sitk.sitkFloat32, sitk.sitkFloat64}


def validate_volume(image: sitk.Image, name: str = "input") -> None:
    """Raise InputError unless ``image`` is a 3D, single-component, non-empty volume with
    finite voxel values and positive spacing. ``name`` is used in the messages."""
    dim = image.GetDimension()
    size = "x".join(str(s) for s in image.GetSize())
    if dim == 2:
        raise InputError(
            f"The {name} is a 2D image ({size}); MedDiffFM needs a 3D volume. For DICOM, pass the "
            "folder holding the whole series rather than one slice."
        )
    if dim != 3:
        raise InputError(
            f"The {name} is a {dim}D image ({size}), e.g. a time series or several volumes in one "
            "file; MedDiffFM needs one 3D volume. Extract a single 3D volume first."
        )
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise InputError(
            f"The {name} has {components} values per voxel (colour, vector or complex image); a CT "
            "volume has one. Convert it to a single-channel (grey-level) volume first."
        )
    if min(image.GetSize()) < 2:
        raise InputError(
            f"The {name} is empty or flat (size {size}): every axis needs at least 2 voxels for a "
            "3D volume. Check that the whole scan was loaded, not a single slice."
        )
    spacing = image.GetSpacing()
    if min(spacing) <= 0 or not np.all(np.isfinite(spacing)):
        raise InputError(
            f"The {name} has a non-positive voxel spacing {tuple(spacing)} mm. Fix the spacing in "
            "the file header (the voxel size of the scan)."
        )
    check_finite(image, name)


def check_finite(image: sitk.Image, name: str = "input") -> None:
    """Raise InputError when a float volume holds NaN or infinite voxels, saying how many of each
    and where (first voxel, index box, physical position); they are never turned into numbers
    silently."""
    if image.GetPixelID() not in _FLOAT_TYPES and image.GetPixelIDValue() not in (
        sitk.sitkVectorFloat32, sitk.sitkVectorFloat64
    ):
        return
    values = sitk.GetArrayViewFromImage(image)
    bad = ~np.isfinite(values)
    count = int(np.count_nonzero(bad))
    if not count:
        return
    total = int(values.size)
    nan = int(np.count_nonzero(np.isnan(values)))
    pos = int(np.count_nonzero(values == np.inf))
    neg = count - nan - pos
    kinds = ", ".join(f"{n} {label}" for n, label in ((nan, "NaN"), (pos, "+inf"), (neg, "-inf")) if n)
    if count == total:
        what = "NaN" if nan == total else "NaN or infinite"
        raise InputError(
            f"Every voxel of the {name} ({total}) is {what} ({kinds}): it holds no image at all. The file was "
            "probably written by a failed computation; export the volume again."
        )
    dim = image.GetDimension()
    per_voxel = bad if values.ndim == dim else bad.any(axis=tuple(range(dim, values.ndim)))  # vector pixels
    where = np.argwhere(per_voxel)[:, ::-1]  # (x, y, z) order, as SimpleITK indexes
    first = tuple(int(v) for v in where[0])
    low = tuple(int(v) for v in where.min(axis=0))
    high = tuple(int(v) for v in where.max(axis=0))
    try:
        point = tuple(round(v, 1) for v in image.TransformIndexToPhysicalPoint(first))
        at = f" at {point} mm"
    except (RuntimeError, TypeError):
        at = ""
    raise InputError(
        f"The {name} has {count} voxels that are NaN or infinite ({kinds}, of {total}); the first is voxel (x, y, z) "
        f"{first}{at}, and all lie within voxels {low} to {high}. MedDiffFM does not guess values for them: "
        "replace them (e.g. with -1000 HU for air, or crop them away) and run again."
    )

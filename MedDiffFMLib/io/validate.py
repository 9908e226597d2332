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
    if image.GetPixelID() in _FLOAT_TYPES:
        bad = int(np.count_nonzero(~np.isfinite(sitk.GetArrayViewFromImage(image))))
        if bad:
            raise InputError(
                f"The {name} has {bad} voxels that are NaN or infinite (of {np.prod(image.GetSize())}). "
                "Replace them (e.g. with -1000 HU for air) before running MedDiffFM."
            )

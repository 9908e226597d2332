"""Put a mask (segmentation, label map) on an image's grid, by physical position."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import geometry_of, same_geometry
from .resample import resample_like

# Grids closer than this (mm, direction cosines) are the same grid: NIfTI stores float32.
GEOMETRY_TOLERANCE = 1e-4


def _as_mask_image(mask: Union[sitk.Image, np.ndarray], reference: sitk.Image, name: str) -> sitk.Image:
    if isinstance(mask, sitk.Image):
        return mask
    arr = np.asarray(mask)
    if arr.shape != tuple(reversed(reference.GetSize())):
        raise InputError(
            f"The {name} array has shape {arr.shape} but the image has shape "
            f"{tuple(reversed(reference.GetSize()))} (z, y, x). Pass the mask as an image with its "
            "own geometry, or an array on the image's grid."
        )
    image = sitk.GetImageFromArray(arr.astype(np.uint8) if arr.dtype == bool else arr)
    image.CopyInformation(reference)
    return image


def mask_on_grid(
    mask_image: Union[sitk.Image, np.ndarray],
    reference_image: sitk.Image,
    name: str = "mask",
    label: Optional[int] = None,
) -> Tuple[np.ndarray, bool]:
    """Return ``(inside, resampled)``: a bool ``(z, y, x)`` array on ``reference_image``'s grid,
    and whether the mask had to be resampled (nearest neighbour, by physical position).

    Any non-zero voxel is inside, or only voxels equal to ``label`` when given. A numpy mask
    must already be on the reference grid. InputError for a non-3D or vector mask, an empty
    mask, a missing label, or a mask that lies outside the image.
    """
    mask = _as_mask_image(mask_image, reference_image, name)
    if mask.GetDimension() != 3 or mask.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"The {name} must be a 3D single-channel label volume; got a {mask.GetDimension()}D image "
            f"with {mask.GetNumberOfComponentsPerPixel()} value(s) per voxel. Export the segment as a "
            "label map (e.g. .nii.gz or .nrrd)."
        )
    values = sitk.GetArrayViewFromImage(mask)
    if label is None:
        inside = values != 0
    else:
        inside = values == label
        if not inside.any() and values.any():
            present = np.unique(values[values != 0])[:20].tolist()
            raise InputError(
                f"The {name} has no voxel with label {label}; labels present: {present}. "
                "Pass one of these labels, or no label to use every non-zero voxel."
            )
    if not inside.any():
        raise InputError(
            f"The {name} is empty (no non-zero voxel). Draw or select a non-empty segment first."
        )
    if same_geometry(mask, reference_image, GEOMETRY_TOLERANCE):
        return inside, False
    binary = sitk.GetImageFromArray(inside.astype(np.uint8))
    binary.CopyInformation(mask)
    on_grid = sitk.GetArrayFromImage(resample_like(binary, reference_image, "nearest", 0)) != 0
    if not on_grid.any():
        g_mask, g_ref = geometry_of(mask), geometry_of(reference_image)
        raise InputError(
            f"The {name} does not overlap the image: placed on the image grid by its physical "
            f"position (mask origin {_mm(g_mask.origin)}, image origin {_mm(g_ref.origin)}), no "
            f"voxel of the {name} falls inside the image. Check that the {name} belongs to this "
            "image and that its origin and direction were kept when it was saved."
        )
    return on_grid, True


def _mm(values: Tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in values) + ") mm"

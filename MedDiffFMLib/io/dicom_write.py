"""Write a 3D image as a DICOM CT series (int16 slices) into a folder.

Each slice is written as a one-slice 3D image, so that GDCM stores its ImagePositionPatient,
ImageOrientationPatient and PixelSpacing from the image geometry and the series reads back on
the same grid. (SimpleITK's ImageSeriesWriter cannot set per-slice tags such as the slice
position or instance number, which is why ImageFileWriter is used slice by slice.)
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

INT16_MIN, INT16_MAX = -32768, 32767


def new_uid() -> str:
    """A new DICOM UID under the UUID root 2.25 (no registered root needed)."""
    return f"2.25.{uuid.uuid4().int}"


def _as_int16(image: sitk.Image) -> sitk.Image:
    # Round (not truncate) float HU and clip to the int16 range; geometry is kept.
    if image.GetPixelID() == sitk.sitkInt16:
        return image
    arr = sitk.GetArrayViewFromImage(image).astype(np.float64)
    out = sitk.GetImageFromArray(np.clip(np.rint(arr), INT16_MIN, INT16_MAX).astype(np.int16))
    out.CopyInformation(image)
    return out


def write_dicom_series(
    image: sitk.Image, folder: Path, tags: Optional[Mapping[str, str]] = None
) -> None:
    """Write ``image`` into the existing empty ``folder`` as a new CT series.

    New Study and Series UIDs are made; ``tags`` (``"gggg|eeee" -> value``, e.g. patient name
    ``"0010|0010"``) are added to or override the defaults on every slice.
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"Only a 3D single-channel volume can be written as a DICOM CT series; got a "
            f"{image.GetDimension()}D image with {image.GetNumberOfComponentsPerPixel()} value(s) "
            "per voxel. Write it as .nii.gz, .nrrd or .mha instead."
        )
    image = _as_int16(image)
    now = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    common = {
        "0008|0060": "CT",
        "0008|0008": "DERIVED\\SECONDARY",
        "0008|0020": now[0],  # study date
        "0008|0030": now[1],
        "0008|0021": now[0],  # series date
        "0008|0031": now[1],
        "0008|103e": "MedDiffFM output",
        "0020|000d": new_uid(),  # study instance UID
        "0020|000e": new_uid(),  # series instance UID
        "0020|0011": "1",
        "0018|0050": f"{image.GetSpacing()[2]:.6g}",  # slice thickness (nominal)
        "0028|1052": "0",  # rescale intercept: stored values are HU
        "0028|1053": "1",
        "0028|1054": "HU",
    }
    common.update(dict(tags or {}))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # use our UIDs instead of GDCM's per-file ones
    n = image.GetSize()[2]
    width = max(4, len(str(n)))
    for k in range(n):
        slice_k = image[:, :, k : k + 1]  # 3D one-slice image: keeps position and orientation
        for key, value in common.items():
            slice_k.SetMetaData(key, value)
        slice_k.SetMetaData("0020|0013", str(k + 1))  # instance number
        slice_k.SetMetaData("0008|0018", new_uid())  # SOP instance UID
        writer.SetFileName(str(folder / f"slice_{k:0{width}d}.dcm"))
        writer.Execute(slice_k)

"""Read a volume file or a DICOM series folder into a SimpleITK image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import SimpleITK as sitk

from ..errors import InputError
from ._itk import short_reason
from .dicom_checks import has_dicom_magic
from .truncation import check_complete_file
from .dicom_read import read_dicom_series
from .formats import FILE_FORMATS, SUPPORTED_TEXT, file_extension
from .validate import check_finite


def read_volume(path: Union[str, os.PathLike], series_uid: Optional[str] = None, name: str = "input") -> sitk.Image:
    """Read a CT volume from NIfTI, NRRD, MetaImage, or a folder holding a DICOM series.

    ``series_uid`` picks one series when a DICOM folder holds several. DICOM is read in
    Hounsfield units (rescale slope/intercept applied). Every problem the user can fix (missing
    path, unknown extension, damaged or cut-short file, no or several DICOM series) raises
    InputError; ``name`` ("input", "mask", ...) is how the messages call the volume.
    """
    p = Path(path).expanduser()
    if not p.exists():
        parent = p.parent if str(p.parent) else Path(".")
        where = "" if parent.is_dir() else f" (its folder '{parent}' does not exist either)"
        raise InputError(
            f"The {name} '{p}' does not exist{where}. Check the path and its spelling."
        )
    if p.is_dir():
        return read_dicom_series(p, series_uid)
    if p.stat().st_size == 0:
        raise InputError(
            f"The {name} '{p}' is an empty file (0 bytes): the copy, download or export that made it did not "
            "finish. Copy or export it again. Nothing was processed."
        )
    ext = file_extension(p)
    if ext is None:
        if p.name.lower().endswith(".dcm") or has_dicom_magic(p):
            raise InputError(
                f"'{p}' is a single DICOM file. Pass the folder that holds the whole series "
                f"('{p.parent}') to read the 3D volume."
            )
        raise InputError(
            f"Cannot read '{p}': its extension is not a supported format. Use {SUPPORTED_TEXT}."
        )
    non_finite = check_complete_file(p, ext)
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputError(
            f"Could not read the {name} '{p}' as {FILE_FORMATS[ext]}: the file is damaged, truncated or not "
            f"really {FILE_FORMATS[ext]} ({short_reason(exc)}). Re-export or re-download it."
        ) from None
    if non_finite is not None:
        non_finite.raise_if_any(f"{name} '{p}'", image)
    check_finite(image, f"{name} '{p}'")
    return image


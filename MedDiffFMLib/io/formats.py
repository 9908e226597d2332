"""Which volume format a path names, from its extension."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, os.PathLike]

# Extension (lower case) -> format name. Longest extensions first so ".nii.gz" wins over ".gz".
FILE_FORMATS = {
    ".nii.gz": "NIfTI",
    ".nii": "NIfTI",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD",
    ".mha": "MetaImage",
    ".mhd": "MetaImage",
}

DICOM_FOLDER = "DICOM series folder"

SUPPORTED_TEXT = (
    "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) "
    "or a DICOM series folder"
)


def file_extension(path: PathLike) -> Optional[str]:
    """The supported extension ``path`` ends with (lower case), or None."""
    name = Path(path).name.lower()
    for ext in FILE_FORMATS:
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return None


def strip_extension(name: str) -> str:
    """``name`` without its supported extension (``a.nii.gz`` -> ``a``)."""
    ext = file_extension(name)
    return name[: -len(ext)] if ext else name

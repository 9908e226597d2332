"""Checks that a DICOM series read by GDCM is complete and evenly sampled.

GDCM silently leaves out files it cannot parse, and ITK only warns (on stderr) when slices
are missing or unevenly spaced; both would give a volume with wrong geometry, so we stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .dicom_tilt import slice_positions

# ITK records uneven sampling under this key, as a value SimpleITK cannot print.
NON_UNIFORM_KEY = "ITK_non_uniform_sampling_deviation"


def has_dicom_magic(path: Path) -> bool:
    """True when ``path`` starts like a DICOM Part 10 file."""
    # DICOM Part 10 files carry "DICM" after a 128-byte preamble.
    try:
        with path.open("rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def unreadable_dicom_files(folder: Path, listed: Iterable[str]) -> List[Path]:
    """Files directly in ``folder`` that look like DICOM but belong to no series GDCM found."""
    known = {Path(f).resolve() for f in listed}
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.resolve() not in known and has_dicom_magic(p)
    )


def check_complete(folder: Path, listed: Iterable[str]) -> None:
    """InputError when some DICOM files of ``folder`` could not be parsed."""
    bad = unreadable_dicom_files(folder, listed)
    if bad:
        names = ", ".join(p.name for p in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise InputError(
            f"{len(bad)} file(s) in the DICOM folder '{folder}' look like DICOM but could not be "
            f"read ({names}); they may be damaged or truncated, and the volume would have missing "
            "slices. Re-export the series, or remove those files if they are not part of it."
        )


def _positions_along_normal(reader: sitk.ImageSeriesReader, image: sitk.Image) -> Optional[np.ndarray]:
    positions = slice_positions(reader)
    if positions is None:
        return None  # no ImagePositionPatient: nothing to check against
    return positions @ np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]


def check_even_spacing(
    reader: sitk.ImageSeriesReader, image: sitk.Image, folder: Path, summary: str
) -> sitk.Image:
    """InputError when the slice positions (read with MetaDataDictionaryArrayUpdateOn) are
    missing or unevenly spaced (beyond 1 % of the spacing, at least 0.01 mm); otherwise
    return ``image`` without ITK's bookkeeping key (its value cannot even be printed)."""
    if image.HasMetaDataKey(NON_UNIFORM_KEY):
        image.EraseMetaData(NON_UNIFORM_KEY)
    along = _positions_along_normal(reader, image)
    if along is None or along.size < 2:
        return image
    steps = np.abs(np.diff(along))
    spacing = image.GetSpacing()[2]
    tolerance = max(0.01, 0.01 * spacing)
    # Duplicates first, in position order (GDCM may fall back to file-name order when positions repeat).
    order = np.argsort(along, kind="stable")
    same = np.flatnonzero(np.diff(along[order]) <= tolerance)
    if same.size:
        files = reader.GetFileNames()
        first, second = int(order[same[0]]), int(order[same[0] + 1])
        pairs = f"; {same.size} such pairs in all" if same.size > 1 else ""
        raise InputError(
            f"The DICOM series {summary} in '{folder}' has two slices at the same position "
            f"({float(along[first]):.2f} mm along the slice normal): '{Path(files[first]).name}' and "
            f"'{Path(files[second]).name}'{pairs}. A file was probably copied twice: remove the duplicate "
            "(or export the series again) and try again. Nothing was processed."
        )
    deviation = float(np.max(np.abs(steps - spacing)))
    if deviation <= tolerance:
        return image
    raise InputError(
        f"The DICOM series {summary} in '{folder}' has missing or unevenly spaced slices (slice "
        f"gaps from {steps.min():.3g} to {steps.max():.3g} mm), so it cannot be read as one "
        "regular volume. Check that no file is missing; for a scan with variable slice spacing, "
        "load it in 3D Slicer (which resamples it) or convert it to NIfTI first."
    )

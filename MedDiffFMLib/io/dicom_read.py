"""Read a DICOM series from a folder (files directly in it) with SimpleITK/GDCM."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import SimpleITK as sitk

from ..errors import InputError
from ._itk import quiet_itk, short_reason
from .dicom_checks import NON_UNIFORM_KEY, check_complete, check_even_spacing
from .dicom_tilt import resample_tilted, slice_positions, tilt_of


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series found in a folder."""

    uid: str
    files: Tuple[str, ...]
    description: str = ""

    def summary(self) -> str:
        """``UID (N slices, "description")`` for messages (an empty UID shows as ``""``)."""
        desc = f', "{self.description}"' if self.description else ""
        return f"{uid_text(self.uid)} ({len(self.files)} slices{desc})"


def uid_text(uid: str) -> str:
    """A UID as messages show it: an empty one as ``""`` so that it cannot go unseen."""
    return uid if uid else '""'



def _tag(path: str, key: str) -> str:
    # Only the header is read; a file GDCM cannot parse just gives no description.
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
        return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""
    except RuntimeError:
        return ""


def list_dicom_series(folder: Path) -> List[DicomSeries]:
    """Every DICOM series whose files lie directly in ``folder`` (sorted by GDCM)."""
    series = []
    for uid in _series_ids(folder):
        files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        if files:
            series.append(DicomSeries(uid, files, _tag(files[0], "0008|103e")))
    return series


def _series_ids(folder: Path) -> Tuple[str, ...]:
    # GDCM warns on stderr for a folder without DICOM; the caller raises a clear error instead.
    with quiet_itk():
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _choose(folder: Path, series: List[DicomSeries], series_uid: Optional[str]) -> DicomSeries:
    listing = "; ".join(s.summary() for s in series)
    if series_uid is not None:
        for s in series:
            if s.uid == series_uid.strip():
                return s
        raise InputError(
            f"The DICOM folder '{folder}' has no series with UID {uid_text(series_uid.strip())}. It holds: "
            f"{listing}. Pass one of these UIDs (--series UID, or series_uid= in Python)."
        )
    if len(series) > 1:
        raise InputError(
            f"The DICOM folder '{folder}' holds {len(series)} series: {listing}. Choose one by "
            "passing its UID (--series UID on the command line, series_uid= in Python), or move "
            "each series into its own folder."
        )
    return series[0]


def read_dicom_series(folder: Path, series_uid: Optional[str] = None) -> sitk.Image:
    """Read one series from ``folder`` in Hounsfield units (GDCM applies rescale slope/intercept).

    Raises InputError when the folder holds no series, several series and no ``series_uid``,
    not the series asked for, DICOM files GDCM cannot parse, or missing/uneven slices.
    """
    series = list_dicom_series(folder)
    if not series:
        n_files = sum(1 for p in folder.iterdir() if p.is_file())
        raise InputError(
            f"No DICOM series found in the folder '{folder}' ({n_files} files directly in it; "
            "subfolders are not searched). Pass the folder that directly holds the DICOM files "
            "of one series, or a volume file (.nii.gz, .nrrd, .mha)."
        )
    check_complete(folder, [f for s in series for f in s.files])
    chosen = _choose(folder, series, series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(chosen.files))
    reader.MetaDataDictionaryArrayUpdateOn()  # per-slice positions for check_even_spacing
    try:
        with quiet_itk():  # uneven spacing is reported by check_even_spacing instead
            image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(
            f"Could not read the DICOM series {chosen.summary()} in '{folder}': a file is damaged "
            f"or the slices are inconsistent ({short_reason(exc)}). Check the export from the scanner "
            "or PACS, or convert the series to NIfTI with another tool."
        ) from None
    tilt = tilt_of(image, slice_positions(reader))
    if tilt is not None:
        if image.HasMetaDataKey(NON_UNIFORM_KEY):
            image.EraseMetaData(NON_UNIFORM_KEY)
        return resample_tilted(image, slice_positions(reader), tilt[1], tilt[0], f"{chosen.summary()} in '{folder}'")
    return check_even_spacing(reader, image, folder, chosen.summary())


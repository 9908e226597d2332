"""Write a volume atomically: to a temporary place in the target folder, then rename.

A crash, a full disk or a cancelled run therefore never leaves a half-written output, and the
previous file at that path (if any) stays intact until the new one is complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import SimpleITK as sitk

from ..errors import InputError
from ._itk import short_reason
from .dicom_write import write_dicom_series
from .formats import file_extension
from .output_plan import check_volume_target, input_files, is_dicom_target

PathLike = Union[str, os.PathLike]

# Compressed where the format has it built in (.nii is by definition uncompressed; .mhd keeps
# a plain .raw so other tools can memory-map it).
_COMPRESS = {".nii.gz": True, ".nrrd": True, ".mha": True, ".nii": False, ".nhdr": True, ".mhd": False}


def _check_companions(path: PathLike, destinations: Sequence[Path], inputs: Sequence[PathLike]) -> None:
    clash = [d for d in destinations if d.resolve() in input_files(inputs)]
    if clash:
        raise InputError(
            f"Writing '{path}' would overwrite '{clash[0]}', which belongs to an input. "
            "MedDiffFM never overwrites its input: choose a different output name."
        )


def write_volume(
    image: sitk.Image,
    path: PathLike,
    *,
    inputs: Sequence[PathLike] = (),
    dicom_tags: Optional[Mapping[str, str]] = None,
) -> Path:
    """Write ``image`` to ``path`` and return the absolute path written.

    The format follows the extension: ``.nii``/``.nii.gz`` (NIfTI), ``.nrrd``/``.nhdr`` (NRRD),
    ``.mha``/``.mhd`` (MetaImage); a path without extension, ending in '/', or naming an existing
    empty folder is written as a DICOM CT series (int16 slices, new UIDs; ``dicom_tags`` such as
    ``{"0010|0010": "patient name"}`` are added to every slice). Left-handed directions are
    stored by DICOM with the slice order reversed (same physical image).

    Refuses (InputError) to overwrite any of ``inputs``, to write into a folder that does not
    exist, or an unknown extension. The write is atomic: nothing is left behind on failure.
    """
    dicom = is_dicom_target(path)
    target = check_volume_target(path, inputs)
    # The temporary folder is in the target folder so that the final rename stays on one disk;
    # os.mkdir (not tempfile) so that it gets the user's usual permissions.
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        os.mkdir(tmp)
    except OSError as exc:
        raise _write_error(f"'{target.name}'", target.parent, exc) from None
    try:
        if dicom:
            _write_series(image, tmp, dicom_tags)
            if target.is_dir():
                target.rmdir()  # empty (checked above); os.replace onto a folder fails on Windows
            os.replace(tmp, target)
        else:
            _write_file(image, tmp / target.name, file_extension(target) or "")
            # A header + data pair (.mhd/.raw, .nhdr/.raw.gz): move the data first, header last.
            produced = sorted(tmp.iterdir(), key=lambda q: q.name == target.name)
            _check_companions(path, [target.parent / q.name for q in produced], inputs)
            for item in produced:
                os.replace(item, target.parent / item.name)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(f"'{target.name}'", target.parent, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_file(image: sitk.Image, file: Path, ext: str) -> None:
    try:
        sitk.WriteImage(image, str(file), useCompression=_COMPRESS.get(ext, False))
    except RuntimeError as exc:
        raise _write_error(file.name, file.parent.parent, exc) from None


def _write_series(image: sitk.Image, tmp: Path, tags: Optional[Mapping[str, str]]) -> None:
    try:
        write_dicom_series(image, tmp, tags)
    except RuntimeError as exc:
        raise _write_error("a DICOM series", tmp.parent, exc) from None


def _write_error(what: str, folder: Path, exc: BaseException) -> InputError:
    return InputError(
        f"Could not write {what} into '{folder}' ({short_reason(exc)}). Check that the folder "
        "is writable, the disk is not full and the image type suits the format."
    )

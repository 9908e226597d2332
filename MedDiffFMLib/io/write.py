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
from .formats import SUPPORTED_TEXT, file_extension, strip_extension

PathLike = Union[str, os.PathLike]

# Compressed where the format has it built in (.nii is by definition uncompressed; .mhd keeps
# a plain .raw so other tools can memory-map it).
_COMPRESS = {".nii.gz": True, ".nrrd": True, ".mha": True, ".nii": False, ".nhdr": True, ".mhd": False}


def _is_dicom_target(path: PathLike, p: Path) -> bool:
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or p.is_dir() or (p.suffix == "" and file_extension(p) is None)


def _resolve(p: PathLike) -> Path:
    return Path(p).expanduser().resolve()


def _check_target(path: PathLike, target: Path, inputs: Sequence[PathLike], dicom: bool) -> None:
    parent = target.parent
    if not parent.is_dir():
        raise InputError(
            f"Cannot write '{target}': its folder '{parent}' does not exist. Create it first "
            f"(e.g. mkdir -p \"{parent}\") or choose another output path."
        )
    for inp in inputs:
        if _resolve(inp) == target:
            raise InputError(
                f"The output '{path}' is the input '{inp}'. MedDiffFM never overwrites its input: "
                "choose a different output path."
            )
    if dicom:
        if target.exists() and not target.is_dir():
            raise InputError(
                f"Cannot write a DICOM series to '{target}': a file with that name exists. "
                "Choose a new folder name, or add an extension (.nii.gz, .nrrd, .mha) to write a file."
            )
        if target.is_dir() and any(target.iterdir()):
            raise InputError(
                f"Cannot write a DICOM series into '{target}': the folder is not empty. "
                "Choose a new or empty folder (existing files are never mixed with a new series)."
            )
    elif file_extension(target) is None:
        raise InputError(
            f"Cannot write '{path}': unknown extension '{target.suffix}'. Use {SUPPORTED_TEXT} "
            "(a path without extension, or ending in '/', is written as a DICOM series folder)."
        )
    elif target.is_dir():
        raise InputError(f"Cannot write '{target}': a folder with that name exists. Choose a file name.")


def _input_files(inputs: Sequence[PathLike]) -> set:
    """The inputs and, for detached headers (.mhd, .nhdr), their data files (same stem)."""
    files = set()
    for inp in inputs:
        p = _resolve(inp)
        files.add(p)
        if file_extension(p) in (".mhd", ".nhdr") and p.parent.is_dir():
            stem = strip_extension(p.name) + "."
            files.update(q.resolve() for q in p.parent.iterdir() if q.name.startswith(stem))
    return files


def _check_companions(path: PathLike, destinations: Sequence[Path], inputs: Sequence[PathLike]) -> None:
    clash = [d for d in destinations if d.resolve() in _input_files(inputs)]
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
    target = _resolve(path)
    dicom = _is_dicom_target(path, target)
    _check_target(path, target, inputs, dicom)
    # The temporary folder is in the target folder so that the final rename stays on one disk;
    # os.mkdir (not tempfile) so that it gets the user's usual permissions.
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    os.mkdir(tmp)
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

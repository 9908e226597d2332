"""Write a volume atomically and verified: to a temporary place in the target folder, read back, then
renamed (see :mod:`.durable` for the guarantees).

A crash, a full disk or a cancelled run therefore never leaves a half-written output, and the
previous file at that path (if any) stays intact until the new one is complete. ITK's NIfTI writer
reports a full disk only on stderr ("NWAD: wrote only 0 of N bytes") and returns as if it had
succeeded, so every written file is read back with the same complete-read check that inputs get.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import SimpleITK as sitk

from ..errors import InputError, WriteError
from ._itk import captured_native_stderr, short_reason
from .truncation import check_complete_file
from .dicom_write import write_dicom_series
from .durable import Staged, check_free_space, free_bytes, sync_tree, write_error
from .formats import file_extension
from .output_plan import check_volume_target, input_files, is_dicom_target

PathLike = Union[str, os.PathLike]

# Compressed where the format has it built in (.nii is by definition uncompressed; .mhd keeps
# a plain .raw so other tools can memory-map it).
_COMPRESS = {".nii.gz": True, ".nrrd": True, ".mha": True, ".nii": False, ".nhdr": True, ".mhd": False}
# A compressed CT is never smaller than this share of its raw voxels (measured: 0.25-0.6 for CT,
# about 0.15 for a label map), so less free space than that is measurably short before any work.
_SMALLEST_COMPRESSED_SHARE = 0.1
_DICOM_SLICE_HEADER = 2048


def minimum_output_bytes(path: PathLike, voxels: int, bytes_per_voxel: int) -> int:
    """The fewest bytes an output of ``voxels`` voxels at ``path`` can take on disk (its format
    decides: raw, compressed, or a DICOM series of int16 slices)."""
    if is_dicom_target(path):
        return int(voxels) * 2
    raw = int(voxels) * int(bytes_per_voxel)
    return int(raw * _SMALLEST_COMPRESSED_SHARE) if _COMPRESS.get(file_extension(path) or "", False) else raw


def check_output_space(path: PathLike, voxels: int, bytes_per_voxel: int, label: str = "output") -> None:
    """Refuse up front (WriteError) when the output's folder has measurably too little free space."""
    target = Path(path).expanduser().resolve()
    folder = target if is_dicom_target(path) and target.is_dir() else target.parent
    check_free_space(folder, minimum_output_bytes(path, voxels, bytes_per_voxel), f"the {label} '{path}'")


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
    exist, or an unknown extension. The write is atomic and verified: the files are read back
    (complete data, the image's size), fsync'ed, then renamed; on a full disk or any other
    failure a :class:`~MedDiffFMLib.errors.WriteError` is raised and nothing is left behind.
    """
    return stage_volume(image, path, inputs=inputs, dicom_tags=dicom_tags).publish()


def stage_volume(
    image: sitk.Image,
    path: PathLike,
    *,
    inputs: Sequence[PathLike] = (),
    dicom_tags: Optional[Mapping[str, str]] = None,
) -> Staged:
    """Everything :func:`write_volume` does but the final rename: the verified, fsync'ed files wait
    under a temporary folder in the target's folder; ``.publish()`` puts them in place."""
    dicom = is_dicom_target(path)
    target = check_volume_target(path, inputs)
    voxels = 1
    for n in image.GetSize():
        voxels *= int(n)
    bytes_per_voxel = image.GetSizeOfPixelComponent() * image.GetNumberOfComponentsPerPixel()
    check_output_space(path, voxels, bytes_per_voxel)
    what = f"'{target.name}'"
    # The temporary folder is in the target folder so that the final rename stays on one disk;
    # os.mkdir (not tempfile) so that it gets the user's usual permissions.
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        os.mkdir(tmp)
    except OSError as exc:
        raise write_error(what, target.parent, exc) from None
    try:
        if dicom:
            _write_series(image, tmp, dicom_tags)
            _verify_series(tmp, image, target)
            sync_tree(tmp)
            staged = Staged(target, tmp, [(tmp, target)], what)
        else:
            ext = file_extension(target) or ""
            _write_file(image, tmp / target.name, ext, target)
            # A header + data pair (.mhd/.raw, .nhdr/.raw.gz): move the data first, header last.
            produced = sorted(tmp.iterdir(), key=lambda q: q.name == target.name)
            _check_companions(path, [target.parent / q.name for q in produced], inputs)
            sync_tree(tmp)
            staged = Staged(target, tmp, [(q, target.parent / q.name) for q in produced], what)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(what, target.parent, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return staged


def _incomplete(target: Path, found: str, native: Sequence[str]) -> WriteError:
    said = [line.strip() for line in native if line.strip()]
    writer = f"; the writer said: {said[-1][:160]}" if said else ""
    free = free_bytes(target.parent)
    disk = f"; {free / 2**20:,.1f} MiB are free there, so the disk is probably full" if free is not None else ""
    return WriteError(
        f"Could not write '{target.name}' into '{target.parent}': the file read back is {found}{writer}{disk}. "
        "Free some space or choose another folder. Nothing was left under the output's name."
    )


def _write_file(image: sitk.Image, file: Path, ext: str, target: Path) -> None:
    with captured_native_stderr() as native:
        try:
            sitk.WriteImage(image, str(file), useCompression=_COMPRESS.get(ext, False))
        except RuntimeError as exc:
            raise write_error(f"'{target.name}'", target.parent, exc) from None
    _verify_file(file, image, ext, target, native)


def _verify_file(file: Path, image: sitk.Image, ext: str, target: Path, native: Sequence[str]) -> None:
    """The written file holds all its data (the inputs' complete-read check) on the image's grid."""
    try:
        check_complete_file(file, ext)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(file))
        reader.ReadImageInformation()
    except InputError:
        raise _incomplete(target, "cut short", native) from None
    except RuntimeError as exc:
        raise _incomplete(target, f"unreadable ({short_reason(exc)})", native) from None
    if tuple(reader.GetSize()) != tuple(image.GetSize()):
        raise _incomplete(target, f"of size {reader.GetSize()} instead of {image.GetSize()}", native)


def _write_series(image: sitk.Image, tmp: Path, tags: Optional[Mapping[str, str]]) -> None:
    try:
        with captured_native_stderr():
            write_dicom_series(image, tmp, tags)
    except RuntimeError as exc:
        raise write_error("a DICOM series", tmp.parent, exc) from None


def _verify_series(folder: Path, image: sitk.Image, target: Path) -> None:
    """Every slice file is there, whole (its int16 pixel data at least) and readable."""
    files = sorted(folder.iterdir())
    columns, rows, slices = image.GetSize()
    if len(files) != slices:
        raise _incomplete(target, f"missing slices ({len(files)} of {slices} files)", [])
    for file in files:
        size = file.stat().st_size
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(file))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise _incomplete(target, f"damaged ('{file.name}': {short_reason(exc)})", []) from None
        if size < rows * columns * 2 or tuple(reader.GetSize()[:2]) != (columns, rows):
            raise _incomplete(target, f"cut short ('{file.name}' holds {size:,} bytes)", [])

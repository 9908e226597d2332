"""One output plan before any work: every path a command will write is checked at once, before
the input is read or the model loaded.

For each output: it is none of the inputs (volume, mask, reference, model, nor a file inside an
input folder or beside an input header as its data file) and no other output; its folder exists
and is really writable (a file is created and removed there, which also holds for root on a
read-only disk); its extension is known. :func:`check_volume_target` is the same check for one
volume at write time (``write_volume`` calls it), so the two can never disagree.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import InputError
from .formats import SUPPORTED_TEXT, file_extension, strip_extension

PathLike = Union[str, os.PathLike]

VOLUME, PICTURE, FOLDER = "volume", "picture", "folder"
_PICTURE_EXTENSIONS = (".png",)
# Data files written beside a detached header (see write.py: .mhd keeps a plain .raw, .nhdr a .raw.gz).
_COMPANIONS = {".mhd": ".raw", ".nhdr": ".raw.gz"}


@dataclass(frozen=True)
class Output:
    """One path a command will write: ``label`` names it in messages (e.g. "--preview")."""

    label: str
    path: Path
    kind: str = VOLUME


def resolved(path: PathLike) -> Path:
    return Path(path).expanduser().resolve()


def is_dicom_target(path: PathLike) -> bool:
    """A volume path written as a DICOM series folder: ends in '/', is a folder, or has no extension."""
    text = os.fspath(path)
    p = Path(text).expanduser()
    return text.endswith(("/", os.sep)) or p.is_dir() or (p.suffix == "" and file_extension(p) is None)


def input_files(inputs: Iterable[PathLike]) -> set:
    """The inputs and, for detached headers (.mhd, .nhdr), their data files (same stem)."""
    files = set()
    for inp in inputs:
        p = resolved(inp)
        files.add(p)
        if file_extension(p) in (".mhd", ".nhdr") and p.parent.is_dir():
            stem = strip_extension(p.name) + "."
            files.update(q.resolve() for q in p.parent.iterdir() if q.name.startswith(stem))
    return files


def _inside(path: Path, folder: Path) -> bool:
    return folder in path.parents


def check_writable_folder(folder: Path, what: str) -> None:
    """Raise InputError unless ``folder`` exists, is a folder and a file can really be created in it."""
    if not folder.exists():
        raise InputError(
            f"Cannot write {what}: its folder '{folder}' does not exist. Create it first "
            f"(e.g. mkdir -p \"{folder}\") or choose another path. Nothing was written."
        )
    if not folder.is_dir():
        raise InputError(f"Cannot write {what}: '{folder}' is a file, not a folder. Choose another path. "
                         "Nothing was written.")
    # os.access answers for permission bits only (root always passes it, even on a read-only disk):
    # create a file for real, then remove it.
    probe = folder / f".meddifffm-write-test-{uuid.uuid4().hex[:12]}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise InputError(
            f"Cannot write {what}: the folder '{folder}' is not writable ({exc.strerror or exc}). "
            "Choose a folder you can write to. Nothing was written."
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_volume_target(path: PathLike, inputs: Sequence[PathLike] = (), label: str = "output") -> Path:
    """Check one volume output path (see the module doc) and return it resolved."""
    target = resolved(path)
    dicom = is_dicom_target(path)
    what = f"the {label} '{path}'"
    parent = target.parent
    if not parent.is_dir():
        raise InputError(
            f"Cannot write {what}: its folder '{parent}' does not exist. Create it first "
            f"(e.g. mkdir -p \"{parent}\") or choose another output path. Nothing was written."
        )
    owned = input_files(inputs)
    for inp in inputs:
        inp_path = resolved(inp)
        if inp_path == target:
            raise InputError(
                f"The {label} '{path}' is the input '{inp}'. MedDiffFM never overwrites its input: "
                "choose a different output path. Nothing was written."
            )
        if inp_path.is_dir() and _inside(target, inp_path):
            raise InputError(
                f"The {label} '{path}' lies inside the input folder '{inp}'. MedDiffFM never changes "
                "an input: choose an output path outside it. Nothing was written."
            )
    if target in owned:
        raise InputError(
            f"Writing {what} would overwrite '{target}', which belongs to an input (the data file of a "
            "header). MedDiffFM never overwrites its input: choose a different output name. Nothing was written."
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
            f"Cannot write {what}: unknown extension '{target.suffix}'. Use {SUPPORTED_TEXT} "
            "(a path without extension, or ending in '/', is written as a DICOM series folder)."
        )
    elif target.is_dir():
        raise InputError(f"Cannot write {what}: a folder with that name exists. Choose a file name.")
    ext = file_extension(target)
    companion = _COMPANIONS.get(ext or "")
    if companion and (target.parent / (strip_extension(target.name) + companion)).resolve() in owned:
        raise InputError(
            f"Writing {what} would overwrite '{strip_extension(target.name) + companion}', which belongs to an "
            "input. MedDiffFM never overwrites its input: choose a different output name."
        )
    return target


def _written_paths(output: Output) -> List[Path]:
    """Every file an output puts in place (a detached header also writes its data file)."""
    target = resolved(output.path)
    companion = _COMPANIONS.get(file_extension(target) or "") if output.kind == VOLUME else None
    return [target] + ([target.parent / (strip_extension(target.name) + companion)] if companion else [])


def plan_outputs(
    outputs: Sequence[Tuple[str, Optional[PathLike], str]],
    inputs: Sequence[Optional[PathLike]],
) -> List[Output]:
    """Check every output of a command at once; return the plan (outputs given, in order).

    ``outputs``: (label, path or None, kind) with kind ``"volume"`` (a volume file or DICOM
    folder), ``"picture"`` (a PNG) or ``"folder"`` (a folder the command fills, created when
    missing). ``inputs``: every path the command reads (None entries are skipped). Raises
    InputError, one paragraph, naming the output and what to do.
    """
    given = [p for p in inputs if p is not None]
    plan = [Output(label, Path(path), kind) for label, path, kind in outputs if path is not None]
    seen: dict = {}
    for output in plan:
        for written in _written_paths(output):
            if written in seen:
                raise InputError(
                    f"{seen[written]} and {output.label} are the same file '{written}': give each output its own "
                    "path. Nothing was written."
                )
            seen[written] = output.label
    for output in plan:
        if output.kind == VOLUME:
            target = check_volume_target(output.path, given, output.label)
            folder = target if is_dicom_target(output.path) and target.is_dir() else target.parent
            check_writable_folder(folder, f"the {output.label} '{output.path}'")
        elif output.kind == PICTURE:
            _check_picture(output, given)
        else:
            _check_folder(output, given)
    return plan


def _check_not_input(output: Output, target: Path, inputs: Sequence[PathLike]) -> None:
    owned = input_files(inputs)
    for inp in inputs:
        inp_path = resolved(inp)
        if target == inp_path or target in owned or (inp_path.is_dir() and _inside(target, inp_path)):
            raise InputError(
                f"The {output.label} '{output.path}' is (or lies inside) the input '{inp}'. MedDiffFM never "
                "overwrites or changes its input: choose another path. Nothing was written."
            )


def _check_picture(output: Output, inputs: Sequence[PathLike]) -> None:
    target = resolved(output.path)
    _check_not_input(output, target, inputs)
    if target.suffix.lower() not in _PICTURE_EXTENSIONS:
        raise InputError(
            f"The {output.label} '{output.path}' must end in .png (it is a PNG picture). Nothing was written."
        )
    if target.is_dir():
        raise InputError(f"The {output.label} '{output.path}' is a folder; give a file name ending in .png.")
    check_writable_folder(target.parent, f"the {output.label} '{output.path}'")


def _check_folder(output: Output, inputs: Sequence[PathLike]) -> None:
    target = resolved(output.path)
    for inp in inputs:
        inp_path = resolved(inp)
        if inp_path.is_file() and (target == inp_path or _inside(target, inp_path)):
            raise InputError(
                f"The {output.label} '{output.path}' is the input file '{inp}'; it must be a folder. "
                "Choose another path. Nothing was written."
            )
        if inp_path.is_dir() and (target == inp_path or _inside(target, inp_path)):
            raise InputError(
                f"The {output.label} '{output.path}' is (or lies inside) the input folder '{inp}'. MedDiffFM "
                "never changes an input: choose a folder outside it. Nothing was written."
            )
    if target.exists() and not target.is_dir():
        raise InputError(f"The {output.label} '{output.path}' is a file; pass a folder. Nothing was written.")
    # A missing folder is created by the command: its nearest existing parent must be writable.
    existing = target
    while not existing.exists():
        existing = existing.parent
    check_writable_folder(existing, f"into the {output.label} '{output.path}'")

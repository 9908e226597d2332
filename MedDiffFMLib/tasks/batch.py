"""Batch processing: one task over many volumes with one loaded model.

* Inputs: a folder (every NIfTI/NRRD/MetaImage file and every sub-folder, read as a DICOM series),
  a glob pattern, a ``.txt`` list (one path per line, relative to the list's folder; ``#``
  comments), or a Python list of paths.
* Outputs: ``<out>/<case stem><suffix>.<format>``, the suffix defaulting to ``_<task>``
  (extra outputs such as an anomaly mask get ``_<name>`` appended). An existing output is skipped
  unless ``overwrite``; every write is atomic, so a stopped batch resumes where it was.
* Masks (inpaint, lesion): ``masks`` is a folder; the mask of case ``abc`` is the file (or DICOM
  folder) named ``abc`` (any supported extension), else the single one named ``abc_*``.
* A failing case is recorded and the batch goes on; :class:`BatchResult` lists the failures
  (the command line then exits with code 2). Cancelling stops the batch between steps.
* Several GPUs: run one process per GPU with ``torchrun``; each reads ``RANK``, ``WORLD_SIZE``
  and ``LOCAL_RANK`` from the environment, takes cases i with i % WORLD_SIZE == RANK and runs on
  ``cuda:LOCAL_RANK``. Every case is written by exactly one rank; at the end rank 0 gathers every
  rank's result (:func:`gather_results`, gloo) and reports the whole batch::

      torchrun --standalone --nproc_per_node 4 -m MedDiffFMLib.cli batch denoise --inputs cts/ --out out/
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import SimpleITK as sitk

from ..errors import CancelledError, InputError, MedDiffFMError
from ..io import read_volume
from ..io.write import check_output_space, stage_volume
from ..io.dicom_tilt import NOTE_KEY
from ..io.formats import file_extension, strip_extension
from ..engine import Engine
from ..progress import CancelCheck, ProgressCallback, check_cancel, notify, report
from .registry import TaskEntry, task_entry

FORMATS = ("nii.gz", "nii", "nrrd", "mha")
# ``case_runner(case, target, mask_path, progress, cancel) -> written paths``: one case run elsewhere.
CaseRunner = Callable[..., List[Path]]


@dataclass(frozen=True)
class Case:
    stem: str
    path: Path


@dataclass
class BatchResult:
    """What one batch (one rank) did."""

    cases: List[Case] = field(default_factory=list)
    written: List[Path] = field(default_factory=list)
    skipped: List[Case] = field(default_factory=list)
    failed: List[Tuple[Case, str]] = field(default_factory=list)

    def failure_message(self) -> str:
        lines = "; ".join(f"{case.stem} ({case.path}): {message.rstrip('.')}" for case, message in self.failed)
        return (f"{len(self.failed)} of {len(self.cases)} cases failed: {lines}. The other outputs were written; "
                "fix these inputs and run the same command again (finished cases are skipped).")


def case_stem(path: Path) -> str:
    return strip_extension(path.name) if path.is_file() else path.name.rstrip("/")


def _case_for(path: Path) -> Case:
    return Case(case_stem(path), path)


def _folder_entries(folder: Path, exclude: Sequence[Path] = ()) -> List[Path]:
    excluded = {p.resolve() for p in exclude}
    entries = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.resolve() in excluded:
            continue
        if (entry.is_file() and file_extension(entry) is not None) or entry.is_dir():
            entries.append(entry)
    return entries


def find_cases(inputs: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]], exclude: Sequence[Path] = ()) -> List[Case]:
    """The cases named by ``inputs`` (see the module doc), in a stable order."""
    if isinstance(inputs, (list, tuple)):
        paths = [Path(p).expanduser() for p in inputs]
        source = "the input list"
    else:
        spec = Path(inputs).expanduser()
        if spec.is_dir():
            paths = _folder_entries(spec, exclude)
            source = f"the folder '{spec}'"
        elif spec.is_file() and spec.suffix.lower() == ".txt":
            lines = [line.strip() for line in spec.read_text().splitlines()]
            paths = [(spec.parent / line).expanduser() for line in lines if line and not line.startswith("#")]
            source = f"the list '{spec}'"
        elif spec.is_file():
            paths = [spec]
            source = f"'{spec}'"
        elif spec.suffix.lower() == ".txt":
            raise InputError(f"The list file '{spec}' does not exist. Check the path, or pass a folder or a quoted "
                             "glob pattern instead.")
        else:
            paths = [Path(p) for p in sorted(glob.glob(os.path.expanduser(str(inputs)), recursive=True))]
            source = f"the pattern '{inputs}'"
    if not paths:
        raise InputError(f"No input volumes found in {source}. Pass a folder of .nii.gz/.nrrd/.mha files or DICOM "
                         "series folders, a glob pattern (quoted), or a .txt list of paths.")
    cases = [_case_for(p) for p in paths]
    seen: Dict[str, Path] = {}
    for case in cases:
        if case.stem in seen:
            raise InputError(f"Two inputs have the same name '{case.stem}' ({seen[case.stem]} and {case.path}); "
                             "their outputs would collide. Rename one of them.")
        seen[case.stem] = case.path
    return cases


def find_mask(masks_dir: Path, stem: str) -> Path:
    """The mask of case ``stem`` in ``masks_dir`` (see the module doc)."""
    entries = _folder_entries(Path(masks_dir))
    exact = [e for e in entries if case_stem(e) == stem]
    if exact:
        return exact[0]
    prefixed = [e for e in entries if case_stem(e).startswith(stem + "_")]
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        raise InputError(f"Several masks match case '{stem}' in '{masks_dir}': "
                         f"{', '.join(p.name for p in prefixed)}. Keep one, or name it '{stem}.nii.gz'.")
    raise InputError(f"No mask for case '{stem}' in '{masks_dir}': expected '{stem}.nii.gz' (or .nrrd/.mha, "
                     f"or '{stem}_<anything>').")


def output_path(out_dir: Path, stem: str, task: str, suffix: Optional[str] = None, fmt: str = "nii.gz",
                extra: str = "") -> Path:
    """``<out_dir>/<stem><suffix or _task>[_extra].<fmt>``."""
    fmt = fmt.lstrip(".").lower()
    if fmt not in FORMATS:
        raise InputError(f"Unknown output format '{fmt}'. Choose one of: {', '.join(FORMATS)}.")
    name = f"{stem}{('_' + task) if suffix is None else suffix}{('_' + extra) if extra else ''}.{fmt}"
    return Path(out_dir) / name


def case_outputs(out_dir: Path, case: Case, task: str, suffix: Optional[str], fmt: str,
                 extras: Sequence[str]) -> List[Path]:
    """Every path the batch may write for ``case``: the main output and its extras."""
    target = output_path(out_dir, case.stem, task, suffix, fmt)
    ext = _ext(target)
    return [target] + [target.with_name(f"{target.name[: -len(ext)]}_{key}{ext}") for key in extras]


def drop_own_outputs(cases: Sequence[Case], out_dir: Path, task: str, suffix: Optional[str], fmt: str,
                     extras: Sequence[str]) -> Tuple[List[Case], List[Case]]:
    """(cases to run, cases dropped): a case that is the output of another case of this batch (its
    outputs in ``out_dir`` from an earlier run, when --out is the input folder) is never an input."""
    producer = {p.resolve(): case.stem for case in cases
                for p in case_outputs(Path(out_dir), case, task, suffix, fmt, extras)}
    kept, dropped = [], []
    for case in cases:
        made_by = producer.get(case.path.resolve())
        (dropped if made_by is not None and made_by != case.stem else kept).append(case)
    return kept, dropped


def distributed_rank() -> Tuple[int, int, int]:
    """(RANK, WORLD_SIZE, LOCAL_RANK) from the environment torchrun sets; (0, 1, 0) otherwise."""

    def read(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            raise InputError(f"The environment variable {name}={os.environ[name]!r} is not a whole number.") from None

    rank, world, local = read("RANK", 0), read("WORLD_SIZE", 1), read("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"Inconsistent RANK={rank} / WORLD_SIZE={world} in the environment.")
    return rank, world, local


def cases_for_rank(cases: Sequence[Case], rank: int, world_size: int) -> List[Case]:
    """The cases of ``rank``: case i goes to rank i % world_size."""
    return [case for i, case in enumerate(cases) if i % world_size == rank]


def run_batch(
    task: str,
    cases: Sequence[Case],
    out_dir: Union[str, os.PathLike],
    engine: Engine,
    options=None,
    *,
    masks: Optional[Union[str, os.PathLike]] = None,
    overwrite: bool = False,
    suffix: Optional[str] = None,
    fmt: str = "nii.gz",
    extras: Sequence[str] = ("mask",),
    series: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    case_progress: Optional[Callable[[Case], Optional[ProgressCallback]]] = None,
    cancel: Optional[CancelCheck] = None,
    case_runner: Optional[CaseRunner] = None,
) -> BatchResult:
    """Run ``task`` on every case (already split across the ranks) with one ``engine``.

    ``progress`` gets the overall ("batch", done, total) events; ``case_progress(case)`` gives the
    callback for one case's own stages. ``case_runner`` replaces the local run of one case (the
    command line's ``--server`` runs it remotely; ``engine`` is then None). Returns a
    :class:`BatchResult`; raises only on cancel or on unusable batch settings (output folder, mask
    folder, format).
    """
    spec = task_entry(task)
    options = options if options is not None else spec.options()
    out_dir = Path(out_dir).expanduser()
    if not out_dir.is_dir():
        raise InputError(f"The output folder '{out_dir}' does not exist. Create it first.")
    if spec.needs_mask:
        if masks is None:
            raise InputError(f"Batch '{task}' needs --masks: a folder with one mask per case, named like the case.")
        if not Path(masks).is_dir():
            raise InputError(f"The mask folder '{masks}' does not exist.")
    output_path(out_dir, "x", task, suffix, fmt)  # checks the format before any work
    cases, _ = drop_own_outputs(cases, out_dir, task, suffix, fmt, extras)  # never its own outputs
    result = BatchResult(cases=list(cases))
    total = len(result.cases)
    report(progress, "batch", 0, total)
    for index, case in enumerate(result.cases):
        check_cancel(cancel)
        target = output_path(out_dir, case.stem, task, suffix, fmt)
        callback = case_progress(case) if case_progress is not None else None
        if target.exists() and not overwrite:
            result.skipped.append(case)
            notify(callback, f"{case.stem}: output {target.name} exists; skipped (use --overwrite to redo it).")
        else:
            try:
                if case_runner is not None:
                    mask_path = find_mask(Path(masks), case.stem) if spec.needs_mask else None
                    result.written += case_runner(case, target, mask_path, callback, cancel)
                else:
                    result.written += _run_case(spec, case, target, engine, options, masks, extras, series, callback,
                                                cancel)
            except CancelledError:
                raise
            except MedDiffFMError as error:
                result.failed.append((case, str(error)))
                notify(callback, f"{case.stem}: failed: {error}")
            except Exception as error:  # an unexpected failure of one case must not stop the others
                message = f"unexpected {type(error).__name__}: {error}"
                result.failed.append((case, message))
                notify(callback, f"{case.stem}: failed: {message}")
        report(progress, "batch", index + 1, total)
    return result


def _run_case(spec: TaskEntry, case: Case, target: Path, engine: Engine, options, masks, extras, series,
              progress, cancel) -> List[Path]:
    image = read_volume(case.path, series_uid=series)
    if image.HasMetaDataKey(NOTE_KEY):  # e.g. a DICOM gantry tilt resampled
        notify(progress, f"{case.stem}: {image.GetMetaData(NOTE_KEY)}")
        image.EraseMetaData(NOTE_KEY)
    voxels = math.prod(image.GetSize())
    check_output_space(target, voxels, image.GetSizeOfPixelComponent())  # a full disk: this case fails now
    inputs = {spec.main_input: image}
    if spec.needs_mask:
        inputs["mask"] = read_volume(find_mask(Path(masks), case.stem), name="mask")
    images = spec.run(engine, inputs, options, progress, cancel).images
    check_cancel(cancel)
    return write_case_outputs(images, target, extras, [case.path], cancel)


def write_case_outputs(outputs: Dict[str, sitk.Image], target: Path, extras: Sequence[str],
                       inputs: Sequence[Path], cancel: Optional[CancelCheck] = None) -> List[Path]:
    """Write a case's outputs (``""``: the main one, else the extras wanted) beside ``target``.

    Every output is staged (written, read back, fsync'ed) before any takes its name, so a full disk
    on one leaves none; then the extras first and the main one last: a case counts as done once its
    main output exists."""
    staged = []
    try:
        for key in sorted(outputs, key=lambda k: k == ""):
            if key and key not in extras:
                continue
            ext = _ext(target)
            path = target if not key else target.with_name(f"{target.name[: -len(ext)]}_{key}{ext}")
            staged.append(stage_volume(outputs[key], path, inputs=list(inputs)))
        check_cancel(cancel)
    except BaseException:
        for item in staged:
            item.discard()
        raise
    return [item.publish() for item in staged]


def can_gather() -> bool:
    """Whether the ranks can meet: a process group exists, or torchrun's rendezvous address is set
    (ranks started by hand with only RANK/WORLD_SIZE each report their own share)."""
    import torch.distributed as dist

    return dist.is_available() and (dist.is_initialized() or
                                    bool(os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")))


def gather_results(result: BatchResult, world_size: int) -> Optional[List[BatchResult]]:
    """Every rank's result on rank 0 (None on the others) under torchrun; ``[result]`` alone, or
    when the ranks cannot meet (:func:`can_gather`).

    Uses a gloo process group (CPU objects; it works beside any GPU backend) made from torchrun's
    environment, and waits until every rank has finished its share.
    """
    if world_size <= 1 or not can_gather():
        return [result]
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo")
    try:
        everyone: List[Optional[BatchResult]] = [None] * world_size if dist.get_rank() == 0 else None
        dist.gather_object(result, everyone, dst=0)
        return [r for r in everyone if r is not None] if everyone is not None else None
    finally:
        if created:
            dist.destroy_process_group()


def merge_results(results: Sequence[BatchResult]) -> BatchResult:
    """One result for the whole batch from the ranks' results."""
    merged = BatchResult()
    for part in results:
        merged.cases += part.cases
        merged.written += part.written
        merged.skipped += part.skipped
        merged.failed += part.failed
    return merged


def _ext(path: Path) -> str:
    return file_extension(path) or path.suffix

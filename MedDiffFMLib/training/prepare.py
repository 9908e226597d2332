"""``meddifffm prepare``: preprocess every manifest case once onto the cache grid (see :mod:`.cache`
for the layout). Needs SimpleITK (reading DICOM/NIfTI, resampling); training from the result does not."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import zipfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import geometry_of, read_volume, same_geometry
from ..preprocessing import check_hu, grid_for_spacing, resample_like
from ..io.durable import atomic_write_bytes, atomic_write_text, write_error
from .cache import CACHE_FORMAT, HU_RANGE, INDEX
from .manifest import CaseEntry, Manifest, ManifestError


def _labels_on_image_grid(labels: sitk.Image, image: sitk.Image, what: str, case: CaseEntry) -> tuple[sitk.Image, bool]:
    """A label map on the image's grid: itself, or resampled by physical position (nearest)."""
    if labels.GetDimension() != 3 or labels.GetNumberOfComponentsPerPixel() != 1:
        raise ManifestError(f"Case '{case.id}': the {what} '{case.anatomy if what == 'anatomy' else case.lesion}' "
                            "must be a 3D single-channel label volume.")
    if same_geometry(labels, image, 1e-4):
        return labels, False
    had = bool(sitk.GetArrayViewFromImage(labels).any())
    moved = resample_like(labels, image, "nearest", 0)
    if had and not sitk.GetArrayViewFromImage(moved).any():
        g_l, g_i = geometry_of(labels), geometry_of(image)
        raise ManifestError(
            f"Case '{case.id}': the {what} lies on another grid than the image and, placed by its physical position "
            f"(origin {tuple(round(v, 1) for v in g_l.origin)} mm vs the image's "
            f"{tuple(round(v, 1) for v in g_i.origin)} mm), none of it falls inside the image. Check that the "
            f"{what} belongs to this image and kept its origin/direction when saved."
        )
    return moved, True


def preprocess_case(
    case: CaseEntry, spacing_xyz: Sequence[float], allow_non_hu: bool = False, window: Optional[tuple] = None
) -> dict:
    """Read one case and put image, anatomy and lesion on the cache grid; returns arrays and notes.

    The cache grid has the model spacing, or the image's own spacing along axes where that is coarser.
    ``window`` (level, width) stores the image as uint8 codes of that HU window instead of int16 HU.
    """
    try:
        image = read_volume(case.image)
    except InputError as error:
        raise ManifestError(f"Case '{case.id}': {error}") from error
    if not allow_non_hu:
        try:
            check_hu(image, f"image of case '{case.id}'")
        except InputError as error:
            raise ManifestError(str(error)) from error
    # Never upsample: an axis coarser than the model spacing keeps its own spacing (thick slices stay
    # thick on disk); the sampler interpolates to the model grid when it draws a crop.
    cache_spacing = [max(float(s), float(t)) for s, t in zip(image.GetSpacing(), spacing_xyz)]
    grid = grid_for_spacing(image, cache_spacing)
    model_grid = grid_for_spacing(image, spacing_xyz)
    clamped = sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, *map(float, HU_RANGE))
    hu = sitk.GetArrayFromImage(resample_like(clamped, grid, "linear", HU_RANGE[0], extrapolate=True))
    out: dict = {"image": np.clip(np.rint(hu), *HU_RANGE).astype(np.int16), "notes": [],
                 "cache_spacing_zyx": [float(v) for v in grid.spacing[::-1]],
                 "model_shape": [int(v) for v in model_grid.size[::-1]]}
    if window is not None:
        low, width = window[0] - window[1] / 2.0, float(window[1])
        codes = np.rint((np.clip(hu, low, low + width) - low) * (255.0 / width))
        out["image"] = codes.astype(np.uint8)
    if case.anatomy is not None:
        labels = read_volume(case.anatomy, name=f"anatomy label map of case '{case.id}'")
        labels = sitk.Cast(labels, sitk.sitkUInt16) if labels.GetPixelID() != sitk.sitkUInt8 else labels
        labels, moved = _labels_on_image_grid(labels, image, "anatomy", case)
        if moved:
            out["notes"].append("anatomy resampled by physical position onto the image grid")
        arr = sitk.GetArrayFromImage(resample_like(labels, grid, "nearest", 0))
        if case.anatomy_remap:
            lut = np.arange(max(int(arr.max()), max(case.anatomy_remap)) + 1, dtype=np.int64)
            for src, dst in case.anatomy_remap.items():
                lut[src] = dst
            arr = lut[arr]
        if arr.max() > 255:
            raise ManifestError(f"Case '{case.id}': anatomy labels go up to {int(arr.max())}; at most 255 are supported.")
        out["anatomy"] = arr.astype(np.uint8)
    if case.lesion is not None:
        mask = read_volume(case.lesion, name=f"lesion mask of case '{case.id}'")
        binary = sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8) if mask.GetNumberOfComponentsPerPixel() == 1 else mask
        binary, moved = _labels_on_image_grid(binary, image, "lesion", case)
        if moved:
            out["notes"].append("lesion mask resampled by physical position onto the image grid")
        # Linear + threshold keeps small lesions' extent better than nearest neighbour when downsampling.
        soft = sitk.GetArrayFromImage(resample_like(sitk.Cast(binary, sitk.sitkFloat32), grid, "linear", 0.0))
        lesion = (soft >= 0.5).astype(np.uint8)
        if not lesion.any() and sitk.GetArrayViewFromImage(binary).any():
            lesion = (soft > 0).astype(np.uint8)  # a lesion smaller than one model voxel: keep its footprint
        out["lesion"] = lesion
    out["source_spacing"] = list(image.GetSpacing())
    out["source_size"] = list(image.GetSize())
    return out


def prepare_cache(
    manifest: Manifest,
    cache_dir: str | Path,
    spacing_zyx: Sequence[float],
    *,
    storage: str = "npz",
    dtype: str = "int16",
    windows: Optional[Callable[[Optional[str]], tuple]] = None,
    allow_non_hu: bool = False,
    progress: Optional[Callable[[int, int, str], None]] = None,
    config_name: str = "",
) -> dict:
    """Preprocess every case of ``manifest`` into ``cache_dir``; returns the index written.

    Cases already in the cache with the same source path, spacing and file sizes/mtimes are kept.
    All or nothing: new case files get names of their own (the case id and a digest of what made
    them), so the previous index and its files stay valid until the new index is written, the one
    commit point; when any case fails, the files this run wrote are removed again (and the cache
    folder, when this run created it), and the cache is as it was.
    """
    if storage not in ("npz", "npy"):
        raise ValueError("storage must be 'npz' or 'npy'")
    if dtype not in ("int16", "uint8") or (dtype == "uint8" and windows is None):
        raise ValueError("dtype must be 'int16', or 'uint8' with a windows function")
    cache_dir = Path(cache_dir).expanduser().resolve()
    created = [d for d in (cache_dir, cache_dir / "cases") if not d.exists()]
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        (cache_dir / "cases").mkdir(exist_ok=True)
    except OSError as exc:
        raise write_error("the training cache", cache_dir.parent, exc) from None
    written: list = []
    try:
        return _prepare_into(manifest, cache_dir, spacing_zyx, storage, dtype, windows, allow_non_hu, progress,
                             config_name, written)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _prepare_into(manifest: Manifest, cache_dir: Path, spacing_zyx: Sequence[float], storage: str, dtype: str,
                  windows, allow_non_hu: bool, progress, config_name: str, written: list) -> dict:
    """The body of :func:`prepare_cache`; every file it writes is appended to ``written``."""
    spacing_zyx = [float(s) for s in spacing_zyx]
    old = {}
    if (cache_dir / INDEX).is_file():
        try:
            previous = json.loads((cache_dir / INDEX).read_text())
            if (previous.get("spacing_mm") == spacing_zyx and previous.get("storage") == storage
                    and previous.get("dtype", "int16") == dtype):
                old = {c["id"]: c for c in previous.get("cases", [])}
        except (json.JSONDecodeError, KeyError):
            old = {}
    cases = []
    started = time.time()
    for number, case in enumerate(manifest.cases):
        if progress:
            progress(number, len(manifest.cases), case.id)
        stamp = _stamp(case)
        entry = old.get(case.id)
        window_now = list(windows(case.region)) if dtype == "uint8" else None
        if entry and entry.get("stamp") == stamp and entry.get("window") == window_now and all((cache_dir / f).is_file() for f in entry["files"].values()):
            entry.update(split=case.split, region=case.region, source=manifest.attribution(case))
            cases.append(entry)
            continue
        window = tuple(windows(case.region)) if dtype == "uint8" else None
        arrays = preprocess_case(case, spacing_zyx[::-1], allow_non_hu, window)
        files = {}
        # A name of its own per content, so that the previous index's files stay as they were.
        digest = hashlib.sha1(json.dumps([stamp, window_now, spacing_zyx, dtype]).encode()).hexdigest()[:10]
        if storage == "npz":
            rel = f"cases/{case.id}.{digest}.npz"
            payload = {k: arrays[k] for k in ("image", "anatomy", "lesion") if k in arrays}
            written.append(cache_dir / rel)
            atomic_write_bytes(cache_dir / rel, lambda p: _savez(p, payload), _check_npz(payload))
            files = {k: rel for k in payload}
        else:
            for key in ("image", "anatomy", "lesion"):
                if key in arrays:
                    rel = f"cases/{case.id}.{digest}_{key}.npy"
                    written.append(cache_dir / rel)
                    atomic_write_bytes(cache_dir / rel, lambda p, a=arrays[key]: _savenpy(p, a), _check_npy(arrays[key]))
                    files[key] = rel
        lesion_voxels = int(arrays["lesion"].sum()) if "lesion" in arrays else 0
        cases.append({
            "id": case.id,
            "split": case.split,
            "region": case.region,
            "shape": list(arrays["image"].shape),
            "spacing_mm": arrays["cache_spacing_zyx"],
            "model_shape": arrays["model_shape"],
            "window": list(window) if window else None,
            "files": files,
            "has_anatomy": "anatomy" in arrays,
            "anatomy_labels": sorted(int(v) for v in np.unique(arrays["anatomy"]) if v) if "anatomy" in arrays else [],
            "lesion_voxels": lesion_voxels,
            "source": manifest.attribution(case),
            "source_path": str(case.image),
            "source_spacing_xyz": arrays["source_spacing"],
            "source_size_xyz": arrays["source_size"],
            "notes": arrays["notes"],
            "stamp": stamp,
        })
    if progress:
        progress(len(manifest.cases), len(manifest.cases), "")
    keep = {f for c in cases for f in c["files"].values()}
    total_bytes = sum((cache_dir / f).stat().st_size for f in keep)
    index = {
        "format": CACHE_FORMAT,
        "manifest": str(manifest.path),
        "manifest_name": manifest.name,
        "config": config_name,
        "spacing_mm": spacing_zyx,
        "hu_range": list(HU_RANGE),
        "storage": storage,
        "dtype": dtype,
        "total_bytes": total_bytes,
        "voxels": int(sum(np.prod(c["shape"]) for c in cases)),
        "prepare_seconds": round(time.time() - started, 1),
        "sources": sorted({c["source"] for c in cases if c["source"]}),
        "cases": cases,
    }
    atomic_write_text(cache_dir / INDEX, json.dumps(index, indent=1))
    written.clear()  # committed: the new index owns them
    # Only now may the previous index's files go.
    for stale in (cache_dir / "cases").iterdir():
        if f"cases/{stale.name}" not in keep and not stale.name.startswith("."):
            stale.unlink(missing_ok=True)
    return index


def _stamp(case: CaseEntry) -> str:
    parts = []
    for file in (case.image, case.anatomy, case.lesion):
        if file is None:
            parts.append("-")
        else:
            st = file.stat()
            parts.append(f"{file}:{st.st_size}:{int(st.st_mtime)}")
    parts.append(json.dumps(sorted(case.anatomy_remap.items())))
    return "|".join(parts)


def _check_npz(payload: dict) -> Callable[[Path], None]:
    """A read-back check for a written case file: every array there, of its shape (zip CRCs checked)."""
    def check(path: Path) -> None:
        try:
            with np.load(path) as stored:
                for key, array in payload.items():
                    if stored[key].shape != array.shape:
                        raise OSError(f"'{key}' read back with shape {stored[key].shape}")
        except (ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise OSError(f"the case file read back is damaged ({exc})") from None
    return check


def _check_npy(array: np.ndarray) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        try:
            stored = np.load(path, mmap_mode="r")
        except (ValueError, EOFError) as exc:
            raise OSError(f"the case file read back is damaged ({exc})") from None
        if stored.shape != array.shape:
            raise OSError(f"the case file read back has shape {stored.shape}, not {array.shape}")
    return check


def _savez(path: Path, payload: dict) -> None:
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **payload)


def _savenpy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)

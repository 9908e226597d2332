"""The real CT cases the benchmarks read (``../shared/data/ct``, see its MANIFEST.md; never copied into
the repository) and the boxes cut from them.

Arrays are numpy in SimpleITK's (z, y, x) order, in HU; spacings are (x, y, z) as SimpleITK gives
them unless a name says ``_zyx``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from benchmarks import REPO_ROOT


def data_root() -> Path:
    """The shared CT folder: ``$MEDDIFFFM_CT_DATA``, else ``<repo>/../shared/data/ct``."""
    env = os.environ.get("MEDDIFFFM_CT_DATA")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data" / "ct"


@dataclass(frozen=True)
class Case:
    """One real CT: its file, the body region it shows, and optional masks (name -> file)."""

    name: str
    path: str
    region: Optional[str] = None
    masks: dict = field(default_factory=dict)
    note: str = ""


def _sarcoma(i: int) -> Case:
    return Case(
        f"STS_{i:03d}",
        f"sarcoma/STS_{i:03d}_ct.nii.gz",
        None,
        {"tumour": f"sarcoma/STS_{i:03d}_tumour.nii.gz"},
        "thigh crop, CT of PET/CT (noisy, HU clipped at -1000)",
    )


CASES: dict[str, Case] = {
    c.name: c
    for c in [
        Case("lung_tumour_5mm", "chest/lung_tumour_5mm.nii.gz", "chest",
             {"tumour": "chest/lung_tumour_5mm_tumour.nii.gz"}, "chest, 0.63x0.63x5 mm"),
        Case("abdomen_pelvis_3mm", "abdomen/abdomen_pelvis_3mm.nii.gz", "abdomen", {}, "abdomen+pelvis, 3 mm iso"),
        Case("abdomen_3mm_small", "abdomen/abdomen_3mm_small.nii.gz", "abdomen",
             {"labels": "abdomen/abdomen_3mm_small_labels.nii.gz"}, "30 slices of abdomen_pelvis_3mm, TotalSegmentator labels"),
        Case("cta_aorta_crop", "chest/cta_aorta_crop.nii.gz", "chest",
             {"aorta": "chest/cta_aorta_crop_aorta.nii.gz"}, "chest CTA crop, 1.5 mm iso"),
        Case("lidc_chest_1mm", "chest/lidc_chest_1mm.nii.gz", "chest", {}, "chest, 1 mm iso (resampled)"),
        Case("chest_upper_abdomen", "chest/chest_upper_abdomen.nii.gz", "chest",
             {"labels": "chest/chest_upper_abdomen_labels.nii.gz"}, "chest + upper abdomen, 0.7x0.7x2.5 mm"),
        Case("head_cranium", "head/head_cranium_1.5mm.nii.gz", "head_neck", {}, "head, 0.96x0.96x1.5 mm"),
        Case("head_trauma_ge", "head/head_trauma_ge.nii.gz", "head_neck", {}, "head, 0.98x0.98x2 mm (resampled)"),
    ]
    + [_sarcoma(i) for i in range(1, 37)]
}

# TotalSegmentator (v2) label ids used by the inpainting benchmark (see chest_upper_abdomen_labels.csv).
TOTALSEG_LIVER = 5


def parse_cases(text: Optional[str], default: Sequence[str]) -> list[str]:
    """Comma-separated case names (``STS_034..036`` ranges allowed) or the default list."""
    if not text:
        return list(default)
    names: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if ".." in part:
            first, last = part.split("..")
            prefix = first.rstrip("0123456789")
            start = int(first[len(prefix):])
            stop = int(last.lstrip("STS_") or last)
            names += [f"{prefix}{i:03d}" for i in range(start, stop + 1)]
        elif part:
            names.append(part)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"Unknown case(s) {unknown}. Known: {', '.join(CASES)}")
    return names


def read_case(name: str) -> sitk.Image:
    """The case's CT as a float32 image (HU), with its own geometry."""
    path = data_root() / CASES[name].path
    if not path.is_file():
        raise SystemExit(f"Missing {path}: the shared CT data is needed (set MEDDIFFFM_CT_DATA to its folder).")
    return sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)


def read_mask(name: str, which: str) -> np.ndarray:
    """A mask or label map of a case as a (z, y, x) integer array on the case's grid."""
    path = data_root() / CASES[name].masks[which]
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def cache_dir() -> Path:
    """Where simulated inputs are cached between runs: ``$MEDDIFFFM_BENCH_CACHE`` or
    ``~/.cache/meddifffm-bench`` (delete it to re-simulate)."""
    env = os.environ.get("MEDDIFFFM_BENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meddifffm-bench"


def spacing_zyx(image: sitk.Image) -> np.ndarray:
    return np.asarray(image.GetSpacing()[::-1], dtype=float)


def crop_box(
    hu: np.ndarray, spacing_xyz: Sequence[float], size_mm: float | Sequence[float], center: Optional[Sequence[float]] = None
) -> tuple[slice, slice, slice]:
    """A (z, y, x) box of about ``size_mm`` (one number or (z, y, x)) around ``center`` (voxel
    indices; default: the centroid of the voxels above -300 HU), clipped to the volume."""
    size = np.broadcast_to(np.asarray(size_mm, dtype=float), (3,))
    sp = np.asarray(spacing_xyz, dtype=float)[::-1]
    if center is None:
        body = np.argwhere(hu > -300)
        center = body.mean(axis=0) if len(body) else np.asarray(hu.shape) / 2.0
    box = []
    for c, n, s, length in zip(center, hu.shape, sp, size):
        count = int(min(n, max(1, round(length / s))))
        start = int(round(c - count / 2.0))
        start = min(max(0, start), n - count)
        box.append(slice(start, start + count))
    return tuple(box)  # type: ignore[return-value]


def crop_image(image: sitk.Image, box: Sequence[slice]) -> sitk.Image:
    """Crop a SimpleITK image with a (z, y, x) box, keeping its physical geometry."""
    z, y, x = box
    return image[x.start:x.stop, y.start:y.stop, z.start:z.stop]


def like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """``array`` (z, y, x) as an image on ``reference``'s grid."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(reference)
    return image


def whole_scan_region(image: sitk.Image) -> str:
    """The region the library guesses on the whole scan, as a user running a task on a loaded CT gets;
    "unknown" when it finds none, so that a box cut from it is not guessed again (STS_035's tumour box,
    a thigh crop around its femur, reads as head and neck)."""
    from MedDiffFMLib.models.config import UNKNOWN_REGION
    from MedDiffFMLib.preprocessing import guess_region

    return guess_region(image) or UNKNOWN_REGION

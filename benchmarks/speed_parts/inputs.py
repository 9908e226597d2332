"""The volumes :mod:`benchmarks.speed` times and the files each task reads: a crop of a real CT, a
synthetic CT-like volume of any size, and per task the CT, a sphere mask or a thick-slice copy."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from benchmarks.common import ct_cases


def real_ct(case: str, size_xyz, spacing: Optional[float]) -> sitk.Image:
    """A crop of ``size_xyz`` voxels of a real case (optionally resampled to ``spacing`` mm first)."""
    image = ct_cases.read_case(case)
    if spacing:
        from MedDiffFMLib.preprocessing.resample import resample_to_spacing

        image = resample_to_spacing(image, spacing)
    hu = sitk.GetArrayViewFromImage(image)
    sp = image.GetSpacing()
    size_mm = [n * s for n, s in zip(size_xyz[::-1], sp[::-1])]
    box = ct_cases.crop_box(np.asarray(hu), sp, size_mm)
    return sitk.Cast(sitk.Round(ct_cases.crop_image(image, box)), sitk.sitkInt16)


def synthetic_ct(size_xyz=(512, 512, 300), spacing=(0.8, 0.8, 1.5), seed: int = 0) -> sitk.Image:
    """A CT-like int16 volume: air, an elliptic body (fat rim, muscle, two lungs in the upper 60 %
    of the slices, a liver-like organ below, a spine) and 35 HU of Gaussian noise in the body: the
    level of the denoising benchmark, so that denoising has work to do on every model grid (with 15 HU,
    a 1 mm model saw too little noise after resampling and rightly returned the input)."""
    nx, ny, nz = size_xyz
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:ny, :nx].astype(np.float32)
    cx, cy = nx / 2.0, ny / 2.0
    r_body = ((x - cx) / (0.42 * nx)) ** 2 + ((y - cy) / (0.30 * ny)) ** 2
    body = r_body < 1.0
    muscle = r_body < 0.8
    lungs = ((((x - cx + 0.17 * nx) / (0.13 * nx)) ** 2 + ((y - cy + 0.02 * ny) / (0.2 * ny)) ** 2) < 1.0) | (
        (((x - cx - 0.17 * nx) / (0.13 * nx)) ** 2 + ((y - cy + 0.02 * ny) / (0.2 * ny)) ** 2) < 1.0)
    spine = ((x - cx) ** 2 + (y - cy - 0.2 * ny) ** 2) < (0.04 * nx) ** 2
    liver = (((x - cx + 0.1 * nx) / (0.22 * nx)) ** 2 + ((y - cy) / (0.18 * ny)) ** 2) < 1.0
    upper = np.where(body, -100.0, -1000.0).astype(np.float32)
    upper[muscle] = 45.0
    lower = upper.copy()
    upper[lungs] = -850.0
    lower[liver] = 60.0
    upper[spine] = 700.0
    lower[spine] = 700.0
    volume = np.empty((nz, ny, nx), np.int16)
    for k in range(nz):
        base = upper if k >= 0.4 * nz else lower
        noise = rng.normal(0.0, 35.0, size=base.shape).astype(np.float32)
        volume[k] = np.clip(np.round(base + np.where(body, noise, 0.0)), -1024, 3071)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(tuple(float(s) for s in spacing))
    return image


@dataclasses.dataclass
class TaskInput:
    task: str
    image_path: Path
    mask_path: Optional[Path] = None
    factor: Optional[int] = None
    voxels: int = 0


def prepare_inputs(image: sitk.Image, tasks, folder: Path, tag: str) -> dict[str, TaskInput]:
    """Files each task reads: the CT, a 15 mm sphere mask at the body centre (inpaint, lesion), a
    5 mm thick-slice copy (superres, F = 5 mm / z spacing)."""
    folder.mkdir(parents=True, exist_ok=True)
    ct = folder / f"{tag}_ct.nii.gz"
    sitk.WriteImage(image, str(ct))
    voxels = int(np.prod(image.GetSize()))
    inputs = {}
    for task in tasks:
        if task in ("denoise", "anomaly", "synthesize"):
            inputs[task] = TaskInput(task, ct, voxels=voxels)
        elif task in ("inpaint", "lesion"):
            mask_path = folder / f"{tag}_sphere.nii.gz"
            if not mask_path.exists():
                hu = sitk.GetArrayViewFromImage(image)
                centre = np.argwhere(np.asarray(hu) > -300).mean(axis=0)
                zz, yy, xx = np.indices(hu.shape, dtype=np.float32)
                sp = image.GetSpacing()[::-1]
                r2 = ((zz - centre[0]) * sp[0]) ** 2 + ((yy - centre[1]) * sp[1]) ** 2 + ((xx - centre[2]) * sp[2]) ** 2
                sitk.WriteImage(ct_cases.like((r2 <= 15.0**2).astype(np.uint8), image), str(mask_path))
            inputs[task] = TaskInput(task, ct, mask_path, voxels=voxels)
        elif task == "superres":
            dz = image.GetSpacing()[2]
            factor = max(2, int(round(5.0 / dz)))
            hu = sitk.GetArrayFromImage(image).astype(np.float32)
            nz = (hu.shape[0] // factor) * factor
            thick = hu[:nz].reshape(nz // factor, factor, *hu.shape[1:]).mean(axis=1)
            thick_image = sitk.GetImageFromArray(np.round(thick).astype(np.int16))
            thick_image.SetSpacing((*image.GetSpacing()[:2], dz * factor))
            thick_image.SetDirection(image.GetDirection())
            direction = np.asarray(image.GetDirection()).reshape(3, 3)
            thick_image.SetOrigin(tuple(np.asarray(image.GetOrigin()) + direction[:, 2] * (factor - 1) / 2.0 * dz))
            path = folder / f"{tag}_thick.nii.gz"
            sitk.WriteImage(thick_image, str(path))
            inputs[task] = TaskInput(task, path, factor=factor, voxels=voxels)
    return inputs


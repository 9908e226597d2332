"""A before/after picture: axial, coronal and sagittal slices through the volume centre."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .io.durable import Staged, stage_file


def _slices(image: sitk.Image, level: float, width: float) -> list[np.ndarray]:
    # Radiological display whatever the stored axis order: LPS voxel axes put anterior at the top of
    # the axial view and the patient's right on the viewer's left.
    image = sitk.DICOMOrient(image, "LPS")
    # Resample to isotropic in-plane spacing so coronal/sagittal views keep their aspect ratio.
    spacing = min(image.GetSpacing())
    size = [max(1, int(round(n * s / spacing))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    iso = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), [spacing] * 3,
                        image.GetDirection(), -1024.0, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(iso)
    z, y, x = (n // 2 for n in array.shape)
    views = [array[z], array[:, y][::-1], array[:, :, x][::-1]]
    low = level - width / 2
    return [np.clip((v - low) / width * 255, 0, 255).astype(np.uint8) for v in views]


def write_preview(
    before: sitk.Image,
    after: sitk.Image,
    path: str | Path,
    titles: Sequence[str] = ("before", "after"),
    window: tuple[float, float] = (40.0, 400.0),
    difference: bool = True,
) -> Path:
    """Write a PNG with the input on the top row, the result below (soft-tissue window by default)
    and, when ``difference`` and the grids match, the input minus the result (grey = 0, +-100 HU).
    Atomic and verified (see :func:`stage_preview`)."""
    return stage_preview(before, after, path, titles, window, difference).publish()


def stage_preview(
    before: sitk.Image,
    after: sitk.Image,
    path: str | Path,
    titles: Sequence[str] = ("before", "after"),
    window: tuple[float, float] = (40.0, 400.0),
    difference: bool = True,
) -> Staged:
    """:func:`write_preview` up to the final rename: the PNG, read back whole and fsync'ed, waits
    under a temporary name; ``.publish()`` puts it in place."""
    from PIL import Image, ImageDraw

    path = Path(path)
    if not path.parent.resolve().is_dir():
        raise InputError(f"The preview folder '{path.parent}' does not exist.")
    images = [(sitk.Cast(before, sitk.sitkFloat32), window), (sitk.Cast(after, sitk.sitkFloat32), window)]
    titles = list(titles)
    if difference and before.GetSize() == after.GetSize():
        diff = sitk.Subtract(images[0][0], images[1][0])
        diff.CopyInformation(images[0][0])
        images.append((diff, (0.0, 200.0)))
        titles.append(f"{titles[0]} - {titles[1]}")
    rows = []
    for image, (level, width) in images:
        views = _slices(image, level, width)
        height = max(v.shape[0] for v in views)
        padded = [np.pad(v, ((0, height - v.shape[0]), (0, 4))) for v in views]
        rows.append(np.concatenate(padded, axis=1))
    width = max(r.shape[1] for r in rows)
    canvas = np.concatenate([np.pad(r, ((18, 0), (0, width - r.shape[1]))) for r in rows], axis=0)
    picture = Image.fromarray(canvas).convert("RGB")
    draw = ImageDraw.Draw(picture)
    offset = 0
    for title, row, (_, (level, width)) in zip(titles, rows, images):
        draw.text((4, offset + 3), f"{title}  (W{width:.0f} L{level:.0f})", fill=(255, 255, 0))
        offset += row.shape[0] + 18
    return stage_file(path, lambda tmp: picture.save(tmp, format="PNG"), verify=_verify_png,
                      what=f"the preview '{path.name}'")


def _verify_png(file: Path) -> None:
    """The PNG reads back whole (PIL checks every chunk's CRC and the image data's end)."""
    from PIL import Image

    try:
        with Image.open(file) as check:
            check.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise OSError(f"the picture read back is damaged ({exc})") from None


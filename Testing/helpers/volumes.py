"""Small generated CT-like volumes for tests (fast, deterministic, no real data needed).

Arrays are (z, y, x); spacing and origin are (x, y, z) as in SimpleITK.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

# A proper rotation (determinant +1), about all three axes: no axis is aligned with the world.
_a, _b, _c = np.deg2rad([20.0, -15.0, 30.0])
_RX = np.array([[1, 0, 0], [0, np.cos(_a), -np.sin(_a)], [0, np.sin(_a), np.cos(_a)]])
_RY = np.array([[np.cos(_b), 0, np.sin(_b)], [0, 1, 0], [-np.sin(_b), 0, np.cos(_b)]])
_RZ = np.array([[np.cos(_c), -np.sin(_c), 0], [np.sin(_c), np.cos(_c), 0], [0, 0, 1]])
OBLIQUE_DIRECTION: Tuple[float, ...] = tuple((_RZ @ _RY @ _RX).ravel())

ANISO_SPACING = (0.8, 0.7, 2.5)
ODD_ORIGIN = (-40.5, 25.25, -12.75)

AIR, LUNG, FAT, SOFT, BONE = -1000, -850, -100, 40, 1200


def ct_like_array(shape: Sequence[int] = (10, 24, 20), seed: int = 0, lungs: bool = True) -> np.ndarray:
    """An int16 (z, y, x) phantom in HU: air around an elliptic body (fat rim, soft tissue with
    noise), two 'lungs' and a 'spine' of bone."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:ny, 0:nx]
    cy, cx = (ny - 1) / 2.0, (nx - 1) / 2.0
    r = ((y - cy) / (0.45 * ny)) ** 2 + ((x - cx) / (0.45 * nx)) ** 2
    sl = np.full((ny, nx), AIR, dtype=np.float64)
    sl[r <= 1.0] = FAT
    sl[r <= 0.75] = SOFT
    if lungs:
        for side in (-1, 1):
            lr = ((y - cy) / (0.22 * ny)) ** 2 + ((x - cx - side * 0.2 * nx) / (0.12 * nx)) ** 2
            sl[lr <= 1.0] = LUNG
    spine = ((y - cy - 0.28 * ny) / (0.08 * ny)) ** 2 + ((x - cx) / (0.08 * nx)) ** 2
    sl[spine <= 1.0] = BONE
    vol = np.repeat(sl[None], nz, axis=0)
    inside = vol > AIR
    vol[inside] += rng.normal(0.0, 10.0, size=int(inside.sum()))
    return np.rint(vol).astype(np.int16)


def make_image(
    array: np.ndarray,
    spacing: Sequence[float] = ANISO_SPACING,
    origin: Sequence[float] = ODD_ORIGIN,
    direction: Sequence[float] = OBLIQUE_DIRECTION,
) -> sitk.Image:
    """Wrap a (z, y, x) array as a SimpleITK image (plain SimpleITK, independent of the library)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in direction))
    return image


def oblique_ct(shape: Sequence[int] = (10, 24, 20), seed: int = 0, lungs: bool = True) -> sitk.Image:
    """The phantom of :func:`ct_like_array` with an oblique direction and anisotropic spacing."""
    return make_image(ct_like_array(shape, seed, lungs))


def axis_aligned_ct(shape: Sequence[int] = (10, 24, 20), seed: int = 0) -> sitk.Image:
    """The phantom with identity direction, 1 mm spacing and origin 0."""
    identity = tuple(np.eye(3).ravel())
    return make_image(ct_like_array(shape, seed), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), identity)


def two_series_folder(folder: Path, description: str = "phantom") -> List[Tuple[str, int]]:
    """Write two generated DICOM series (5 and 7 slices) into ``folder`` (created) and return
    ``[(series_uid, n_slices), ...]``."""
    from MedDiffFMLib.io import write_volume  # the library writes the series under test

    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for k, nz in enumerate((5, 7)):
        sub = folder.parent / f".{folder.name}_series{k}"
        write_volume(
            oblique_ct((nz, 12, 10), seed=k), sub, dicom_tags={"0008|103e": f"{description} {k}"}
        )
        files = sorted(sub.iterdir())
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(files[0]))
        reader.ReadImageInformation()
        found.append((reader.GetMetaData("0020|000e").strip(), nz))
        for f in files:
            shutil.move(str(f), str(folder / f"s{k}_{f.name}"))
        sub.rmdir()
    return found

"""Check that an image is a usable 3D scalar volume before any work is done on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

_FLOAT_TYPES = {sitk.sitkFloat32, sitk.sitkFloat64}


def validate_volume(image: sitk.Image, name: str = "input") -> None:
    """Raise InputError unless ``image`` is a 3D, single-component, non-empty volume with
    finite voxel values and positive spacing. ``name`` is used in the messages."""
    dim = image.GetDimension()
    size = "x".join(str(s) for s in image.GetSize())
    if dim == 2:
        raise InputError(
            f"The {name} is a 2D image ({size}); MedDiffFM needs a 3D volume. For DICOM, pass the "
            "folder holding the whole series rather than one slice."
        )
    if dim != 3:
        raise InputError(
            f"The {name} is a {dim}D image ({size}), e.g. a time series or several volumes in one "
            "file; MedDiffFM needs one 3D volume. Extract a single 3D volume first."
        )
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise InputError(
            f"The {name} has {components} values per voxel (colour, vector or complex image); a CT "
            "volume has one. Convert it to a single-channel (grey-level) volume first."
        )
    if min(image.GetSize()) < 2:
        raise InputError(
            f"The {name} is empty or flat (size {size}): every axis needs at least 2 voxels for a "
            "3D volume. Check that the whole scan was loaded, not a single slice."
        )
    spacing = image.GetSpacing()
    if min(spacing) <= 0 or not np.all(np.isfinite(spacing)):
        raise InputError(
            f"The {name} has a non-positive voxel spacing {tuple(spacing)} mm. Fix the spacing in "
            "the file header (the voxel size of the scan)."
        )
    check_finite(image, name)


@dataclass
class NonFinite:
    """NaN / +inf / -inf voxels found so far: counts and (x, y, z) index box. Fed chunk by chunk
    (``add``) so that a file can be scanned while it streams."""

    shape_xyz: Tuple[int, ...]
    nan: int = 0
    pos: int = 0
    neg: int = 0
    first: Optional[Tuple[int, ...]] = None
    low: Optional[np.ndarray] = None
    high: Optional[np.ndarray] = None
    seen: int = 0

    @property
    def count(self) -> int:
        return self.nan + self.pos + self.neg

    def add(self, values: np.ndarray) -> None:
        """The next voxels in file order (x fastest), one value per voxel."""
        flat = values.ravel()
        bad = np.flatnonzero(~np.isfinite(flat))
        if bad.size:
            kinds = flat[bad]
            nan = int(np.count_nonzero(np.isnan(kinds)))
            pos = int(np.count_nonzero(kinds == np.inf))
            self.nan, self.pos, self.neg = self.nan + nan, self.pos + pos, self.neg + bad.size - nan - pos
            index = bad + self.seen
            xyz = []
            for n in self.shape_xyz:
                xyz.append(index % n)
                index = index // n
            where = np.stack(xyz, axis=1)
            if self.first is None:
                self.first = tuple(int(v) for v in where[0])
            low, high = where.min(axis=0), where.max(axis=0)
            self.low = low if self.low is None else np.minimum(self.low, low)
            self.high = high if self.high is None else np.maximum(self.high, high)
        self.seen += flat.size

    def raise_if_any(self, name: str, image: Optional[sitk.Image] = None) -> None:
        """Raise InputError (count, kinds, where; ``image`` gives the physical position) if any."""
        if not self.count:
            return
        total = int(np.prod(self.shape_xyz))
        kinds = ", ".join(f"{n} {label}" for n, label in ((self.nan, "NaN"), (self.pos, "+inf"), (self.neg, "-inf"))
                          if n)
        if self.count >= total:
            what = "NaN" if self.nan >= total else "NaN or infinite"
            raise InputError(
                f"Every voxel of the {name} ({total}) is {what} ({kinds}): it holds no image at all. The file was "
                "probably written by a failed computation; export the volume again."
            )
        at = ""
        if image is not None and self.first is not None:
            try:
                at = f" at {tuple(round(v, 1) for v in image.TransformIndexToPhysicalPoint(self.first))} mm"
            except (RuntimeError, TypeError):
                at = ""
        low = tuple(int(v) for v in self.low)  # type: ignore[union-attr]
        high = tuple(int(v) for v in self.high)  # type: ignore[union-attr]
        raise InputError(
            f"The {name} has {self.count} voxels that are NaN or infinite ({kinds}, of {total}); the first is voxel "
            f"(x, y, z) {self.first}{at}, and all lie within voxels {low} to {high}. MedDiffFM does not guess "
            "values for them: replace them (e.g. with -1000 HU for air, or crop them away) and run again."
        )


def check_finite(image: sitk.Image, name: str = "input") -> None:
    """Raise InputError when a float volume holds NaN or infinite voxels, saying how many of each
    and where (first voxel, index box, physical position); they are never turned into numbers
    silently."""
    if image.GetPixelID() not in _FLOAT_TYPES and image.GetPixelIDValue() not in (
        sitk.sitkVectorFloat32, sitk.sitkVectorFloat64
    ):
        return
    values = sitk.GetArrayViewFromImage(image)
    if values.ndim > image.GetDimension():  # vector pixels: a voxel is bad when one component is
        values = np.where(np.isfinite(values).all(axis=-1), 0.0, np.nan)
    found = NonFinite(tuple(image.GetSize()))
    found.add(values)
    found.raise_if_any(name, image)

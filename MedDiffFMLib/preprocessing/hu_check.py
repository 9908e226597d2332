"""Is a volume CT in Hounsfield units? A cheap check on its intensity histogram.

Rule (calibrated on every volume of the shared CT set: chest, abdomen, DICOM abdomen, the 36
soft-tissue-sarcoma crops clipped at -1000; and against the raw-values head DICOM, a [0, 1]
normalised and a uint8 volume): CT in HU shows air or lung, or at least fat, at fixed HU.
It passes when at least 1 % of the voxels lie in the air/lung range [-1200, -700] HU (the
lowest real volume has 7 %; low-dose PET/CT air sits near -870), or, for a tight soft-tissue
crop with no air, at least 5 % lie in the fat range [-200, -30] HU with a median in
[-200, 400] HU. Raw detector values (air near 0, fat near 920), normalised or 8-bit images
have neither.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

AIR_RANGE = (-1200.0, -700.0)
FAT_RANGE = (-200.0, -30.0)
MIN_AIR_FRACTION = 0.01
MIN_FAT_FRACTION = 0.05
SOFT_TISSUE_MEDIAN = (-200.0, 400.0)
_MAX_SAMPLES = 2_000_000


def _sample(image: sitk.Image) -> np.ndarray:
    # A regular subsample is plenty for percentiles and keeps big volumes fast.
    flat = sitk.GetArrayViewFromImage(image).ravel()
    step = max(1, flat.size // _MAX_SAMPLES)
    values = flat[::step].astype(np.float32)
    return values[np.isfinite(values)]


def _fraction(values: np.ndarray, bounds: tuple) -> float:
    return float(np.count_nonzero((values >= bounds[0]) & (values <= bounds[1]))) / max(values.size, 1)


def _hint(image: sitk.Image, p1: float, top: float) -> str:
    if image.GetPixelID() in (sitk.sitkUInt8, sitk.sitkInt8):
        return " An 8-bit image cannot hold HU (it may come from a screenshot or a PNG/JPEG stack)."
    if top <= 1.0 + 1e-6:
        return " All values are at most 1: the volume looks normalised (e.g. to [0, 1])."
    if -50.0 <= p1 <= 50.0 and top > 1500.0:
        return (" Air seems to be near 0: these look like raw scanner values (often HU + 1024)"
                " stored without usable rescale slope/intercept tags.")
    return ""


def check_hu(image: sitk.Image, name: str = "input") -> None:
    """Raise InputError when ``image`` does not look like CT in Hounsfield units (see the
    module docstring for the rule). Callers skip the check on ``--allow-non-hu``."""
    values = _sample(image)
    if values.size == 0:
        raise InputError(f"The {name} has no finite voxel values (every voxel is NaN or infinite); it cannot be CT in HU.")
    air = _fraction(values, AIR_RANGE)
    fat = _fraction(values, FAT_RANGE)
    p1, median, top = (float(v) for v in np.percentile(values, [1, 50, 99.9]))
    if air >= MIN_AIR_FRACTION:
        return
    if fat >= MIN_FAT_FRACTION and SOFT_TISSUE_MEDIAN[0] <= median <= SOFT_TISSUE_MEDIAN[1]:
        return
    raise InputError(
        f"The {name} does not look like CT in Hounsfield units: its 1st percentile is {p1:.4g} and "
        f"its median {median:.4g} ({image.GetPixelIDTypeAsString()}), with {100 * air:.1f}% of "
        f"voxels in the air/lung range ({AIR_RANGE[0]:.0f} to {AIR_RANGE[1]:.0f} HU) and "
        f"{100 * fat:.1f}% in the fat range ({FAT_RANGE[0]:.0f} to {FAT_RANGE[1]:.0f} HU); CT in HU "
        f"has air near -1000 and fat near -100.{_hint(image, p1, top)} Convert the volume to HU "
        "(HU = stored value x RescaleSlope + RescaleIntercept, for raw values usually value - 1024), "
        "fix the DICOM rescale tags, or, if you are sure it is HU, pass --allow-non-hu."
    )

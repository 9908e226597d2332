"""CT preprocessing: HU windows, resampling to the model grid and back (ModelSpace), the HU
sanity check, body-region guess and masks on other grids.

The names below are imported on first use (see ``MedDiffFMLib._lazy``), so that ``preprocessing.window``
(numpy only) works on a machine without SimpleITK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "check_extent": "extent",
    "check_hu": "hu_check",
    "mask_on_grid": "masks",
    "ModelSpace": "model_space",
    "ResampledNoise": "noise_bands",
    "resampled_noise": "noise_bands",
    "wiener_shrink": "noise_bands",
    "RegionFeatures": "region",
    "guess_region": "region",
    "region_features": "region",
    "grid_for_spacing": "resample",
    "resample_like": "resample",
    "resample_to_spacing": "resample",
    "REGION_WINDOWS": "window",
    "HUWindow": "window",
    "window_for_region": "window",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from .extent import check_extent
    from .hu_check import check_hu
    from .masks import mask_on_grid
    from .model_space import ModelSpace
    from .region import RegionFeatures, guess_region, region_features
    from .resample import grid_for_spacing, resample_like, resample_to_spacing
    from .window import REGION_WINDOWS, HUWindow, window_for_region

"""CT preprocessing: HU windows, resampling to the model grid and back (ModelSpace), the HU
sanity check, body-region guess and masks on other grids."""

from .hu_check import check_hu
from .masks import mask_on_grid
from .model_space import ModelSpace
from .region import RegionFeatures, guess_region, region_features
from .resample import grid_for_spacing, resample_like, resample_to_spacing
from .window import REGION_WINDOWS, HUWindow, window_for_region

__all__ = [
    "REGION_WINDOWS",
    "HUWindow",
    "ModelSpace",
    "RegionFeatures",
    "check_hu",
    "grid_for_spacing",
    "guess_region",
    "mask_on_grid",
    "region_features",
    "resample_like",
    "resample_to_spacing",
    "window_for_region",
]

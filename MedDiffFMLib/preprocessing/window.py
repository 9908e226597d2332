"""HU windows: the linear map between Hounsfield units and the model's [-1, 1] range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class HUWindow:
    """A window ``[center - width/2, center + width/2]`` in HU, mapped linearly onto [-1, 1]."""

    center: float
    width: float

    def __post_init__(self) -> None:
        if not (self.width > 0 and np.isfinite(self.width) and np.isfinite(self.center)):
            raise ValueError(f"HUWindow needs a finite center and a positive width; got {self}")

    @property
    def low(self) -> float:
        """The lowest HU in the window (maps to -1)."""
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        """The highest HU in the window (maps to +1)."""
        return self.center + self.width / 2.0

    def hu_to_model(self, array: np.ndarray) -> np.ndarray:
        """HU -> float32 in [-1, 1]: clipped to the window, then linear."""
        hu = np.clip(np.asarray(array, dtype=np.float32), self.low, self.high)
        return np.clip((hu - np.float32(self.center)) / np.float32(self.width / 2.0), -1.0, 1.0)

    def model_to_hu(self, array: np.ndarray) -> np.ndarray:
        """Model range -> float32 HU; values outside [-1, 1] are clipped to the window first."""
        m = np.clip(np.asarray(array, dtype=np.float32), -1.0, 1.0)
        return m * np.float32(self.width / 2.0) + np.float32(self.center)


# Paper defaults per body region; a model configuration may override them.
REGION_WINDOWS: Dict[str, HUWindow] = {
    "head_neck": HUWindow(50, 400),
    "chest": HUWindow(-500, 1800),
    "abdomen": HUWindow(60, 360),
}


def window_for_region(region: str) -> HUWindow:
    """The default window of ``region`` (a key of REGION_WINDOWS); InputError otherwise."""
    try:
        return REGION_WINDOWS[region]
    except KeyError:
        raise InputError(
            f"Unknown region '{region}'. Use one of: {', '.join(REGION_WINDOWS)} (--region)."
        ) from None

"""Healthy inpainting: regenerate the voxels inside a mask as plausible tissue with the base model
(RePaint, see :mod:`.repaint`), keeping every voxel outside the mask bit-identical.

By default the mask starts from a smooth fill from the tissue around it, noised to half the
schedule (``init="surround"``), and 25 steps run from there (the stride of 50 steps over the whole
schedule): the region keeps its surroundings' intensity and the model redraws texture. From pure
noise (``init="noise"``) the region's intensity comes from the model's prior alone, which without a
body region filled thigh muscle with fat and air (benchmarks/inpaint_quality.py). A smaller
``start_step`` keeps more of the starting fill (or, with ``init="noise"``, of the original content).
``resample`` > 1 repeats each step after re-noising, which blends the region better at that many
times the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import SimpleITK as sitk

from ..engine import Engine
from ..progress import CancelCheck, ProgressCallback
from .repaint import RegenerateOptions, RegenerateResult, regenerate_region


@dataclass
class InpaintOptions(RegenerateOptions):
    """Inpainting settings.

    Attributes:
        steps: sampler steps (from ``start_step``, or from the last step).
        resample: RePaint repeats per step (1 = none).
        init: what the mask starts from: "surround" (smooth fill from around the mask) or "noise".
        start_step: diffusion step to start from (None: half the schedule for "surround", pure noise
            from the last step for "noise").
        eta: DDIM stochasticity (0 = deterministic given the seed).
        seed: random seed (the same seed gives the same result).
        region: body region (None: guessed).
        label: use only this label value of the mask (None: every non-zero voxel).
        allow_non_hu: skip the Hounsfield-unit check.
    """

    steps: int = 25
    init: str = "surround"


def inpaint_image(
    image: sitk.Image,
    mask: Union[sitk.Image, np.ndarray],
    engine: Engine,
    options: Optional[InpaintOptions] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> RegenerateResult:
    """Replace the masked region of a CT (HU) by healthy-looking tissue; the result is on the
    input's grid and pixel type, identical to the input outside the mask."""
    return regenerate_region(image, mask, engine, options or InpaintOptions(), stage="inpainting",
                             progress=progress, cancel=cancel)

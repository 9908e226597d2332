"""Lesion generation: the lesion ControlNet (role "lesion") draws a lesion in the shape of a mask,
conditioned on that mask on the model grid (:func:`~MedDiffFMLib.models.conditions.lesion_condition`); RePaint
(:mod:`.repaint`) keeps the rest of the image, and every voxel outside the mask is bit-identical
to the input.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import SimpleITK as sitk

from ..engine import Engine
from ..models.conditions import lesion_condition
from ..preprocessing.model_masks import shape_mask
from ..progress import CancelCheck, ProgressCallback
from .repaint import RegenerateOptions, RegenerateResult, regenerate_region

ROLE = "lesion"


class LesionOptions(RegenerateOptions):
    """Lesion generation settings (the same as :class:`~.inpaint.InpaintOptions`)."""


def _lesion_control(space, inside: np.ndarray):
    return lesion_condition(shape_mask(space, inside))


def generate_lesion_image(
    image: sitk.Image,
    mask: Union[sitk.Image, np.ndarray],
    engine: Engine,
    options: Optional[LesionOptions] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> RegenerateResult:
    """Generate a lesion inside ``mask`` of a CT (HU) with a lesion ControlNet engine
    (``Engine(role="lesion", expect_task="lesion")``)."""
    engine.require_controlnet(ROLE, "Lesion generation")
    return regenerate_region(image, mask, engine, options or LesionOptions(), condition=_lesion_control,
                             stage="lesion", progress=progress, cancel=cancel)

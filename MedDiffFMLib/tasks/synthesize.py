"""CT synthesis from pure noise, conditioned on the body region and, optionally, an anatomy label map.

The output grid is, in order of precedence: the anatomy label map's grid, a reference image's
grid (``like``), or ``size`` voxels at ``spacing`` mm (origin 0, identity direction; defaults: one
model patch at the model spacing). The model samples on that grid's model-spacing copy
(:meth:`ModelSpace.for_grid`) and the result is resampled onto the output grid, as int16 HU.
Anatomy conditioning needs a model trained with anatomy channels (``anatomy_channels`` > 0);
label ``c`` drives channel ``c - 1`` (:func:`~MedDiffFMLib.models.conditions.anatomy_condition`).
A label map given to a model without them is refused (:func:`check_anatomy_conditioning`), before
any work: the CLI and batch check the model's config before reading an input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk
import torch

from .. import option_checks as checks
from ..device import check_fits_in_memory
from ..engine import Engine
from ..errors import InputError
from ..io import Geometry, geometry_of, image_from_array, validate_volume
from ..models.conditions import anatomy_condition
from ..models.config import ModelConfig
from ..preprocessing import ModelSpace, resample_like
from ..progress import CancelCheck, ProgressCallback, notify
from ..sampling import Conditions
from .shared import as_pixel_type, check_region
from .skeleton import plan_sampling, postprocessing, preprocessing

MAX_SIZE = 2048

# With the shipped starter model, many DDIM steps drift to a degenerate sample (DDIM @ 50: 11 % air,
# 49 % lung-like voxels, HU 1-Wasserstein 172 HU to real chest CT) while 10 steps give realistic
# tissue fractions (43/18/7/7/1 % air/lung/fat/soft/bone vs real 50/10/14/14/3 %, W1 71 HU), as
# DPM-Solver++ does at 20 (W1 69 HU) but not better: benchmarks/results/sampler_steps_synthesis_quick.md.
DEFAULT_SYNTHESIS_STEPS = 10


@dataclass
class SynthesisOptions:
    """Synthesis settings.

    Attributes:
        region: body region (required: head_neck, chest or abdomen).
        size: output size (x, y, z) in voxels when neither anatomy nor ``like`` gives the grid.
        spacing: output spacing in mm (one number or (x, y, z)) with ``size``.
        origin: output origin (x, y, z) in mm with ``size`` (default 0).
        direction: output direction (9 numbers, row by row) with ``size`` (default identity).
        steps: sampler steps from pure noise.
        eta: DDIM stochasticity (0: deterministic given the seed).
        seed: random seed.
    """

    region: Optional[str] = None
    size: Optional[Sequence[int]] = None
    spacing: Optional[Union[float, Sequence[float]]] = None
    origin: Optional[Sequence[float]] = None
    direction: Optional[Sequence[float]] = None
    steps: int = DEFAULT_SYNTHESIS_STEPS
    eta: float = 0.0
    seed: Optional[int] = 0

    def validate(self) -> None:
        """Raise InputError (one paragraph) on a value out of range; needs no input and no model.
        (The grid options are checked with the grid, where --anatomy/--like are known.)"""
        checks.check_steps(self.steps)
        checks.check_eta(self.eta)
        checks.check_seed(self.seed)


@dataclass
class SynthesisResult:
    image: sitk.Image  # int16 HU
    region: str
    anatomy_used: bool
    steps: int


def check_anatomy_conditioning(config: ModelConfig, model_name: str, instead: str = "") -> None:
    """Raise InputError when the model ``model_name`` (config ``config``) cannot take an anatomy label
    map: it was trained without anatomy channels, so the map would condition nothing. ``instead``:
    what the caller's user can do (default: synthesise without the map, or take its grid with like)."""
    if config.anatomy_channels > 0:
        return
    instead = instead or ("Synthesise without the anatomy label map (--anatomy, anatomy=); to put the synthetic CT "
                          "on the map's grid, pass the map as the reference grid (--like, like=) instead")
    raise InputError(
        f"Model '{model_name}' takes no anatomy label map: it was trained without anatomy channels "
        f"(anatomy_channels = 0 in its config), so it is conditioned on the body region only. {instead}; or "
        "pass --model with a model trained with anatomy channels (its model card lists the conditions it takes). "
        "Nothing was written."
    )


def _spacing3(spacing, default) -> tuple[float, float, float]:
    values = np.atleast_1d(np.asarray(default if spacing is None else spacing, dtype=float)).ravel()
    if values.size == 1:
        values = np.repeat(values, 3)
    if values.size != 3 or not np.all(values > 0) or not np.all(np.isfinite(values)):
        raise InputError(f"--spacing must be one positive number or three (x, y, z) in mm; got {spacing!r}.")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def output_grid(engine: Engine, options: SynthesisOptions, anatomy: Optional[sitk.Image], like: Optional[sitk.Image]) -> Geometry:
    """The grid the synthetic CT is written on (see the module doc)."""
    if anatomy is not None and like is not None:
        raise InputError("Pass either an anatomy label map or a reference image (--like), not both: "
                         "the label map already defines the output grid.")
    if anatomy is not None or like is not None:
        if any(v is not None for v in (options.size, options.spacing, options.origin, options.direction)):
            raise InputError("--size/--spacing (origin, direction) cannot be combined with --anatomy or --like: "
                             "those define the output grid.")
        reference = anatomy if anatomy is not None else like
        validate_volume(reference, "anatomy label map" if anatomy is not None else "reference image")
        return geometry_of(reference)
    model_spacing = tuple(reversed(engine.config.spacing_mm))  # (x, y, z)
    spacing = _spacing3(options.spacing, model_spacing)
    if options.size is None:
        patch = tuple(reversed(engine.config.patch_size))
        size = tuple(max(2, int(round(p * m / s))) for p, m, s in zip(patch, model_spacing, spacing))
    else:
        size = tuple(int(v) for v in options.size)
        if len(size) != 3 or any(v < 2 or v > MAX_SIZE for v in size) or any(int(v) != v for v in options.size):
            raise InputError(f"--size must be three whole numbers (x, y, z) between 2 and {MAX_SIZE}; got {options.size!r}.")
    # image_from_array validates the origin and direction the way every other input is checked.
    checked = geometry_of(image_from_array(np.zeros((2, 2, 2), np.uint8), spacing, options.origin, options.direction))
    return Geometry(size=size, spacing=spacing, origin=checked.origin, direction=checked.direction)


def _anatomy_on_model_grid(anatomy: sitk.Image, space: ModelSpace) -> np.ndarray:
    if anatomy.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        values = sitk.GetArrayViewFromImage(anatomy)
        if not np.allclose(values, np.round(values)):
            raise InputError("The anatomy label map has non-integer values; pass a label map (one integer per structure).")
        anatomy = sitk.Cast(anatomy, sitk.sitkInt32)
    labels = sitk.GetArrayFromImage(resample_like(anatomy, space.model_geometry, "nearest", 0))
    return np.pad(labels, space.padding, constant_values=0)


def synthesize_image(
    engine: Engine,
    options: SynthesisOptions,
    *,
    anatomy: Optional[sitk.Image] = None,
    like: Optional[sitk.Image] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> SynthesisResult:
    """Sample a CT (int16 HU) for ``options.region`` on the grid described in the module doc."""
    region = check_region(engine, options.region, required=True)
    options.validate()
    steps = int(options.steps)
    grid = output_grid(engine, options, anatomy, like)
    if anatomy is not None:
        check_anatomy_conditioning(engine.config, engine.model_name)
    check_fits_in_memory(int(np.prod(grid.size)), 4, "The synthetic volume")
    with preprocessing(progress, cancel):
        space = ModelSpace.for_grid(grid, tuple(reversed(engine.config.spacing_mm)), engine.window(region),
                                    min_size=engine.config.patch_size)
        channels = engine.config.anatomy_channels
        anatomy_tensor: Optional[torch.Tensor] = None
        if anatomy is not None:
            labels = _anatomy_on_model_grid(anatomy, space)
            present = np.unique(labels[labels > 0])
            if present.size == 0:
                notify(progress, "The anatomy label map has no labelled voxel on the model grid; sampling without anatomy.")
            elif present.max() > channels:
                notify(progress, f"Labels above {channels} (this model's anatomy channels) are ignored: "
                                 f"{present[present > channels][:10].tolist()}.")
            anatomy_tensor = anatomy_condition(labels, channels)

    plan = plan_sampling(engine, steps=steps, start_step=None, eta=options.eta, seed=options.seed, progress=progress)
    x = plan.noise((1, 1, *space.model_array.shape))
    predictor = engine.predictor(space, Conditions(region=engine.region_index(region), anatomy=anatomy_tensor))
    result = plan.run(predictor, x, stage="synthesis", progress=progress, cancel=cancel)
    with postprocessing(progress, cancel):
        hu = sitk.GetArrayFromImage(space.to_input_grid(result[0, 0].numpy()))
        image = image_from_array(as_pixel_type(hu, sitk.sitkInt16), grid.spacing, grid.origin, grid.direction)
    return SynthesisResult(image, region, anatomy_tensor is not None, len(plan.timesteps))

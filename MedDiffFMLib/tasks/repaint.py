"""RePaint: regenerate a masked region with the shared sampler, keeping the rest of the image.

At every step the known region of the sample is replaced by the input noised to that step
(``after_step`` hook), so the generated region is harmonised with its surroundings; with
``resample`` > 1 each step is repeated after re-noising (RePaint's resampling). Healthy inpainting
(base model) and lesion generation (lesion ControlNet conditioned on the mask) both run
:func:`regenerate_region`; they differ only in the model and the condition.

Where the region starts from (``init``): ``"noise"`` is pure noise from the last step (or, with a
``start_step``, the input's own voxels noised to it); ``"surround"`` is a smooth fill from the tissue
around the mask (:func:`~MedDiffFMLib.preprocessing.surround_fill.surround_fill`) noised to the
start step (default: half the schedule), so the region keeps its surroundings' intensity and the
model adds texture. Healthy inpainting starts from the surround, lesion generation from noise.

On the final output grid every voxel outside the user's mask is the input voxel itself
(bit-identical, same pixel type); inside it the generated tissue in HU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import numpy as np
import SimpleITK as sitk
import torch

from .. import option_checks as checks
from ..engine import Engine
from ..errors import InputError
from ..io import image_from_array
from ..preprocessing.model_masks import covering_mask, mask_for_image, region_of_interest
from ..preprocessing.surround_fill import surround_fill
from ..progress import CancelCheck, ProgressCallback
from ..sampling import Conditions, NoiseSchedule, SamplingHooks
from .shared import as_pixel_type, check_start_step
from .skeleton import SamplingPlan, plan_sampling, postprocessing, prepare_task_ct, preprocessing, volume_tensor

ConditionBuilder = Callable[[object, np.ndarray], Optional[torch.Tensor]]

INITS = ("surround", "noise")
# Start of a "surround" run when no start step is given, as a fraction of the schedule's T: deep
# enough for the model to redraw texture and structure, shallow enough to keep the fill's intensity.
SURROUND_START_FRACTION = 0.5


def known_region_hook(schedule: NoiseSchedule, known_x0: torch.Tensor, keep: torch.Tensor, generator: Optional[torch.Generator]):
    """``after_step`` hook: the known region (``keep`` True) becomes ``known_x0`` noised to the next
    step (exactly ``known_x0`` after the last step)."""

    def after_step(x_prev: torch.Tensor, t_prev: int) -> torch.Tensor:
        known = known_x0 if t_prev < 0 else schedule.add_noise(known_x0, t_prev, generator)
        return torch.where(keep, known, x_prev)

    return after_step


def start_sample(plan: SamplingPlan, x0: torch.Tensor, keep: torch.Tensor, full: bool) -> torch.Tensor:
    """The first sample: pure noise (``full``: from the last step) or ``x0`` noised to the start step,
    with the known region (``keep``) on the trajectory too (pure noise would hide it at the first step)."""
    x = plan.noise(x0.shape) if full else plan.noised(x0)
    return torch.where(keep, plan.noised(x0), x)


def surround_start(y: torch.Tensor, keep: torch.Tensor, has_data: np.ndarray) -> torch.Tensor:
    """``y`` (1, 1, z, y, x) with the region to generate (``keep`` False) replaced by the smooth fill
    from the input voxels kept around it (``has_data``: not the air padding of the model grid);
    InputError when nothing around it is kept."""
    known = keep[0, 0].numpy() & has_data
    if not known.any():
        raise InputError("The mask covers the whole volume, so there is no surrounding tissue to start the fill "
                         "from. Draw a smaller mask, or use --init noise to generate the region from pure noise.")
    filled = surround_fill(y[0, 0].numpy(), known)
    return torch.from_numpy(filled)[None, None]


def resolve_start_step(engine: Engine, init: str, start_step: Optional[int]) -> Optional[int]:
    """The checked start step; a "surround" start without one starts at half the schedule."""
    if init == "surround" and start_step is None:
        return int(round(SURROUND_START_FRACTION * engine.config.num_train_timesteps))
    return check_start_step(engine, start_step)


@dataclass
class RegenerateOptions:
    """Settings shared by inpainting and lesion generation (see those tasks' docs)."""

    steps: int = 50
    resample: int = 1
    init: str = "noise"
    start_step: Optional[int] = None
    eta: float = 0.0
    seed: Optional[int] = 0
    region: Optional[str] = None
    label: Optional[int] = None
    allow_non_hu: bool = False

    def validate(self) -> None:
        """Raise InputError (one paragraph) on a value out of range; needs no input and no model."""
        checks.check_steps(self.steps)
        checks.check_int(self.resample, "--resample", 1, why=" (RePaint repeats per step; 1 = none)")
        checks.check_choice(self.init, "--init", INITS)
        checks.check_start(self.start_step)
        checks.check_eta(self.eta)
        checks.check_seed(self.seed)
        if self.label is not None:
            checks.check_int(self.label, "--label", 1, why=" (the mask label value to use; 0 is the background)")


@dataclass
class RegenerateResult:
    image: sitk.Image
    mask_voxels: int
    mask_resampled: bool
    start_step: int
    steps: int
    region: Optional[str]


def regenerate_region(
    image: sitk.Image,
    mask: Union[sitk.Image, np.ndarray],
    engine: Engine,
    options: RegenerateOptions,
    *,
    condition: Optional[ConditionBuilder] = None,
    stage: str = "inpainting",
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> RegenerateResult:
    """Regenerate the voxels of ``image`` inside ``mask``; everything outside stays bit-identical.

    ``condition(space, mask_on_input_grid)`` returns the ControlNet condition on the model grid
    (lesion generation) or None (healthy inpainting with the base model).
    """
    options.validate()
    steps = int(options.steps)
    start_step = resolve_start_step(engine, options.init, options.start_step)
    image, region = prepare_task_ct(engine, image, options.region, options.allow_non_hu)
    inside, resampled = mask_for_image(mask, image, name="mask", label=options.label, progress=progress)
    with preprocessing(progress, cancel):
        space = engine.model_space(image, region)
        generate = covering_mask(space, inside)
        control = condition(space, inside) if condition is not None else None

    plan = plan_sampling(engine, steps=steps, start_step=start_step, eta=options.eta, seed=options.seed,
                         progress=progress)
    # Only a box around the mask (plus one patch of context per side) is sampled; the rest of the
    # volume is known and comes back unchanged, so a small lesion on a whole CT stays fast.
    patch = engine.config.patch_size
    box = (slice(None), slice(None)) + region_of_interest(generate, margin=patch, min_size=patch)
    whole = volume_tensor(space.model_array)
    y = whole[box].contiguous()
    keep = torch.as_tensor(~generate)[None, None][box]
    if control is not None:
        control = control[(slice(None),) + box[2:]].contiguous()
    start = surround_start(y, keep, space.footprint()[box[2:]]) if options.init == "surround" else y
    x = start_sample(plan, start, keep, full=start_step is None)
    conditions = Conditions(region=engine.region_index(region), control=control)
    predictor = engine.predictor(space, conditions, crop_start=[b.start for b in box[2:]])
    hooks = SamplingHooks(after_step=known_region_hook(plan.schedule, y, keep, plan.generator))
    sampled = plan.run(predictor, x, stage=stage, hooks=hooks, resample_repeats=options.resample,
                       progress=progress, cancel=cancel)
    with postprocessing(progress, cancel):
        result = whole.clone()
        result[box] = sampled
        generated = space.to_input_grid(result[0, 0].numpy(), replace_mask=inside)
        output = keep_outside(image, generated, inside)
    timesteps = plan.timesteps
    return RegenerateResult(output, int(inside.sum()), resampled, int(timesteps[0]), len(timesteps), region)


def keep_outside(image: sitk.Image, generated: sitk.Image, inside: np.ndarray) -> sitk.Image:
    """out = where(inside, generated, input) on the input grid, in the input's pixel type, so
    every voxel outside the mask is bit-identical to the input."""
    source = sitk.GetArrayFromImage(image)
    new = as_pixel_type(sitk.GetArrayFromImage(generated), image.GetPixelID())
    out = np.where(np.asarray(inside, dtype=bool), new, source).astype(source.dtype, copy=False)
    result = image_from_array(out, image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return result

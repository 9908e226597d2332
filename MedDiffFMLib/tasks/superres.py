"""Super-resolution along z: thick slices to thin ones (ControlNet + DiffPIR data consistency).

Output grid: the input's x/y spacing, direction and extent, z spacing / F (F integer), nz * F
slices. Each thick slice k covers [k - 1/2, k + 1/2] thick spacings around its centre; the F thin
slices kF .. kF + F - 1 tile exactly that slab, so the first thin slice centre is half a thick
slice minus half a thin slice *before* the input origin: the output origin moves by
-(F - 1) / (2F) * z-spacing along the slice direction (x/y untouched). This keeps every thin slice
physically inside its thick slice and the output on the same physical extent as the input.
``keep_origin=True`` keeps the input origin instead (thin slices then shifted by that amount).

Method (paper: ControlNet fine-tuned with the low-resolution image, 5x in z, 100 steps):
1. the model grid covers the output grid at the model spacing; the condition is the thick image
   in model units, interpolated linearly along z onto it (:func:`~MedDiffFMLib.models.conditions.superres_condition`);
2. the measurement y is the thick image on a grid with the model's x/y sampling and the thick
   z slices; the operator A averages the model slices each thick slab overlaps (weights = overlap
   length, :class:`~MedDiffFMLib.sampling.consistency.SliceAverageOperator`);
3. the shared sampler runs from pure noise with the ControlNet (from its ``min_timestep`` up; the
   base alone below); at each step the predicted x0 gets
   DiffPIR's data step x0 + A^T (A A^T + rho_t I)^-1 (y - A x0), rho_t = lambda sigma_n^2 / sigma_t^2;
4. back on the output grid: the input interpolated along z plus the model's change (so x/y detail
   finer than the model grid is kept; voxels outside the HU window keep the interpolated input),
   then one last exact projection x <- x + A^T (A A^T)^-1 (y - A x) with the block-average A of the
   output grid (A A^T = I / F: each thin slice gets its thick slice's residual). The average of
   every F consecutive output slices therefore equals the input slice (float32 rounding aside).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk
import torch

from .. import option_checks as checks
from ..device import check_fits_in_memory
from ..engine import Engine
from ..errors import InputError
from ..io import Geometry, geometry_of, image_from_array
from ..models.conditions import superres_condition
from ..preprocessing import ModelSpace, resample_like
from ..preprocessing.model_masks import body_on_model_grid
from ..preprocessing.noise_bands import resampled_noise
from ..preprocessing.noise_estimate import estimate_noise_hu
from ..progress import CancelCheck, ProgressCallback, notify
from ..sampling import Conditions, SamplingHooks
from ..sampling.consistency import SliceAverageOperator, project_block_average
from ..sampling.diffpir import diffpir_rho, measurement_sigma
from .shared import check_start_step
from .skeleton import plan_sampling, postprocessing, prepare_task_ct, preprocessing, volume_tensor

ROLE = "superres"
DEFAULT_THIN_MM = 1.0


# With the shipped models, 25 steps scored as well as 50 (3 cases: 29.12 vs 29.07 dB, SSIM 0.888 vs
# 0.887; benchmarks/results/superres_quality_starter*.md at commit d5c1bef) and 10 DDIM steps as
# well as 25 (cta_aorta_crop, 96 mm: 29.18 vs 29.12 dB, SSIM 0.898 vs 0.897; DPM-Solver++ 2M at 10 or
# 5 steps: 29.02 / 29.04 dB, no better; benchmarks/results/sampler_steps_superres_quick.md): DiffPIR's
# data step, not the solver, carries the thick slices, so 10 DDIM steps it is, at 0.4x the network
# evaluations of 25.
DEFAULT_SUPERRES_STEPS = 10


@dataclass
class SuperResOptions:
    """Super-resolution settings.

    Attributes:
        factor_z: thin slices per thick slice (integer >= 2).
        spacing: target z spacing in mm instead of ``factor_z`` (input z spacing / spacing must be
            an integer). Neither: F = round(z spacing / 1 mm), at least 2.
        steps: sampler steps (paper: 100).
        start_step: None: start from pure noise; else noise the interpolated input to this step.
        lam: DiffPIR lambda (weight of the prior against the thick slices).
        noise_hu: noise std of the thick slices in HU (None: estimated from the input).
        eta: DDIM stochasticity.
        seed: random seed.
        region: body region (None: guessed).
        keep_origin: keep the input origin (see the module doc) instead of centring the thin slices.
        allow_non_hu: skip the Hounsfield-unit check.
    """

    factor_z: Optional[int] = None
    spacing: Optional[float] = None
    steps: int = DEFAULT_SUPERRES_STEPS
    start_step: Optional[int] = None
    lam: float = 10.0
    noise_hu: Optional[float] = None
    eta: float = 0.0
    seed: Optional[int] = 0
    region: Optional[str] = None
    keep_origin: bool = False
    allow_non_hu: bool = False

    def validate(self) -> None:
        """Raise InputError (one paragraph) on a value out of range; needs no input and no model."""
        if self.factor_z is not None and self.spacing is not None:
            raise InputError("Pass either --factor-z or --spacing, not both.")
        if self.factor_z is not None:
            checks.check_int(self.factor_z, "--factor-z", 2, why=" (thin slices per thick slice)")
        if self.spacing is not None:
            checks.check_number(self.spacing, "--spacing", 0.0, low_open=True, why=" (target z spacing in mm)")
        checks.check_steps(self.steps)
        checks.check_start(self.start_step)
        checks.check_lambda(self.lam)
        checks.check_noise_hu(self.noise_hu)
        checks.check_eta(self.eta)
        checks.check_seed(self.seed)


@dataclass
class SuperResResult:
    image: sitk.Image
    factor: int
    max_slice_error_hu: float
    steps: int
    region: Optional[str]


def resolve_factor(z_spacing: float, factor_z: Optional[int], spacing: Optional[float]) -> int:
    """The integer z factor F from ``factor_z`` or a target ``spacing`` (mm)."""
    if factor_z is not None and spacing is not None:
        raise InputError("Pass either --factor-z or --spacing, not both.")
    if factor_z is not None:
        if int(factor_z) != factor_z or factor_z < 2:
            raise InputError(f"--factor-z must be an integer of at least 2 (got {factor_z}).")
        return int(factor_z)
    if spacing is not None:
        if not spacing > 0:
            raise InputError(f"--spacing must be positive (got {spacing} mm).")
        ratio = z_spacing / spacing
        factor = int(round(ratio))
        if factor < 2 or abs(ratio - factor) > 0.02 * factor:
            options = ", ".join(f"{z_spacing / f:.3g}" for f in range(2, 7))
            raise InputError(
                f"The input z spacing ({z_spacing:.3g} mm) is not a multiple (>= 2x) of --spacing {spacing} mm; "
                f"each thick slice must split into a whole number of thin slices. Try one of: {options} mm, "
                "or --factor-z."
            )
        return factor
    factor = max(2, int(round(z_spacing / DEFAULT_THIN_MM)))
    return factor


def output_geometry(image: sitk.Image, factor: int, keep_origin: bool = False) -> Geometry:
    """The thin-slice grid of ``image`` (see the module doc)."""
    g = geometry_of(image)
    sx, sy, sz = g.spacing
    origin = np.asarray(g.origin, dtype=float)
    if not keep_origin:
        origin = origin - g.direction_matrix[:, 2] * (factor - 1) / (2.0 * factor) * sz
    return Geometry(
        size=(g.size[0], g.size[1], g.size[2] * factor),
        spacing=(sx, sy, sz / factor),
        origin=tuple(float(o) for o in origin),
        direction=g.direction,
    )


def _slice_offset(reference: Geometry, other: Geometry) -> float:
    """Position of ``other``'s origin along ``reference``'s slice axis, relative to its origin (mm)."""
    delta = np.asarray(other.origin) - np.asarray(reference.origin)
    return float(reference.direction_matrix[:, 2] @ delta)


def _model_operator(space: ModelSpace, thick: Geometry) -> SliceAverageOperator:
    model = space.model_geometry
    z_before, z_after = space.padding[0]
    mz = model.spacing[2]
    index = np.arange(-z_before, model.size[2] + z_after)
    fine_centres = _slice_offset(thick, model) + index * mz
    valid = (index >= 0) & (index < model.size[2])
    thick_centres = np.arange(thick.size[2]) * thick.spacing[2]
    return SliceAverageOperator.from_intervals(fine_centres, mz, thick_centres, thick.spacing[2], valid)


def _to_model_units(image: sitk.Image, grid: Geometry, space: ModelSpace, pad_z: bool) -> np.ndarray:
    """``image`` (HU, clipped to the window) resampled linearly onto ``grid``, padded like the model grid."""
    window = space.window
    clipped = sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, window.low, window.high)
    values = sitk.GetArrayFromImage(resample_like(clipped, grid, "linear", window.low, extrapolate=True))
    padding = space.padding if pad_z else ((0, 0),) + tuple(space.padding[1:])
    return window.hu_to_model(np.pad(values, padding, constant_values=window.low))


def thick_condition(image: sitk.Image, space: ModelSpace) -> np.ndarray:
    """The thick image (HU) in model units on ``space``'s padded model grid, linearly interpolated along
    z: what the superres ControlNet is conditioned on (and what the model's change is added to)."""
    return _to_model_units(image, space.model_geometry, space, pad_z=True)


def super_resolve_image(
    image: sitk.Image,
    engine: Engine,
    options: Optional[SuperResOptions] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> SuperResResult:
    """Thin-slice CT from a thick-slice CT (HU); see the module doc for the grid and the method."""
    options = options or SuperResOptions()
    engine.require_controlnet(ROLE, "Super-resolution")
    options.validate()
    steps = int(options.steps)
    start_step = check_start_step(engine, options.start_step)
    image, region = prepare_task_ct(engine, image, options.region, options.allow_non_hu)
    thick = geometry_of(image)
    if thick.spacing[2] < max(thick.spacing[:2]) * 0.99:
        notify(progress, f"The input's z spacing ({thick.spacing[2]:.3g} mm) is finer than its x/y spacing; "
                         "super-resolution refines z (the third index axis) only.")
    factor = resolve_factor(thick.spacing[2], options.factor_z, options.spacing)
    out_geometry = output_geometry(image, factor, options.keep_origin)
    # The thin output, its interpolated base and the model's change live at once (float32, float64 slabs).
    check_fits_in_memory(int(np.prod(out_geometry.size)), 4, "The super-resolved volume")

    with preprocessing(progress, cancel):
        space = ModelSpace.for_grid(out_geometry, engine.config.spacing_mm[::-1], engine.window(region),
                                    min_size=engine.config.patch_size)
        condition = thick_condition(image, space)
        model = space.model_geometry
        measure_grid = Geometry(size=(model.size[0], model.size[1], thick.size[2]),
                                spacing=(model.spacing[0], model.spacing[1], thick.spacing[2]),
                                origin=thick.origin, direction=thick.direction)
        operator = _model_operator(space, thick)
        y = volume_tensor(_to_model_units(image, measure_grid, space, pad_z=False)[operator.rows])
        noise_hu = options.noise_hu if options.noise_hu is not None else estimate_noise_hu(sitk.GetArrayViewFromImage(image))
        # y's noise is the input's after the in-plane resampling onto the measurement grid (as denoising does).
        noise = resampled_noise(thick, measure_grid.spacing, noise_hu)
        sigma_n = measurement_sigma(noise.model_grid_hu, space.window.width)

    plan = plan_sampling(engine, steps=steps, start_step=start_step, eta=options.eta, seed=options.seed,
                         progress=progress)
    cond = volume_tensor(condition)
    x = plan.noise(cond.shape) if start_step is None else plan.noised(cond)

    def data_consistency(x0: torch.Tensor, t: int, x_t: torch.Tensor) -> torch.Tensor:
        return operator.prox(x0, y, diffpir_rho(plan.schedule, t, options.lam, sigma_n))

    # Outside the body (air, couch) the thin output is the interpolated input: the network runs only on
    # patches that touch the body (the body is found on the thick input and carried to the model grid).
    body = body_on_model_grid(space, sitk.GetArrayViewFromImage(image), geometry=thick)
    conditions = Conditions(region=engine.region_index(region),
                            control=superres_condition(condition)).held_outside(body, cond[0, 0])
    predictor = engine.predictor(space, conditions)
    result = plan.run(predictor, x, stage="super-resolution", hooks=SamplingHooks(x0_transform=data_consistency),
                      progress=progress, cancel=cancel)
    with postprocessing(progress, cancel):
        output, error = _back_to_output_grid(image, space, result[0, 0].numpy(), condition, out_geometry, factor)
    return SuperResResult(output, factor, error, len(plan.timesteps), region)


def _back_to_output_grid(
    image: sitk.Image, space: ModelSpace, result: np.ndarray, condition: np.ndarray, out_geometry: Geometry, factor: int
) -> tuple[sitk.Image, float]:
    window = space.window
    crop = tuple(slice(a, a + n) for (a, _), n in zip(space.padding, space.model_geometry.shape))
    # The model's change relative to its condition, in HU, on the thin output grid.
    change = (np.clip(result, -1, 1) - condition)[crop] * np.float32(window.width / 2.0)
    change_image = image_from_array(change.astype(np.float32), *_geometry_args(space.model_geometry))
    delta = sitk.GetArrayFromImage(resample_like(change_image, out_geometry, "linear", 0.0, extrapolate=True))
    base = sitk.GetArrayFromImage(
        resample_like(sitk.Cast(image, sitk.sitkFloat32), out_geometry, "linear", 0.0, extrapolate=True)
    )
    outside_window = (base < window.low) | (base > window.high)
    thin = np.where(outside_window, base, base + delta).astype(np.float32)
    # Last exact projection on the output grid: every block of F thin slices averages to its thick slice.
    thick_hu = sitk.GetArrayFromImage(image)
    error = project_block_average(thin, thick_hu, factor)
    return image_from_array(thin, *_geometry_args(out_geometry)), error


def _geometry_args(g: Geometry):
    return g.spacing, g.origin, g.direction

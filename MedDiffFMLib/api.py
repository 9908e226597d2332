"""The Python API: one call per task.

Each call takes a ``SimpleITK.Image`` or a numpy array in (z, y, x) order with ``spacing``,
``origin`` and ``direction`` (SimpleITK's (x, y, z) conventions), and returns the same kind of
object on exactly the input's grid (except :func:`super_resolve`, whose output has the same
extent on a finer z grid, and :func:`synthesize`, which has no input image). ``progress`` receives :class:`ProgressEvent` s and ``cancel``
is polled between steps (return True to stop; :class:`CancelledError` is raised).

Pass ``engine=`` (a :class:`~MedDiffFMLib.tasks.Engine`) to reuse a loaded model across calls.
Every default is the task options type's (:mod:`MedDiffFMLib.tasks.registry`), and every call
builds its options through the registry, so they are checked by the options' ``validate()``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .io import to_image
from .progress import CancelCheck, ProgressCallback
from .tasks.anomaly import AnomalyOptions, anomaly_map_image
from .tasks.denoise import DenoiseOptions, denoise_image
from .engine import Engine, EngineOptions
from .tasks.inpaint import InpaintOptions, inpaint_image
from .tasks.lesion import LesionOptions, generate_lesion_image
from .tasks.registry import task_entry
from .tasks.superres import SuperResOptions, super_resolve_image
from .tasks.synthesize import SynthesisOptions, synthesize_image

ImageLike = Union[sitk.Image, np.ndarray]


def _as_image(image: ImageLike, spacing, origin, direction) -> sitk.Image:
    return to_image(image, spacing=spacing, origin=origin, direction=direction)


def _like_input(result: sitk.Image, original: ImageLike) -> ImageLike:
    return sitk.GetArrayFromImage(result) if isinstance(original, np.ndarray) else result


def _engine(engine: Optional[Engine], model, device: str, task: str) -> Engine:
    entry = task_entry(task)
    return engine or Engine(EngineOptions(model=model, device=device), role=entry.role, expect_task=entry.expect_task)


def denoise(
    image: ImageLike,
    *,
    spacing: Optional[Sequence[float]] = None,
    origin: Optional[Sequence[float]] = None,
    direction: Optional[Sequence[float]] = None,
    model: Optional[str] = None,
    device: str = "auto",
    strength: float = DenoiseOptions.strength,
    steps: int = DenoiseOptions.steps,
    noise_hu: Optional[float] = DenoiseOptions.noise_hu,
    lam: float = DenoiseOptions.lam,
    seed: Optional[int] = DenoiseOptions.seed,
    region: Optional[str] = DenoiseOptions.region,
    allow_non_hu: bool = DenoiseOptions.allow_non_hu,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    engine: Optional[Engine] = None,
) -> ImageLike:
    """Denoise a CT in HU (zero-shot DiffPIR); see :class:`~MedDiffFMLib.tasks.denoise.DenoiseOptions`."""
    source = _as_image(image, spacing, origin, direction)
    options = task_entry("denoise").options(strength=strength, steps=steps, noise_hu=noise_hu, lam=lam, seed=seed,
                                            region=region, allow_non_hu=allow_non_hu)
    result = denoise_image(source, _engine(engine, model, device, "denoise"), options, progress, cancel)
    return _like_input(result.image, image)


def anomaly_map(
    image: ImageLike,
    *,
    spacing: Optional[Sequence[float]] = None,
    origin: Optional[Sequence[float]] = None,
    direction: Optional[Sequence[float]] = None,
    model: Optional[str] = None,
    device: str = "auto",
    method: str = AnomalyOptions.method,
    start_step: Optional[int] = AnomalyOptions.start_step,
    steps: int = AnomalyOptions.steps,
    samples: int = AnomalyOptions.samples,
    smooth_mm: Optional[float] = AnomalyOptions.smooth_mm,
    threshold: Optional[float] = AnomalyOptions.threshold,
    min_component_ml: float = AnomalyOptions.min_component_ml,
    body_only: bool = AnomalyOptions.body_only,
    seed: Optional[int] = AnomalyOptions.seed,
    region: Optional[str] = AnomalyOptions.region,
    allow_non_hu: bool = AnomalyOptions.allow_non_hu,
    details: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    engine: Optional[Engine] = None,
):
    """Zero-shot anomaly map of a CT in HU; see :mod:`MedDiffFMLib.tasks.anomaly`. The default
    ``method="ensemble"`` reconstructs from moderate noise levels and divides each residual by what
    healthy tissue of the same structure gives (1 = a typical healthy voxel); ``method="residual"`` is
    the paper's |input - reconstruction| in HU from t = 950 (pass ``steps=20`` for the former default).

    Returns the map (float32) on the input grid; with ``details=True`` a dict ``{"map", "mask" (uint8 or
    None: needs ``threshold`` or, with "ensemble", the model's calibrated default), "healthy", "score",
    "threshold"}``.
    """
    source = _as_image(image, spacing, origin, direction)
    options = task_entry("anomaly").options(method=method, start_step=start_step, steps=steps, samples=samples,
                                            smooth_mm=smooth_mm, threshold=threshold,
                                            min_component_ml=min_component_ml, body_only=body_only, seed=seed,
                                            region=region, allow_non_hu=allow_non_hu)
    result = anomaly_map_image(source, _engine(engine, model, device, "anomaly"), options, progress, cancel)
    amap = _like_input(result.anomaly_map, image)
    if not details:
        return amap
    return {
        "map": amap,
        "mask": _like_input(result.mask, image) if result.mask is not None else None,
        "healthy": _like_input(result.healthy, image),
        "score": result.score,
        "threshold": result.threshold,
    }


def synthesize(
    region: str,
    *,
    anatomy: Optional[ImageLike] = None,
    like: Optional[sitk.Image] = None,
    size: Optional[Sequence[int]] = None,
    spacing: Optional[Sequence[float]] = None,
    origin: Optional[Sequence[float]] = None,
    direction: Optional[Sequence[float]] = None,
    model: Optional[str] = None,
    device: str = "auto",
    steps: int = SynthesisOptions.steps,
    seed: Optional[int] = SynthesisOptions.seed,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    engine: Optional[Engine] = None,
) -> ImageLike:
    """Sample a CT (int16 HU) of ``region`` from noise; see :mod:`MedDiffFMLib.tasks.synthesize`.

    The grid is the ``anatomy`` label map's (a numpy label map takes ``spacing``/``origin``/
    ``direction``), else ``like``'s, else ``size`` (x, y, z) voxels at ``spacing`` mm with
    ``origin``/``direction``. Returns a numpy array when ``anatomy`` is one, else an image.
    """
    anatomy_image = None
    grid = {}
    if anatomy is not None:
        anatomy_image = _as_image(anatomy, spacing, origin, direction)
    else:
        grid = dict(size=size, spacing=spacing, origin=origin, direction=direction)
    options = task_entry("synthesize").options(region=region, steps=steps, seed=seed, **grid)
    result = synthesize_image(_engine(engine, model, device, "synthesize"), options, anatomy=anatomy_image, like=like,
                              progress=progress, cancel=cancel)
    return _like_input(result.image, anatomy) if anatomy is not None else result.image


def super_resolve(
    image: ImageLike,
    *,
    spacing: Optional[Sequence[float]] = None,
    origin: Optional[Sequence[float]] = None,
    direction: Optional[Sequence[float]] = None,
    factor_z: Optional[int] = SuperResOptions.factor_z,
    z_spacing: Optional[float] = None,
    model: Optional[str] = None,
    device: str = "auto",
    steps: int = SuperResOptions.steps,
    lam: float = SuperResOptions.lam,
    noise_hu: Optional[float] = SuperResOptions.noise_hu,
    seed: Optional[int] = SuperResOptions.seed,
    region: Optional[str] = SuperResOptions.region,
    keep_origin: bool = SuperResOptions.keep_origin,
    allow_non_hu: bool = SuperResOptions.allow_non_hu,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    engine: Optional[Engine] = None,
) -> ImageLike:
    """Thin slices from thick ones (superres ControlNet + DiffPIR); see :mod:`MedDiffFMLib.tasks.superres`.

    Unlike the other calls the output grid is finer in z: the input's x/y grid, z spacing / F,
    nz * F slices over the same physical extent (origin moved by -(F-1)/(2F) z-spacing along the
    slice axis unless ``keep_origin``; :func:`MedDiffFMLib.tasks.superres.output_geometry` gives
    it for numpy callers). Every F consecutive output slices average to the input slice.
    """
    source = _as_image(image, spacing, origin, direction)
    options = task_entry("superres").options(factor_z=factor_z, spacing=z_spacing, steps=steps, lam=lam,
                                             noise_hu=noise_hu, seed=seed, region=region, keep_origin=keep_origin,
                                             allow_non_hu=allow_non_hu)
    engine = _engine(engine, model, device, "superres")
    result = super_resolve_image(source, engine, options, progress, cancel)
    return _like_input(result.image, image)


def _regenerate_options(task, steps, resample, init, start_step, seed, region, label, allow_non_hu):
    return task_entry(task).options(steps=steps, resample=resample, init=init, start_step=start_step, seed=seed,
                                    region=region, label=label, allow_non_hu=allow_non_hu)


def inpaint(
    image: ImageLike,
    mask: ImageLike,
    *,
    spacing: Optional[Sequence[float]] = None,
    origin: Optional[Sequence[float]] = None,
    direction: Optional[Sequence[float]] = None,
    model: Optional[str] = None,
    device: str = "auto",
    steps: int = InpaintOptions.steps,
    resample: int = InpaintOptions.resample,
    init: str = InpaintOptions.init,
    start_step: Optional[int] = InpaintOptions.start_step,
    seed: Optional[int] = InpaintOptions.seed,
    region: Optional[str] = InpaintOptions.region,
    label: Optional[int] = InpaintOptions.label,
    allow_non_hu: bool = InpaintOptions.allow_non_hu,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    engine: Optional[Engine] = None,
) -> ImageLike:
    """Regenerate the voxels inside ``mask`` as healthy tissue (RePaint with the base model).

    ``mask``: a numpy array on the image grid, or an image with its own geometry (resampled by
    physical position when its grid differs). Every voxel outside the mask is bit-identical to the
    input, in the input's pixel type; see :mod:`MedDiffFMLib.tasks.inpaint`.
    """
    source = _as_image(image, spacing, origin, direction)
    options = _regenerate_options("inpaint", steps, resample, init, start_step, seed, region, label, allow_non_hu)
    result = inpaint_image(source, mask, _engine(engine, model, device, "inpaint"), options, progress, cancel)
    return _like_input(result.image, image)


def generate_lesion(
    image: ImageLike,
    mask: ImageLike,
    *,
    spacing: Optional[Sequence[float]] = None,
    origin: Optional[Sequence[float]] = None,
    direction: Optional[Sequence[float]] = None,
    model: Optional[str] = None,
    device: str = "auto",
    steps: int = LesionOptions.steps,
    resample: int = LesionOptions.resample,
    init: str = LesionOptions.init,
    start_step: Optional[int] = LesionOptions.start_step,
    seed: Optional[int] = LesionOptions.seed,
    region: Optional[str] = LesionOptions.region,
    label: Optional[int] = LesionOptions.label,
    allow_non_hu: bool = LesionOptions.allow_non_hu,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    engine: Optional[Engine] = None,
) -> ImageLike:
    """Generate a lesion shaped like ``mask`` (lesion ControlNet + RePaint); outside the mask every
    voxel is bit-identical to the input. ``mask`` as in :func:`inpaint`; see
    :mod:`MedDiffFMLib.tasks.lesion`."""
    source = _as_image(image, spacing, origin, direction)
    options = _regenerate_options("lesion", steps, resample, init, start_step, seed, region, label, allow_non_hu)
    engine = _engine(engine, model, device, "lesion")
    result = generate_lesion_image(source, mask, engine, options, progress, cancel)
    return _like_input(result.image, image)

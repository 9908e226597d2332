"""The Python API: :func:`run_task` runs any task of the registry, and one named call per task.

Each call takes a ``SimpleITK.Image`` or a numpy array in (z, y, x) order with ``spacing``,
``origin`` and ``direction`` (SimpleITK's (x, y, z) conventions), and returns the same kind of
object on exactly the input's grid (except :func:`super_resolve`, whose output has the same
extent on a finer z grid, and :func:`synthesize`, which has no input image). ``progress`` receives :class:`ProgressEvent` s and ``cancel``
is polled between steps (return True to stop; :class:`CancelledError` is raised).

Pass ``engine=`` (a :class:`~MedDiffFMLib.tasks.Engine`) to reuse a loaded model across calls.
Every default is the task options type's (:mod:`MedDiffFMLib.tasks.registry`), and every call
builds its options and runs through the registry (:func:`run_task`), so they are checked by the
options' ``validate()``; a task added to the registry is callable here at once.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .io import to_image
from .progress import CancelCheck, ProgressCallback
from .tasks.anomaly import AnomalyOptions
from .tasks.denoise import DenoiseOptions
from .engine import Engine, EngineOptions
from .tasks.inpaint import InpaintOptions
from .tasks.lesion import LesionOptions
from .tasks.registry import TaskRun, task_entry
from .tasks.superres import SuperResOptions
from .tasks.synthesize import SynthesisOptions

ImageLike = Union[sitk.Image, np.ndarray]


def _as_image(image: ImageLike, spacing, origin, direction) -> sitk.Image:
    return to_image(image, spacing=spacing, origin=origin, direction=direction)


def _like_input(result: sitk.Image, original: ImageLike) -> ImageLike:
    return sitk.GetArrayFromImage(result) if isinstance(original, np.ndarray) else result


def _engine(engine: Optional[Engine], model, device: str, task: str) -> Engine:
    entry = task_entry(task)
    return engine or Engine(EngineOptions(model=model, device=device), role=entry.role, expect_task=entry.expect_task)


def run_task(
    task: str,
    image: Optional[ImageLike] = None,
    mask: Optional[ImageLike] = None,
    *,
    spacing: Optional[Sequence[float]] = None,
    origin: Optional[Sequence[float]] = None,
    direction: Optional[Sequence[float]] = None,
    inputs: Optional[Mapping[str, sitk.Image]] = None,
    options: Optional[Mapping[str, Any]] = None,
    model: Optional[str] = None,
    device: str = "auto",
    details: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    engine: Optional[Engine] = None,
    **fields: Any,
) -> Union[ImageLike, TaskRun]:
    """Run the registry's ``task`` on ``image`` (its main input: the CT, or synthesis' anatomy label
    map; None for none) and ``mask`` (the tasks that need one).

    ``spacing``/``origin``/``direction`` give a numpy ``image`` its geometry. The task's options are
    ``options`` and the keyword ``fields`` (option fields of the task's options type, e.g.
    ``steps=10``; ``options`` takes a field whose name a keyword here already has, such as
    super-resolution's target ``spacing``). ``inputs``: the task's other input images by name
    (synthesis' ``like``).

    Returns the main output like ``image`` (a numpy array for a numpy input, else an image); with
    ``details=True`` the :class:`~MedDiffFMLib.tasks.registry.TaskRun`: every output by name (``""``
    the main one), each like ``image``, and the task's own result object.
    """
    entry = task_entry(task)
    checked = entry.options(**{**dict(options or {}), **fields})
    named = dict(inputs or {})
    if image is not None:
        named[entry.main_input] = _as_image(image, spacing, origin, direction)
    if mask is not None:
        named["mask"] = mask
    done = entry.run(_engine(engine, model, device, task), named, checked, progress, cancel)
    like = image if image is not None else done.images[""]
    if not details:
        return _like_input(done.images[""], like)
    return TaskRun({key: _like_input(value, like) for key, value in done.images.items()}, done.result)


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
    return run_task("denoise", image, spacing=spacing, origin=origin, direction=direction, model=model, device=device,
                    progress=progress, cancel=cancel, engine=engine, strength=strength, steps=steps,
                    noise_hu=noise_hu, lam=lam, seed=seed, region=region, allow_non_hu=allow_non_hu)


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
    done = run_task("anomaly", image, spacing=spacing, origin=origin, direction=direction, model=model,
                    device=device, details=True, progress=progress, cancel=cancel, engine=engine, method=method,
                    start_step=start_step, steps=steps, samples=samples, smooth_mm=smooth_mm, threshold=threshold,
                    min_component_ml=min_component_ml, body_only=body_only, seed=seed, region=region,
                    allow_non_hu=allow_non_hu)
    if not details:
        return done.images[""]
    return {"map": done.images[""], "mask": done.images.get("mask"), "healthy": done.images["healthy"],
            "score": done.result.score, "threshold": done.result.threshold}


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
    if anatomy is not None:  # its geometry (a numpy label map's) comes with it
        return run_task("synthesize", anatomy, spacing=spacing, origin=origin, direction=direction,
                        inputs={"like": like} if like is not None else None, model=model, device=device,
                        progress=progress, cancel=cancel, engine=engine, region=region, steps=steps, seed=seed)
    grid = dict(size=size, spacing=spacing, origin=origin, direction=direction)
    return run_task("synthesize", inputs={"like": like} if like is not None else None, options=grid, model=model,
                    device=device, progress=progress, cancel=cancel, engine=engine, region=region, steps=steps,
                    seed=seed)


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
    return run_task("superres", image, spacing=spacing, origin=origin, direction=direction,
                    options={"spacing": z_spacing}, model=model, device=device, progress=progress, cancel=cancel,
                    engine=engine, factor_z=factor_z, steps=steps, lam=lam, noise_hu=noise_hu, seed=seed,
                    region=region, keep_origin=keep_origin, allow_non_hu=allow_non_hu)


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
    return run_task("inpaint", image, mask, spacing=spacing, origin=origin, direction=direction, model=model,
                    device=device, progress=progress, cancel=cancel, engine=engine, steps=steps, resample=resample,
                    init=init, start_step=start_step, seed=seed, region=region, label=label,
                    allow_non_hu=allow_non_hu)


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
    return run_task("lesion", image, mask, spacing=spacing, origin=origin, direction=direction, model=model,
                    device=device, progress=progress, cancel=cancel, engine=engine, steps=steps, resample=resample,
                    init=init, start_step=start_step, seed=seed, region=region, label=label,
                    allow_non_hu=allow_non_hu)

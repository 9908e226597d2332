"""The one task registry: for each task its options type (defaults, ``validate()``), its runner, the
model role it loads, whether it needs a mask, its default steps and its command-line options.

The command line (single commands and ``batch``), the Python API and ``meddifffm info --json``
(which the Slicer module reads) all take these facts from here; adding a task is one task module
plus one :class:`TaskEntry` below. The command-line options are declared as data
(:class:`Argument`) so this layer does not build parsers: ``cli/task_arguments.py`` turns them
into argparse options whose defaults are the options type's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import SimpleITK as sitk

from ..errors import InputError
from ..models.config import REGIONS, UNKNOWN_REGION
from .anomaly import METHODS as ANOMALY_METHODS, AnomalyOptions, anomaly_map_image
from .denoise import DenoiseOptions, denoise_image
from .inpaint import InpaintOptions, inpaint_image
from .lesion import LesionOptions, generate_lesion_image
from .repaint import INITS
from .superres import SuperResOptions, super_resolve_image
from .synthesize import SynthesisOptions, synthesize_image

Outputs = Dict[str, sitk.Image]  # "" -> the main output, other keys -> extra outputs


@dataclass(frozen=True)
class Argument:
    """One command-line option of a task, as data: ``--flag`` sets the options field ``field``.

    ``kind``: ``int``, ``float``, ``str`` or ``flag`` (store_true). ``exclusive`` names a group of
    options that cannot be given together. The default is the options type's field default.
    """

    flag: str
    field: str
    help: str
    kind: str = "float"
    choices: Tuple[str, ...] = ()
    required: bool = False
    exclusive: Optional[str] = None

    def to_dict(self, default: Any) -> dict:
        return {"flag": self.flag, "field": self.field, "help": self.help, "kind": self.kind,
                "choices": list(self.choices), "required": self.required, "default": default}


SAMPLING = (
    Argument("--steps", "steps", "diffusion steps", "int"),
    Argument("--seed", "seed", "random seed (same seed, same result)", "int"),
)
CT_INPUT = (
    Argument("--region", "region", f"body region (default: guessed from the image; '{UNKNOWN_REGION}' skips the guess "
             "and uses the model's region-less window, e.g. for limbs or a crop it misreads)", "str",
             REGIONS + (UNKNOWN_REGION,)),
    Argument("--allow-non-hu", "allow_non_hu", "skip the check that the input is CT in HU", "flag"),
)
NOISE_HU = Argument("--noise-hu", "noise_hu", "noise std of the input in HU (default: estimated)")
LAMBDA = Argument("--lambda", "lam", "DiffPIR lambda: weight of the prior against the measurement")
REGENERATE = (
    Argument("--resample", "resample", "RePaint repeats per step (1 = none; more blends the region better, "
             "costs more)", "int"),
    Argument("--init", "init", "what the mask starts from: 'surround' (a smooth fill from the tissue around it, "
             "noised to --start-step) or 'noise' (pure noise; with --start-step, the original content noised to "
             "that step)", "str", INITS),
    Argument("--start-step", "start_step", "diffusion step to start from (default: half the schedule with --init "
             "surround, the last step with --init noise; smaller keeps more of the starting content)", "int"),
    Argument("--label", "label", "use only voxels with this label value in the mask (default: every non-zero "
             "voxel)", "int"),
)


def _denoise(engine, image, mask, options, progress, cancel) -> Outputs:
    return {"": denoise_image(image, engine, options, progress, cancel).image}


def _anomaly(engine, image, mask, options, progress, cancel) -> Outputs:
    result = anomaly_map_image(image, engine, options, progress, cancel)
    outputs = {"": result.anomaly_map, "healthy": result.healthy}
    if result.mask is not None:
        outputs["mask"] = result.mask
    return outputs


def _synthesize(engine, image, mask, options, progress, cancel) -> Outputs:
    return {"": synthesize_image(engine, options, anatomy=image, progress=progress, cancel=cancel).image}


def _superres(engine, image, mask, options, progress, cancel) -> Outputs:
    return {"": super_resolve_image(image, engine, options, progress, cancel).image}


def _inpaint(engine, image, mask, options, progress, cancel) -> Outputs:
    return {"": inpaint_image(image, mask, engine, options, progress, cancel).image}


def _lesion(engine, image, mask, options, progress, cancel) -> Outputs:
    return {"": generate_lesion_image(image, mask, engine, options, progress, cancel).image}


@dataclass(frozen=True)
class TaskEntry:
    """Everything the front ends need to know about one task.

    Attributes:
        name: the ``meddifffm`` subcommand and batch task name.
        options_type: the options dataclass (defaults; ``validate()`` checks ranges).
        run: ``run(engine, image, mask, options, progress, cancel) -> {"": image, extra: image}``.
        role: the model role loaded (``base``, ``superres``, ``lesion``).
        needs_mask: whether the task reads a mask beside the CT.
        arguments: the task's command-line options (besides paths, model and device).
        input_name: what the batch inputs are.
        positionals: the single command's path arguments, in order.
    """

    name: str
    options_type: type
    run: Callable[..., Outputs]
    role: str
    needs_mask: bool
    arguments: Tuple[Argument, ...]
    input_name: str = "CT volume"
    positionals: Tuple[str, ...] = ("input", "output")

    @property
    def expect_task(self) -> Optional[str]:
        """The ControlNet task the model must be (None for the base model)."""
        return None if self.role == "base" else self.role

    @property
    def defaults(self) -> dict:
        """The options type's defaults, by field."""
        return {f.name: _field_default(f) for f in dataclasses.fields(self.options_type)}

    @property
    def default_steps(self) -> int:
        return int(self.defaults["steps"])

    def options(self, **values: Any) -> Any:
        """An options object: the given fields over the defaults, checked by its ``validate()``."""
        known = {f.name for f in dataclasses.fields(self.options_type)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"Unknown option(s) {unknown} for task '{self.name}'; it takes {sorted(known)}.")
        options = self.options_type(**values)
        validate = getattr(options, "validate", None)
        if callable(validate):
            validate()
        return options

    def to_dict(self) -> dict:
        """The JSON form ``meddifffm info --json`` exports (read by the Slicer module)."""
        defaults = self.defaults
        return {
            "name": self.name, "role": self.role, "needs_mask": self.needs_mask, "input_name": self.input_name,
            "positionals": list(self.positionals), "default_steps": self.default_steps,
            "defaults": {k: _jsonable(v) for k, v in defaults.items()},
            "arguments": [a.to_dict(_jsonable(defaults[a.field])) for a in self.arguments],
        }


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return None


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


TASKS: Dict[str, TaskEntry] = {
    entry.name: entry
    for entry in (
        TaskEntry("denoise", DenoiseOptions, _denoise, "base", False, (
            Argument("--strength", "strength", "0..1: fraction of the noise to remove (1 = all, 0.5 = halfway)"),
            NOISE_HU, LAMBDA, *SAMPLING, *CT_INPUT)),
        TaskEntry("anomaly", AnomalyOptions, _anomaly, "base", False, (
            Argument("--method", "method", "'ensemble': moderate noise levels, each residual divided by what healthy "
                     "tissue of the same structure gives (1 = typical healthy voxel); 'residual': the paper's "
                     "|input - reconstruction| in HU from t = 950 (use with --steps 20)", "str", ANOMALY_METHODS),
            Argument("--threshold", "threshold", "map value at or above which a voxel is anomalous (for --mask-out; "
                     "default with --method ensemble: the model's calibrated threshold, the score 1 percent of healthy "
                     "body voxels exceed)"),
            Argument("--start-step", "start_step", "--method residual: diffusion step the image is noised to "
                     "(default: 950 of 1000, the paper's)", "int"),
            Argument("--samples", "samples", "reconstructions per noise level (seeds seed, seed+1, ...)", "int"),
            Argument("--smooth-mm", "smooth_mm", "Gaussian smoothing of each residual: standard deviation in mm "
                     "(0 = none; default: 2 with --method residual, the calibration's with ensemble)"),
            Argument("--min-component-ml", "min_component_ml", "drop mask parts smaller than this (ml)"),
            Argument("--body-only", "body_only", "--method residual: zero the map outside the body (the large "
                     "connected region above -500 HU, holes filled); the ensemble map always keeps the eroded body",
                     "flag"),
            *SAMPLING, *CT_INPUT)),
        TaskEntry("synthesize", SynthesisOptions, _synthesize, "base", False, (
            Argument("--region", "region", "body region", "str", REGIONS, required=True),
            *SAMPLING), input_name="anatomy label map", positionals=("output",)),
        TaskEntry("superres", SuperResOptions, _superres, "superres", False, (
            Argument("--factor-z", "factor_z", "thin slices per thick slice (integer >= 2)", "int",
                     exclusive="target"),
            Argument("--spacing", "spacing", "target z spacing in mm (the input z spacing must be a multiple of it)",
                     exclusive="target"),
            LAMBDA, NOISE_HU,
            Argument("--start-step", "start_step", "start from the interpolated input noised to this step "
                     "(default: pure noise)", "int"),
            Argument("--keep-origin", "keep_origin", "keep the input origin (see the description)", "flag"),
            *SAMPLING, *CT_INPUT)),
        TaskEntry("inpaint", InpaintOptions, _inpaint, "base", True, (*REGENERATE, *SAMPLING, *CT_INPUT),
                  positionals=("input", "mask", "output")),
        TaskEntry("lesion", LesionOptions, _lesion, "lesion", True, (*REGENERATE, *SAMPLING, *CT_INPUT),
                  positionals=("input", "mask", "output")),
    )
}


def task_entry(task: str) -> TaskEntry:
    """The registry entry of ``task``; InputError naming the tasks otherwise."""
    try:
        return TASKS[task]
    except KeyError:
        raise InputError(f"Unknown task '{task}'. Choose one of: {', '.join(TASKS)}.") from None


def export_tasks() -> dict:
    """Every task's entry as JSON (``meddifffm info --json`` under ``"tasks"``)."""
    return {name: entry.to_dict() for name, entry in TASKS.items()}

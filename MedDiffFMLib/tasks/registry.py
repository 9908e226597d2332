"""The one task registry: for each task its options type (defaults, ``validate()``), its runner, the
model role it loads, whether it needs a mask, its command-line options, help, extra outputs and
summary line (:class:`~.task_entry.TaskEntry`).

The command line (one generic command per entry, and ``batch``), the Python API
(``api.run_task``), the server and ``meddifffm info --json`` (which the Slicer module reads) all
take these facts from here; adding a task is one task module plus one entry in :data:`TASKS`
(docs/ARCHITECTURE.md walks through one). The command-line options are declared as data
(:class:`Argument`) so this layer does not build parsers: ``cli/task_arguments.py`` turns them
into argparse options whose defaults are the options type's own.
"""

from __future__ import annotations

from typing import Dict

from ..errors import InputError
from ..models.config import REGIONS, UNKNOWN_REGION
from .anomaly import METHODS as ANOMALY_METHODS, AnomalyOptions, anomaly_map_image
from .anomaly_calibration import calibration_of
from .denoise import DenoiseOptions, denoise_image
from .inpaint import InpaintOptions, inpaint_image
from .lesion import LesionOptions, generate_lesion_image
from .repaint import INITS
from .superres import SuperResOptions, super_resolve_image
from .synthesize import SynthesisOptions, check_anatomy_conditioning, synthesize_image
from .task_entry import Argument, ExtraOutput, Finished, Images, Inputs, TaskEntry, TaskRun, preview_of

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


def _denoise(engine, inputs: Inputs, options, progress, cancel) -> TaskRun:
    result = denoise_image(inputs["input"], engine, options, progress, cancel)
    return TaskRun({"": result.image}, result)


def _denoise_summary(done: Finished) -> str:
    result, paths = done.result, done.paths
    if result.steps == 0:
        return (f"Nothing to denoise in {paths['input']} (noise ~{result.noise_hu:.1f} HU, strength "
                f"{done.options.strength:g}): wrote an unchanged copy to {paths['output']}.")
    return (f"Denoised {paths['input']} -> {paths['output']} (noise ~{result.noise_hu:.1f} HU, "
            f"{result.steps} steps from t={result.start_step}, model {done.model}).")


def _anomaly(engine, inputs: Inputs, options, progress, cancel) -> TaskRun:
    result = anomaly_map_image(inputs["input"], engine, options, progress, cancel)
    images = {"": result.anomaly_map, "healthy": result.healthy}
    if result.mask is not None:
        images["mask"] = result.mask
    return TaskRun(images, result)


def _anomaly_check_arguments(args) -> None:
    if args.mask_out is not None and args.threshold is None and getattr(args, "method", "ensemble") == "residual":
        raise InputError("--mask-out with --method residual needs --threshold (HU of absolute difference, e.g. 100).")


def _anomaly_check_model(args, files) -> None:
    # Without --threshold the mask is cut at the model's calibrated threshold (the ensemble map's).
    if args.mask_out is not None and args.threshold is None and calibration_of(files) is None:
        raise InputError(f"--mask-out needs --threshold: model '{files.name}' ships no anomaly calibration "
                         "(make one with `meddifffm calibrate-anomaly`).")


def _anomaly_summary(done: Finished) -> str:
    result = done.result
    unit = "HU" if result.method == "residual" else "x healthy"
    cut = "" if result.threshold is None else f"; mask at >= {result.threshold:.3g}"
    return (f"Anomaly map ({result.method}) of {done.paths['input']} -> {done.paths['output']} (score "
            f"{result.score:.3g} {unit} = 99th percentile{cut}; {result.steps} step(s) from up to "
            f"t={result.start_step}, model {done.model}).")


def _synthesize(engine, inputs: Inputs, options, progress, cancel) -> TaskRun:
    result = synthesize_image(engine, options, anatomy=inputs.get("anatomy"), like=inputs.get("like"),
                              progress=progress, cancel=cancel)
    return TaskRun({"": result.image}, result)


def _synthesize_check_model(args, files) -> None:
    if getattr(args, "anatomy", None) is not None:
        check_anatomy_conditioning(files.model_config, files.name)


def _synthesize_preview(inputs: Inputs, images: Images):
    like = inputs.get("like")
    return (like if like is not None else images[""], images[""],
            ("reference" if like is not None else "synthetic", "synthetic"))


def _synthesize_summary(done: Finished) -> str:
    result = done.result
    return (f"Synthesised a {result.region} CT {result.image.GetSize()} -> {done.paths['output']} "
            f"({result.steps} steps, anatomy {'used' if result.anatomy_used else 'not used'}, model {done.model}).")


def _superres(engine, inputs: Inputs, options, progress, cancel) -> TaskRun:
    result = super_resolve_image(inputs["input"], engine, options, progress, cancel)
    return TaskRun({"": result.image}, result)


def _superres_summary(done: Finished) -> str:
    result = done.result
    return (f"Super-resolved {done.paths['input']} -> {done.paths['output']}: {result.factor}x in z, "
            f"z spacing {result.image.GetSpacing()[2]:.3g} mm (slice averages within "
            f"{result.max_slice_error_hu:.2g} HU of the input; model {done.model}).")


def _inpaint(engine, inputs: Inputs, options, progress, cancel) -> TaskRun:
    result = inpaint_image(inputs["input"], inputs["mask"], engine, options, progress, cancel)
    return TaskRun({"": result.image}, result)


def _lesion(engine, inputs: Inputs, options, progress, cancel) -> TaskRun:
    result = generate_lesion_image(inputs["input"], inputs["mask"], engine, options, progress, cancel)
    return TaskRun({"": result.image}, result)


def _regenerated_summary(done: Finished) -> str:
    result = done.result
    return (f"{done.task}: {result.mask_voxels} voxels of {done.paths['input']} regenerated -> {done.paths['output']} "
            f"({result.steps} steps from t={result.start_step}, model {done.model}).")


MASKED = ("input", "mask", "output")
GRID = "output grid (one of)"
MASKED_OUTPUT = "where to write the result (input's pixel type)"

TASKS: Dict[str, TaskEntry] = {
    entry.name: entry
    for entry in (
        TaskEntry(
            "denoise", DenoiseOptions, _denoise, "base", False, (
                Argument("--strength", "strength", "0..1: fraction of the noise to remove (1 = all, 0.5 = halfway)"),
                NOISE_HU, LAMBDA, *SAMPLING, *CT_INPUT),
            help="remove noise from a CT (zero-shot DiffPIR with the foundation model)",
            output_help="where to write the denoised CT", summary=_denoise_summary,
            preview=preview_of("input", "denoised")),
        TaskEntry(
            "anomaly", AnomalyOptions, _anomaly, "base", False, (
                Argument("--method", "method", "'ensemble': moderate noise levels, each residual divided by what "
                         "healthy tissue of the same structure gives (1 = typical healthy voxel); 'residual': the "
                         "paper's |input - reconstruction| in HU from t = 950 (use with --steps 20)", "str",
                         ANOMALY_METHODS),
                Argument("--threshold", "threshold", "map value at or above which a voxel is anomalous (for "
                         "--mask-out; default with --method ensemble: the model's calibrated threshold, the score 1 "
                         "percent of healthy body voxels exceed)"),
                Argument("--start-step", "start_step", "--method residual: diffusion step the image is noised to "
                         "(default: 950 of 1000, the paper's)", "int"),
                Argument("--samples", "samples", "reconstructions per noise level (seeds seed, seed+1, ...)", "int"),
                Argument("--smooth-mm", "smooth_mm", "Gaussian smoothing of each residual: standard deviation in mm "
                         "(0 = none; default: 2 with --method residual, the calibration's with ensemble)"),
                Argument("--min-component-ml", "min_component_ml", "drop mask parts smaller than this (ml)"),
                Argument("--body-only", "body_only", "--method residual: zero the map outside the body (the large "
                         "connected region above -500 HU, holes filled); the ensemble map always keeps the eroded "
                         "body", "flag"),
                *SAMPLING, *CT_INPUT),
            help="map anomalies: where the CT differs from the model's healthy reconstructions (zero-shot)",
            description=(
                "Reconstruct 'healthy' images with the foundation model and write the anomaly map (float32, on the "
                "input grid). Default --method ensemble: the CT is noised to moderate levels (250 and 500 of 1000) "
                "and reconstructed; each residual |input - reconstruction| is divided by the residual healthy tissue "
                "of the same structure (HU class and local edge strength) gives, from the model's calibration "
                "statistics, then median-filtered and kept inside the eroded body: 1 = a typical healthy voxel, the "
                "calibrated threshold (used by --mask-out without --threshold) is the value 1 % of healthy body "
                "voxels exceed. --method residual is the paper's map: |input - reconstruction| in HU from t = 950 "
                "(with --steps 20, the former default), smoothed by --smooth-mm; its mask needs --threshold in HU. "
                "Voxels outside the model's HU window get 0."),
            output_help="where to write the anomaly map (float32)",
            extra_outputs=(
                ExtraOutput("mask", "--mask-out", "also write the binary mask map >= threshold (--threshold, or the "
                            "model's calibrated one)"),
                ExtraOutput("healthy", "--healthy-out", "also write the healthy reconstruction (HU)",
                            batch_flag="--healthy",
                            batch_help="also write the healthy reconstruction (<case>_anomaly_healthy)")),
            summary=_anomaly_summary, preview=preview_of("input", "healthy reconstruction", after="healthy"),
            check_arguments=_anomaly_check_arguments, check_model=_anomaly_check_model),
        TaskEntry(
            "synthesize", SynthesisOptions, _synthesize, "base", False, (
                Argument("--region", "region", "body region", "str", REGIONS, required=True),
                *SAMPLING),
            help="synthesise a CT from noise for a body region (optionally shaped by an anatomy label map)",
            description=(
                "Sample a CT (int16 HU) from pure noise, conditioned on the body region and, with --anatomy and a "
                "model trained with anatomy channels, on an anatomy label map (label c = structure c). The output "
                "grid is the label map's, else --like's, else --size voxels at --spacing mm (default: one model "
                "patch)."),
            output_help="where to write the synthetic CT (int16 HU)",
            input_name="anatomy label map", main_input="anatomy", positionals=("output",),
            command_arguments=(
                Argument("--anatomy", "anatomy", "anatomy label map: condition and output grid; only for a model "
                         "trained with anatomy channels (the shipped base has none: `meddifffm info` lists each "
                         "model's conditions)", "path", group=GRID, read_as="anatomy label map"),
                Argument("--like", "like", "reference image whose grid the output takes", "path", group=GRID,
                         read_as="reference image"),
                Argument("--size", "size", "output size in voxels", "int", nargs=3, metavar=("X", "Y", "Z"),
                         group=GRID),
                Argument("--spacing", "spacing", "output spacing in mm: one number or three (x y z), with --size",
                         nargs="+", metavar="MM", group=GRID)),
            summary=_synthesize_summary, preview=_synthesize_preview, check_model=_synthesize_check_model),
        TaskEntry(
            "superres", SuperResOptions, _superres, "superres", False, (
                Argument("--factor-z", "factor_z", "thin slices per thick slice (integer >= 2)", "int",
                         exclusive="target"),
                Argument("--spacing", "spacing", "target z spacing in mm (the input z spacing must be a multiple of "
                         "it)", exclusive="target"),
                LAMBDA, NOISE_HU,
                Argument("--start-step", "start_step", "start from the interpolated input noised to this step "
                         "(default: pure noise)", "int"),
                Argument("--keep-origin", "keep_origin", "keep the input origin (see the description)", "flag"),
                *SAMPLING, *CT_INPUT),
            help="super-resolve thick slices to thin ones (z only; superres ControlNet + data consistency)",
            description=(
                "Split every thick slice into F thin ones. The output keeps the input's x/y grid, direction and "
                "physical extent with z spacing / F (its origin moves by -(F-1)/(2F) z spacing along the slice axis "
                "so each thin slice lies inside its thick slice; --keep-origin keeps the input origin). Averaging "
                "every F consecutive output slices gives back the input slice (an exact final projection). Needs a "
                "'superres' ControlNet model."),
            input_help="thick-slice CT (NIfTI, NRRD, MHA or a DICOM folder)",
            output_help="where to write the thin-slice CT (float32 HU)", summary=_superres_summary,
            preview=preview_of("input (thick)", "super-resolved")),
        TaskEntry(
            "inpaint", InpaintOptions, _inpaint, "base", True, (*REGENERATE, *SAMPLING, *CT_INPUT),
            help="inpaint: regenerate the voxels inside a mask as healthy tissue (RePaint, base model)",
            description=(
                "Regenerate the voxels inside MASK as plausible tissue with the foundation model (RePaint: the rest "
                "of the image steers every step). By default the mask starts from a smooth fill of the tissue around "
                "it, noised to half the schedule, so it keeps its surroundings' intensity (--init noise: from pure "
                "noise). Every voxel outside the mask is bit-identical to the input (same pixel type). A mask on "
                "another grid is resampled onto the image by physical position (nearest neighbour)."),
            positionals=MASKED, output_help=MASKED_OUTPUT, summary=_regenerated_summary,
            preview=preview_of("input", "inpainted")),
        TaskEntry(
            "lesion", LesionOptions, _lesion, "lesion", True, (*REGENERATE, *SAMPLING, *CT_INPUT),
            help="generate a lesion inside a mask (lesion ControlNet + RePaint)",
            description=(
                "Draw a lesion shaped like MASK with a 'lesion' ControlNet conditioned on the mask; RePaint keeps "
                "the rest of the image, and every voxel outside the mask is bit-identical to the input (same pixel "
                "type). A mask on another grid is resampled onto the image by physical position (nearest "
                "neighbour)."),
            positionals=MASKED, output_help=MASKED_OUTPUT, summary=_regenerated_summary,
            preview=preview_of("input", "lesion generated")),
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

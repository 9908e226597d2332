"""What the superres ControlNet adds at each noise level: one-step x0 estimates on real thin-slice CT.

A box of a thin-slice case (``--crop-mm``, a whole number of F-slice slabs) is turned into thick
slices as in ``benchmarks/superres_quality.py`` (F = round(5 mm / thin spacing)), and the task's
condition is built from them exactly as super-resolution builds it. The thin box in model units is
noised to each time step t (a fixed seed per t), and the network's noise estimate gives the one-step
x0 estimate x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t). Scored against the thin box, RMSE in HU over
the whole box, for:

* ``condition``: the thick slices interpolated back (the condition itself, no network);
* ``base``: the ControlNet's residuals scaled to 0 (the base model alone);
* ``controlnet``: the ControlNet at its own scale, at every t (also below its ``min_timestep``,
  where sampling leaves it off: this table is what chooses that step);
* ``controlnet_compare`` (``--compare-model``): a second superres ControlNet.

A sampler's last steps are the low t: a ControlNet worse than the base there costs the output detail
even when it helps at high t (the measurement that led to the superres candidate's diagnosis,
docs/TRAINING.md, "ControlNet chunk 0s").

Usage: python -m benchmarks.studies.controlnet_timesteps [--model SUPERRES_CONTROLNET] [--compare-model ...]
       [--cases lidc_chest_1mm] [--timesteps 50,111,250,500] [--save]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import SimpleITK as sitk

from benchmarks.common import cli_options, ct_cases, model_setup, reporting
from benchmarks.superres_quality import factor_for, make_thick, set_control

DEFAULT_CASE = "lidc_chest_1mm"
CROP_MM = 96.0
TIMESTEPS = (50, 111, 250, 500)  # 111: the last noisy step of the 10-step DDIM that super-resolution runs


def one_step_errors(engine, thin: sitk.Image, thick: sitk.Image, factor: int, region: str,
                    timesteps, scales) -> dict[tuple[float, int], float]:
    """RMSE (HU) of the one-step x0 estimate at each (ControlNet scale, t), and of the condition (key (None, 0))."""
    import torch

    from MedDiffFMLib.models.conditions import superres_condition
    from MedDiffFMLib.preprocessing import ModelSpace
    from MedDiffFMLib.sampling import Conditions, sampler_for
    from MedDiffFMLib.tasks.superres import output_geometry, thick_condition

    window = engine.window(region)
    space = ModelSpace.for_grid(output_geometry(thick, factor), engine.config.spacing_mm[::-1], window,
                                min_size=engine.config.patch_size)
    condition = thick_condition(thick, space)
    crop = tuple(slice(a, a + n) for (a, _), n in zip(space.padding, space.model_geometry.shape))
    truth = np.full(condition.shape, -1.0, np.float32)
    thin_hu = np.clip(sitk.GetArrayFromImage(thin).astype(np.float32), window.low, window.high)
    if thin_hu.shape != truth[crop].shape:
        raise SystemExit(f"The case's thin grid {thin_hu.shape} is not the model grid {truth[crop].shape}: "
                         "use a case with the model's spacing (1 mm), e.g. lidc_chest_1mm.")
    truth[crop] = window.hu_to_model(thin_hu)
    x0 = torch.from_numpy(truth)[None, None]
    hu = window.width / 2.0

    def rmse(estimate: torch.Tensor) -> float:
        return float(np.sqrt(np.mean(((estimate - x0)[0, 0].numpy()[crop] * hu) ** 2)))

    errors = {(None, 0): rmse(torch.from_numpy(condition)[None, None])}
    schedule = sampler_for(engine.config).schedule
    for scale in scales:
        # Every t scores the ControlNet itself, also below a min_timestep the model would skip it at.
        set_control(engine, scale, min_timestep=0)
        predictor = engine.predictor(space, Conditions(region=engine.region_index(region),
                                                       control=superres_condition(condition)))
        for t in timesteps:
            x_t = schedule.add_noise(x0, int(t), torch.Generator().manual_seed(int(t)))
            with torch.no_grad():
                eps = predictor(x_t, int(t))
            errors[(scale, t)] = rmse(schedule.predict_x0(x_t, eps, int(t)))
    return errors


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_options.add_common_args(parser, [DEFAULT_CASE], [DEFAULT_CASE])
    parser.add_argument("--compare-model", default=None, help="a second superres ControlNet folder")
    parser.add_argument("--crop-mm", type=float, default=CROP_MM, help="box size in mm")
    parser.add_argument("--region", default="chest", help="body region whose window and label the model gets")
    parser.add_argument("--timesteps", default=",".join(map(str, TIMESTEPS)), help="comma-separated t values")
    args = parser.parse_args(argv)
    cli_options.setup_threads(args)
    machine = reporting.machine_info(args.device)
    timesteps = [int(t) for t in args.timesteps.split(",")]
    model = model_setup.resolve_bench_model(args, role="superres")
    reporting.print_header("Superres ControlNet: one-step x0 error per time step", machine, model)
    models = {"controlnet": model}
    if args.compare_model:
        models["controlnet_compare"] = model_setup.bench_model(args.compare_model, "superres")
    engines = {label: model_setup.make_engine(bench, args.device, role="superres", **cli_options.engine_options(args))
               for label, bench in models.items() if bench.available}
    table = reporting.Table("One-step x0 RMSE (HU) against the thin box, per time step",
                         [("case", "case"), ("method", "method")]
                         + [(f"t{t}", f"t = {t}", "{:.1f}") for t in timesteps] + [("note", "note")])
    for name in ct_cases.parse_cases(args.cases, [DEFAULT_CASE]):
        image = ct_cases.read_case(name)
        factor = factor_for(image.GetSpacing()[2])
        box = list(ct_cases.crop_box(sitk.GetArrayFromImage(image), image.GetSpacing(), [args.crop_mm] * 3))
        box[0] = slice(box[0].start, box[0].start + (box[0].stop - box[0].start) // factor * factor)
        thin, thick = make_thick(ct_cases.crop_image(image, tuple(box)), factor)
        print(f"[{name}] box {thin.GetSize()[::-1]}, F {factor}", flush=True)
        for label, bench in models.items():
            if label not in engines:
                table.add(case=name, method=label, note=bench.reason)
                continue
            engine = engines[label]
            own = engine.loaded.model.controlnet.control.conditioning_scale
            scales = [0.0, own] if label == "controlnet" else [own]
            errors = one_step_errors(engine, thin, thick, factor, args.region, timesteps, scales)
            if label == "controlnet":
                table.add(case=name, method="condition", note="the thick slices interpolated, no network",
                          **{f"t{t}": errors[(None, 0)] for t in timesteps})
                table.add(case=name, method="base", note="ControlNet residuals scaled to 0",
                          **{f"t{t}": errors[(0.0, t)] for t in timesteps})
            table.add(case=name, method=label, note=str(bench.ref), **{f"t{t}": errors[(own, t)] for t in timesteps})
            print("  " + label + ": " + ", ".join(f"t {t}: {errors[(own, t)]:.1f}" for t in timesteps), flush=True)
    table.print()
    if args.save:
        reporting.save_results("controlnet_timesteps", args, machine, model, [table],
                            [f"region {args.region}; noise seeded by t; box {args.crop_mm:g} mm"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

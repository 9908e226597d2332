"""Super-resolution quality along z: thick slices made from thin ones, restored, scored against the thin scan.

For every case a box of real thin-slice CT (``--crop-mm`` around the body's centroid, a whole number
of F-slice slabs) is turned into thick slices by averaging each F consecutive slices (a thick slice
of F x the thin spacing, centred on its slab: what a scanner's thick reconstruction approximates).
The thick volume is restored onto the original thin grid by:

* linear interpolation along the slice axis (SimpleITK ``sitkLinear``);
* cubic B-spline interpolation (SimpleITK ``sitkBSpline``);
* MedDiffFM: ``MedDiffFMLib.api.super_resolve`` (superres ControlNet + DiffPIR, default options,
  ``factor_z`` = F); its output grid is the thin grid (checked; resampled onto it otherwise);
* with ``--compare-model PATH``: ``meddifffm_compare``, a second superres ControlNet in the same run.

``--control-scale S`` multiplies the ControlNet residuals of the ``meddifffm`` rows by S (the
ControlNet's ``conditioning_scale``; 0 leaves the base model with DiffPIR's data step alone), to see
what the ControlNet adds; ``--control-min-t T`` applies it only at time steps t >= T (its
``min_timestep``). Both try a setting before it ships; the compare model runs as it ships.

Beyond the first and last slab centres the interpolators extrapolate the nearest thick slice.
Scores against the thin original, over the whole box:

* PSNR (dB): clipped to [-1000, 1000] HU, data range 2000 HU;
* SSIM: 3D SSIM (Gaussian window sigma 1.5 voxels) of [-1000, 1000] HU mapped to [0, 1] (the
  through-plane structure is the point, so the window spans lung to bone);
* RMSE (HU) inside the body (largest region above -500 HU, holes filled);
* seconds.

Cases default to thin-slice scans: cta_aorta_crop (1.5 mm, F = 3 -> 4.5 mm), lidc_chest_1mm
(1 mm, F = 5 -> 5 mm, the paper's setting), chest_upper_abdomen (2.5 mm, F = 2 -> 5 mm).

Usage: python -m benchmarks.superres_quality [--quick] [--model SUPERRES_CONTROLNET | --config default]
       [--compare-model SUPERRES_CONTROLNET] [--control-scale S] [--control-min-t T] [--save]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks.common import cli_options, ct_cases, metrics, model_setup, reporting, timing

DEFAULT_CASES = ["cta_aorta_crop", "lidc_chest_1mm", "chest_upper_abdomen"]
QUICK_CASES = ["cta_aorta_crop"]
THICK_MM = 5.0
CROP_MM = 128.0
QUICK_CROP_MM = 96.0
METHODS = ["linear", "bspline", "meddifffm"]
COMPARE = "meddifffm_compare"


def factor_for(dz: float, thick_mm: float = THICK_MM) -> int:
    """Thin slices per thick slice: round(thick / thin), at least 2 (1.5 mm -> 3)."""
    return max(2, int(round(thick_mm / dz)))


def make_thick(thin: sitk.Image, factor: int) -> tuple[sitk.Image, sitk.Image]:
    """``(thin_used, thick)``: the thin image cut to a whole number of slabs, and its slab averages
    as an image with z spacing F dz whose slice centres are the slab centres."""
    hu = sitk.GetArrayFromImage(thin).astype(np.float32)
    nz = (hu.shape[0] // factor) * factor
    thin_used = thin[:, :, :nz]
    thick_hu = hu[:nz].reshape(nz // factor, factor, *hu.shape[1:]).mean(axis=1)
    thick = sitk.GetImageFromArray(thick_hu.astype(np.float32))
    sx, sy, sz = thin.GetSpacing()
    thick.SetSpacing((sx, sy, sz * factor))
    thick.SetDirection(thin.GetDirection())
    direction = np.asarray(thin.GetDirection()).reshape(3, 3)
    thick.SetOrigin(tuple(np.asarray(thin.GetOrigin()) + direction[:, 2] * (factor - 1) / 2.0 * sz))
    return thin_used, thick


def interpolate(thick: sitk.Image, reference: sitk.Image, kind: str) -> np.ndarray:
    interpolator = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}[kind]
    out = sitk.Resample(thick, reference, sitk.Transform(), interpolator, -1000.0, sitk.sitkFloat32, True)
    return sitk.GetArrayFromImage(out)


def on_reference(result: sitk.Image, reference: sitk.Image) -> tuple[np.ndarray, str]:
    """The model output as an array on ``reference``'s grid (resampled linearly when it differs)."""
    same = (result.GetSize() == reference.GetSize()
            and np.allclose(result.GetSpacing(), reference.GetSpacing(), atol=1e-4)
            and np.allclose(result.GetOrigin(), reference.GetOrigin(), atol=1e-3))
    if same:
        return sitk.GetArrayFromImage(result).astype(np.float32), ""
    out = sitk.Resample(sitk.Cast(result, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear, -1000.0,
                        sitk.sitkFloat32, True)
    return sitk.GetArrayFromImage(out), "output grid differed from the thin grid: resampled"


def set_control(engine, scale: Optional[float] = None, min_timestep: Optional[int] = None) -> None:
    """Override the loaded ControlNet's residual scale (``conditioning_scale``) and/or the lowest time
    step it acts at (``min_timestep``) for this run only; None keeps the model's own."""
    controlnet = engine.loaded.model.controlnet
    changes: dict = {}
    if scale is not None:
        changes["conditioning_scale"] = float(scale)
    if min_timestep is not None:
        changes["min_timestep"] = int(min_timestep)
    controlnet.control = dataclasses.replace(controlnet.control, **changes)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_options.add_common_args(parser, DEFAULT_CASES, QUICK_CASES)
    cli_options.add_engine_args(parser)
    parser.add_argument("--thick-mm", type=float, default=THICK_MM, help="thick slice thickness to simulate (mm)")
    parser.add_argument("--crop-mm", type=float, default=None,
                        help=f"box size in mm (default {CROP_MM:.0f}, quick {QUICK_CROP_MM:.0f})")
    parser.add_argument("--steps", type=int, default=None, help="MedDiffFM sampler steps (default: the API default)")
    parser.add_argument("--compare-model", default=None,
                        help="a second superres ControlNet folder, scored in the same run (rows meddifffm_compare)")
    parser.add_argument("--control-scale", type=float, default=None,
                        help="multiply --model's ControlNet residuals by this (default: the model's, 1)")
    parser.add_argument("--control-min-t", type=int, default=None,
                        help="apply --model's ControlNet only at time steps t >= this, the base alone below "
                             "(default: the model's min_timestep)")
    args = parser.parse_args(argv)
    cli_options.setup_threads(args)
    machine = reporting.machine_info(args.device)
    cases = ct_cases.parse_cases(args.cases, QUICK_CASES if args.quick else DEFAULT_CASES)
    crop_mm = args.crop_mm or (QUICK_CROP_MM if args.quick else CROP_MM)
    model = model_setup.resolve_bench_model(args, role="superres")
    reporting.print_header("Super-resolution quality (thick slices -> thin)", machine, model)
    models = {"meddifffm": model}
    if args.compare_model:
        models[COMPARE] = model_setup.bench_model(args.compare_model, "superres")
    methods = METHODS + ([COMPARE] if args.compare_model else [])
    engines = {}
    for method, bench in models.items():
        if not bench.available:
            print(f"{method}: not available (no superres model).")
            continue
        engines[method], load_s = timing.timed(
            lambda: model_setup.make_engine(bench, args.device, role="superres", **cli_options.engine_options(args)))
        if method == "meddifffm":  # the compare model runs as it ships
            set_control(engines[method], args.control_scale, args.control_min_t)
        print(f"{method}: {bench.ref} loaded in {load_s:.1f} s (not included in the per-case seconds).")

    case_table = reporting.Table("Cases", [("case", "case"), ("shape", "thin box z×y×x"),
                                        ("thin", "thin mm"), ("factor", "F"), ("thick", "thick mm"),
                                        ("mvox", "Mvox (thin)", "{:.2f}"), ("training", "model training")])
    per_case = reporting.Table("Per case", [("case", "case"), ("method", "method"), ("psnr", "PSNR dB", "{:.2f}"),
                                         ("ssim", "SSIM 3D", "{:.4f}"), ("rmse", "RMSE body HU", "{:.1f}"),
                                         ("seconds", "s", "{:.2f}"), ("note", "note")])
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for name in cases:
        image = ct_cases.read_case(name)
        hu = sitk.GetArrayFromImage(image)
        dz = image.GetSpacing()[2]
        factor = factor_for(dz, args.thick_mm)
        size = [crop_mm, crop_mm, crop_mm]
        box = list(ct_cases.crop_box(hu, image.GetSpacing(), size))
        slabs = (box[0].stop - box[0].start) // factor
        box[0] = slice(box[0].start, box[0].start + slabs * factor)
        thin, thick = make_thick(ct_cases.crop_image(image, tuple(box)), factor)
        reference = sitk.GetArrayFromImage(thin).astype(np.float32)
        body = metrics.body_mask(reference)
        case_table.add(case=name, shape="×".join(map(str, reference.shape)), thin=f"{dz:.2f}", factor=factor,
                       thick=f"{dz * factor:.2f}", mvox=reference.size / 1e6,
                       training=model_setup.training_status(model, name))
        print(f"[{name}] thin box {reference.shape}, F {factor} ({dz:.2f} -> {dz * factor:.2f} mm)", flush=True)
        for method in methods:
            note = ""
            if method in ("linear", "bspline"):
                out, seconds = timing.timed(lambda: interpolate(thick, thin, method))
            elif method not in engines:
                per_case.add(case=name, method=method, note="not available (no superres model)")
                continue
            else:
                from MedDiffFMLib import api

                kwargs = {"steps": args.steps} if args.steps else {}
                result, seconds = timing.timed(lambda: api.super_resolve(thick, engine=engines[method],
                                                                         factor_z=factor, **kwargs))
                out, note = on_reference(result, thin)
            row = {"case": name, "method": method, "psnr": metrics.psnr(reference, out),
                   "ssim": metrics.ssim_3d(reference, out, window=metrics.HU_RANGE),
                   "rmse": metrics.rmse(reference, out, body), "seconds": seconds, "note": note}
            per_case.add(**row)
            results[method].append(row)
            print(f"  {method:10s} PSNR {row['psnr']:.2f} SSIM {row['ssim']:.4f} RMSE {row['rmse']:.1f} "
                  f"({seconds:.1f} s) {note}", flush=True)

    summary = reporting.Table(f"Mean over {len(cases)} case(s) ({crop_mm:.0f} mm boxes, ~{args.thick_mm:g} mm thick)", [
        ("method", "method"), ("psnr", "PSNR dB", "{:.2f}"), ("ssim", "SSIM 3D", "{:.4f}"),
        ("rmse", "RMSE body HU", "{:.1f}"), ("seconds", "total s", "{:.1f}"), ("note", "note")])
    for method in methods:
        rows = results[method]
        if not rows:
            summary.add(method=method, note="" if method in ("linear", "bspline") else "not available (no superres model)")
            continue
        summary.add(method=method, **{k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "rmse")},
                    seconds=sum(r["seconds"] for r in rows))
    for t in (case_table, per_case, summary):
        t.print()
    if args.save:
        notes = ["PSNR over [-1000, 1000] HU; SSIM 3D over [-1000, 1000] HU; RMSE inside the body."]
        notes += [f"{method}: {bench.ref}" for method, bench in models.items()]
        if args.control_scale is not None:
            notes.append(f"meddifffm's ControlNet residuals scaled by {args.control_scale:g} (--control-scale).")
        if args.control_min_t is not None:
            notes.append(f"meddifffm's ControlNet applied at t >= {args.control_min_t} only (--control-min-t).")
        reporting.save_results("superres_quality", args, machine, model, [case_table, per_case, summary], notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

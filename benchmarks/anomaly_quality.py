"""Anomaly-map quality: does a voxel map find real lesions, and how much healthy tissue does it flag?

Lesion cases: the lung tumour (``lung_tumour_5mm``, chest, the region the model is for) and soft-tissue
sarcomas (thigh). A box of ``--crop-mm`` around the lesion's centroid (``--lung-crop-mm`` for the lung
case) is given to each method; each returns a voxel map (higher = more anomalous), scored against the
lesion mask over the voxels inside the body (largest region above -500 HU, holes filled: the air around
a limb would make any map look good):

* prevalence: the lesion's share of those voxels (what a random map scores as AUPRC);
* AUROC: voxel-level area under the ROC curve (Mann-Whitney, ties averaged);
* AUPRC: average precision, which a small lesion needs (a map that also lights every edge has a high
  AUROC and a low AUPRC);
* best Dice: the highest Dice of ``map >= threshold`` over every threshold (an oracle threshold);
* seconds of CPU time (wall clock of the call; the model is loaded once, outside).

Lesion-free scans (``chest_upper_abdomen``, the two heads): a body-centred box of ``--crop-mm``; the
false-positive fraction is the share of body voxels that the default map's mask flags at the model's
calibrated default threshold (the score 1 % of healthy calibration voxels exceed). The calibration
(``meddifffm calibrate-anomaly``, see the model card) did not use these scans.

Methods, in the same run:

* median residual: |image - median-filtered image| (``--median-mm`` box), Gaussian-smoothed 2 mm;
* smoothed HU: the image smoothed 2 mm (a dense lesion is bright);
* intensity z-score: |HU - m| / s with m, s the median and 1.4826 MAD of the body's soft tissue;
* residual: MedDiffFM's former default, |input - reconstruction| in HU from t = 950 with
  ``--residual-steps`` (20) DDIM steps, smoothed 2 mm (``method="residual"``);
* ensemble: MedDiffFM's default map (``method="ensemble"``: levels 250 and 500, one prediction each,
  residuals divided by the healthy residual of the voxel's structure, median filter, eroded body).

Usage: python -m benchmarks.anomaly_quality [--quick] [--model PATH | --config default] [--save]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from benchmarks.common import cli_options, ct_cases, metrics, model_setup, reporting, timing

DEFAULT_CASES = ["lung_tumour_5mm", "STS_034", "STS_035"]
QUICK_CASES = ["lung_tumour_5mm"]
HEALTHY_CASES = ["chest_upper_abdomen", "head_cranium", "head_trauma_ge"]
QUICK_HEALTHY = ["chest_upper_abdomen"]
CROP_MM = 128.0
LUNG_CROP_MM = 96.0
SMOOTH_MM = 2.0
MEDIAN_MM = 9.0
RESIDUAL_STEPS = 20
METHODS = ["median_residual", "smoothed_hu", "zscore", "residual", "ensemble"]
MODEL_METHODS = ("residual", "ensemble")


def smooth(volume: np.ndarray, spacing_zyx: np.ndarray, sigma_mm: float) -> np.ndarray:
    if sigma_mm <= 0:
        return volume
    return ndimage.gaussian_filter(volume, sigma=[sigma_mm / s for s in spacing_zyx])


def median_residual(hu: np.ndarray, spacing_zyx: np.ndarray, median_mm: float = MEDIAN_MM,
                    smooth_mm: float = SMOOTH_MM) -> np.ndarray:
    size = [max(1, int(round(median_mm / s)) | 1) for s in spacing_zyx]
    return smooth(np.abs(hu - ndimage.median_filter(hu, size=size)), spacing_zyx, smooth_mm)


def zscore(hu: np.ndarray, body: np.ndarray, spacing_zyx: np.ndarray, smooth_mm: float = SMOOTH_MM) -> np.ndarray:
    soft = body & (hu >= metrics.SOFT_TISSUE_HU[0]) & (hu <= metrics.SOFT_TISSUE_HU[1])
    values = hu[soft] if soft.any() else hu[body]
    centre = float(np.median(values))
    scale = 1.4826 * float(np.median(np.abs(values - centre))) or 1.0
    return smooth(np.abs(hu - centre) / scale, spacing_zyx, smooth_mm)


def model_map(method: str, crop: sitk.Image, engine, region: str, residual_steps: int) -> tuple[np.ndarray, dict]:
    from MedDiffFMLib import api

    kwargs = {"steps": residual_steps, "body_only": True} if method == "residual" else {}
    # The cases are CT in HU; a box inside a head holds no air, which the library's HU check would refuse.
    out = api.anomaly_map(crop, engine=engine, method=method, region=region, details=True, allow_non_hu=True,
                          **kwargs)
    return sitk.GetArrayFromImage(out["map"]).astype(np.float32), out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_options.add_common_args(parser, DEFAULT_CASES, QUICK_CASES)
    cli_options.add_engine_args(parser)
    parser.add_argument("--healthy", default=None,
                        help=f"lesion-free cases for the false-positive figure (default: {','.join(HEALTHY_CASES)}; "
                             f"--quick: {','.join(QUICK_HEALTHY)}; 'none' to skip)")
    parser.add_argument("--crop-mm", type=float, default=CROP_MM, help="box around the lesion / body centre")
    parser.add_argument("--lung-crop-mm", type=float, default=LUNG_CROP_MM, help="box around the lung tumour")
    parser.add_argument("--residual-steps", type=int, default=RESIDUAL_STEPS,
                        help="sampler steps of the former residual map from t = 950 (its former default: 20)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    args = parser.parse_args(argv)
    cli_options.setup_threads(args)
    machine = reporting.machine_info(args.device)
    cases = ct_cases.parse_cases(args.cases, QUICK_CASES if args.quick else DEFAULT_CASES)
    healthy_cases = [] if args.healthy == "none" else ct_cases.parse_cases(
        args.healthy, QUICK_HEALTHY if args.quick else HEALTHY_CASES)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS}")
    missing = [c for c in cases if "tumour" not in ct_cases.CASES[c].masks]
    if missing:
        parser.error(f"cases without a lesion mask: {missing}")
    model = model_setup.resolve_bench_model(args)
    reporting.print_header("Anomaly-map quality (lesion masks, lesion-free scans)", machine, model)
    engine, load_s = None, float("nan")
    threshold = None
    if model.available:
        from MedDiffFMLib.tasks.anomaly import default_threshold

        engine, load_s = timing.timed(lambda: model_setup.make_engine(model, args.device, **cli_options.engine_options(args)))
        threshold = default_threshold(engine)
        print(f"Model loaded in {load_s:.1f} s (not included in the per-case seconds); default threshold "
              f"{threshold if threshold is not None else 'none (no calibration)'}.")
    else:
        print(f"MedDiffFM: not available ({model.reason}).")

    case_table = reporting.Table("Lesion cases", [
        ("case", "case"), ("box", "box z×y×x (crop)"), ("mm", "box mm"), ("spacing", "spacing mm (x,y,z)"),
        ("lesion", "lesion voxels in box"), ("prevalence", "prevalence % of body", "{:.2f}"),
        ("training", "model training")])
    per_case = reporting.Table("Per lesion case (voxels inside the body)", [
        ("case", "case"), ("method", "method"), ("auroc", "AUROC", "{:.3f}"), ("auprc", "AUPRC", "{:.3f}"),
        ("dice", "best Dice", "{:.3f}"), ("prevalence", "prevalence", "{:.3f}"),
        ("default_dice", "Dice at default threshold", "{:.3f}"), ("seconds", "s", "{:.1f}"), ("note", "note")])
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for name in cases:
        image = ct_cases.read_case(name)
        hu_full = sitk.GetArrayFromImage(image)
        lesion_full = ct_cases.read_mask(name, "tumour") > 0
        centre = np.argwhere(lesion_full).mean(axis=0)
        size_mm = args.lung_crop_mm if name.startswith("lung") else args.crop_mm
        box = ct_cases.crop_box(hu_full, image.GetSpacing(), size_mm, center=centre)
        crop = ct_cases.crop_image(image, box)
        hu = hu_full[box].astype(np.float32)
        lesion = lesion_full[box]
        body = metrics.body_mask(hu) | lesion
        spacing = ct_cases.spacing_zyx(image)
        region = ct_cases.CASES[name].region or ct_cases.whole_scan_region(image)
        prevalence = float(lesion[body].mean())
        case_table.add(case=name, box="×".join(map(str, hu.shape)), mm=f"{size_mm:.0f}",
                       spacing=", ".join(f"{s:.2f}" for s in image.GetSpacing()), lesion=int(lesion.sum()),
                       prevalence=100.0 * prevalence, training=model_setup.training_status(model, name))
        print(f"[{name}] box {hu.shape}, lesion {100.0 * prevalence:.2f} % of the body, region {region}", flush=True)
        for method in methods:
            note, default_dice = "", float("nan")
            if method == "median_residual":
                amap, seconds = timing.timed(lambda: median_residual(hu, spacing))
            elif method == "smoothed_hu":
                amap, seconds = timing.timed(lambda: smooth(hu, spacing, SMOOTH_MM))
            elif method == "zscore":
                amap, seconds = timing.timed(lambda: zscore(hu, body, spacing))
            elif engine is None:
                per_case.add(case=name, method=method, note="not available (no model)")
                continue
            else:
                (amap, out), seconds = timing.timed(
                    lambda: model_map(method, crop, engine, region, args.residual_steps))
                note = f"{args.residual_steps} steps from t=950" if method == "residual" else "default options"
                if out["mask"] is not None:
                    default_dice = metrics.dice(sitk.GetArrayFromImage(out["mask"]).astype(bool) & body, lesion)
            scores, labels = amap[body], lesion[body]
            best, _ = metrics.best_dice(scores, labels)
            row = {"case": name, "method": method, "auroc": metrics.auroc(scores, labels),
                   "auprc": metrics.auprc(scores, labels), "dice": best, "prevalence": prevalence,
                   "default_dice": default_dice, "seconds": seconds, "note": note}
            per_case.add(**row)
            results[method].append(row)
            print(f"  {method:16s} AUROC {row['auroc']:.3f} AUPRC {row['auprc']:.3f} best Dice {best:.3f} "
                  f"({seconds:.1f} s)", flush=True)

    healthy_table = reporting.Table("Lesion-free scans: body voxels flagged at the default threshold", [
        ("case", "case"), ("box", "box z×y×x (crop)"), ("region", "region"), ("flagged", "flagged % of body", "{:.2f}"),
        ("score", "99th percentile of the map", "{:.3g}"), ("seconds", "s", "{:.1f}"), ("note", "note")])
    flagged_all = []
    for name in healthy_cases:
        if engine is None or "ensemble" not in methods:
            healthy_table.add(case=name, note="not available (no model or ensemble not run)")
            continue
        image = ct_cases.read_case(name)
        hu_full = sitk.GetArrayFromImage(image)
        box = ct_cases.crop_box(hu_full, image.GetSpacing(), args.crop_mm)
        crop = ct_cases.crop_image(image, box)
        hu = hu_full[box].astype(np.float32)
        body = metrics.body_mask(hu)
        region = ct_cases.CASES[name].region or ct_cases.whole_scan_region(image)
        (amap, out), seconds = timing.timed(lambda: model_map("ensemble", crop, engine, region, args.residual_steps))
        if out["mask"] is None:
            healthy_table.add(case=name, box="×".join(map(str, hu.shape)), region=region, seconds=seconds,
                              note="no calibrated threshold")
            continue
        flagged = float((sitk.GetArrayFromImage(out["mask"]).astype(bool) & body).sum() / max(int(body.sum()), 1))
        flagged_all.append(flagged)
        healthy_table.add(case=name, box="×".join(map(str, hu.shape)), region=region, flagged=100.0 * flagged,
                          score=out["score"], seconds=seconds, note=f"threshold {out['threshold']:.3g}")
        print(f"[{name}] flagged {100.0 * flagged:.2f} % of the body ({seconds:.1f} s)", flush=True)

    summary = reporting.Table(f"Mean over {len(cases)} lesion case(s)", [
        ("method", "method"), ("auroc", "AUROC", "{:.3f}"), ("auprc", "AUPRC", "{:.3f}"), ("dice", "best Dice", "{:.3f}"),
        ("prevalence", "mean prevalence", "{:.3f}"), ("flagged", "lesion-free flagged % of body", "{:.2f}"),
        ("seconds", "total s", "{:.1f}"), ("note", "note")])
    for method in methods:
        rows = results[method]
        if not rows:
            summary.add(method=method, note="not available (no model)")
            continue
        flagged = 100.0 * float(np.mean(flagged_all)) if method == "ensemble" and flagged_all else float("nan")
        summary.add(method=method, auroc=float(np.mean([r["auroc"] for r in rows])),
                    auprc=float(np.mean([r["auprc"] for r in rows])), dice=float(np.mean([r["dice"] for r in rows])),
                    prevalence=float(np.mean([r["prevalence"] for r in rows])), flagged=flagged,
                    seconds=sum(r["seconds"] for r in rows))
    tables = [case_table, per_case, healthy_table, summary]
    for t in tables:
        t.print()
    if args.save:
        notes = [f"Cases are cropped to keep CPU time affordable: lesion boxes of {args.crop_mm:.0f} mm "
                 f"({args.lung_crop_mm:.0f} mm for the lung tumour) around the lesion, lesion-free boxes of "
                 f"{args.crop_mm:.0f} mm around the body centre. Voxels inside the body only; best Dice uses an "
                 "oracle threshold; 'Dice at default threshold' and 'flagged' use the model's calibrated one."]
        reporting.save_results("anomaly_quality", args, machine, model, tables, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

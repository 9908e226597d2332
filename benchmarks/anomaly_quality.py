"""Anomaly-map quality: how well a voxel map finds a real tumour, MedDiffFM vs simple baselines.

On the soft-tissue sarcoma crops (and any other case with a tumour mask, e.g. lung_tumour_5mm), a
box of ``--crop-mm`` around the tumour's centroid is given to each method; each returns a voxel map
(higher = more anomalous), scored against the tumour mask over the voxels inside the body (largest
region above -500 HU, holes filled; the air around a limb would make any map look good):

* AUROC: voxel-level area under the ROC curve (Mann-Whitney, ties averaged);
* best Dice: the highest Dice of ``map >= threshold`` over every threshold (an oracle threshold, so
  an upper bound of what a fixed threshold would give); calling the whole body anomalous already
  scores 2p / (1 + p) for a tumour filling a fraction p of the body, printed per case as the floor;
* seconds.

Methods:

* median residual: |image - median-filtered image| (3x3x3... ``--median-mm`` box), Gaussian-smoothed
  like the MedDiffFM map (``--smooth-mm``);
* intensity z-score: |HU - m| / s with m, s the median and 1.4826 MAD of the body's soft tissue
  (-150..250 HU), smoothed alike (a tumour denser or lighter than muscle stands out);
* MedDiffFM: ``MedDiffFMLib.api.anomaly_map`` with its default options (noise to t = 950, reconstruct
  a healthy image, |input - reconstruction|, smoothed 2 mm).

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

from benchmarks import common, metrics

DEFAULT_CASES = ["STS_034", "STS_035", "STS_036"]
QUICK_CASES = ["STS_034"]
CROP_MM = 128.0
SMOOTH_MM = 2.0
MEDIAN_MM = 9.0
METHODS = ["median_residual", "zscore", "meddifffm"]


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


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser, DEFAULT_CASES, QUICK_CASES)
    common.add_overlap_arg(parser)
    parser.add_argument("--crop-mm", type=float, default=CROP_MM, help="box around the tumour centroid")
    parser.add_argument("--steps", type=int, default=None, help="MedDiffFM sampler steps (default: the API default)")
    args = parser.parse_args(argv)
    common.setup_threads(args)
    machine = common.machine_info(args.device)
    cases = common.parse_cases(args.cases, QUICK_CASES if args.quick else DEFAULT_CASES)
    missing = [c for c in cases if "tumour" not in common.CASES[c].masks]
    if missing:
        parser.error(f"cases without a tumour mask: {missing}")
    model = common.resolve_bench_model(args)
    common.print_header("Anomaly-map quality (tumour masks)", machine, model)
    engine, load_s = None, float("nan")
    if model.available:
        engine, load_s = common.timed(lambda: common.make_engine(model, args.device, **common.engine_options(args)))
        print(f"Model loaded in {load_s:.1f} s (not included in the per-case seconds).")
    else:
        print(f"MedDiffFM: not available ({model.reason}).")

    case_table = common.Table("Cases", [("case", "case"), ("box", "box z×y×x"), ("spacing", "spacing mm (x,y,z)"),
                                        ("tumour", "tumour voxels in box"), ("fraction", "tumour % of body", "{:.1f}"),
                                        ("floor", "Dice of 'whole body'", "{:.3f}"), ("training", "model training")])
    per_case = common.Table("Per case (voxels inside the body)", [
        ("case", "case"), ("method", "method"), ("auroc", "AUROC", "{:.3f}"), ("dice", "best Dice", "{:.3f}"),
        ("threshold", "at threshold", "{:.3g}"), ("seconds", "s", "{:.2f}"), ("note", "note")])
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for name in cases:
        image = common.read_case(name)
        hu_full = sitk.GetArrayFromImage(image)
        tumour_full = common.read_mask(name, "tumour") > 0
        centre = np.argwhere(tumour_full).mean(axis=0)
        box = common.crop_box(hu_full, image.GetSpacing(), args.crop_mm, center=centre)
        crop = common.crop_image(image, box)
        hu = hu_full[box].astype(np.float32)
        tumour = tumour_full[box]
        body = metrics.body_mask(hu) | tumour
        spacing = common.spacing_zyx(image)
        case_table.add(case=name, box="×".join(map(str, hu.shape)),
                       spacing=", ".join(f"{s:.2f}" for s in image.GetSpacing()), tumour=int(tumour.sum()),
                       fraction=100.0 * tumour.sum() / body.sum(), floor=metrics.dice(body, tumour),
                       training=common.training_status(model, name))
        print(f"[{name}] box {hu.shape}, tumour {100.0 * tumour.sum() / body.sum():.1f} % of the body", flush=True)
        for method in METHODS:
            note = ""
            if method == "median_residual":
                amap, seconds = common.timed(lambda: median_residual(hu, spacing))
            elif method == "zscore":
                amap, seconds = common.timed(lambda: zscore(hu, body, spacing))
            elif engine is None:
                per_case.add(case=name, method=method, note="not available (no model)")
                continue
            else:
                from MedDiffFMLib import api

                kwargs = {"steps": args.steps} if args.steps else {}
                result, seconds = common.timed(lambda: api.anomaly_map(crop, engine=engine, **kwargs))
                amap = sitk.GetArrayFromImage(result).astype(np.float32)
                note = "default options"
            scores, labels = amap[body], tumour[body]
            best, threshold = metrics.best_dice(scores, labels)
            row = {"case": name, "method": method, "auroc": metrics.auroc(scores, labels), "dice": best,
                   "threshold": threshold, "seconds": seconds, "note": note}
            per_case.add(**row)
            results[method].append(row)
            print(f"  {method:16s} AUROC {row['auroc']:.3f} best Dice {best:.3f} ({seconds:.1f} s)", flush=True)

    summary = common.Table(f"Mean over {len(cases)} case(s)", [
        ("method", "method"), ("auroc", "AUROC", "{:.3f}"), ("dice", "best Dice", "{:.3f}"),
        ("seconds", "total s", "{:.1f}"), ("note", "note")])
    for method in METHODS:
        rows = results[method]
        if not rows:
            summary.add(method=method, note="not available (no model)")
            continue
        summary.add(method=method, auroc=float(np.mean([r["auroc"] for r in rows])),
                    dice=float(np.mean([r["dice"] for r in rows])), seconds=sum(r["seconds"] for r in rows))
    for t in (case_table, per_case, summary):
        t.print()
    if args.save:
        notes = ["Voxels inside the body only; best Dice uses an oracle threshold."]
        common.save_results("anomaly_quality", args, machine, model, [case_table, per_case, summary], notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

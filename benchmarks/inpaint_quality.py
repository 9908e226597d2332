"""Healthy-tissue inpainting quality: hide a sphere of normal tissue, fill it, compare with what was there.

For every case a sphere (``--radius-mm``, 15 mm) is placed at the deepest point of a normal tissue
(liver from the TotalSegmentator labels of the abdomen / chest scans; thigh muscle of the sarcoma
crops: 20-100 HU after a 3^3 median, at least 20 mm from the tumour), inside a box of ``--crop-mm``
around it. Each method fills the sphere from the rest of the box:

* biharmonic: ``skimage.restoration.inpaint_biharmonic`` in 3D (voxel units) on the sphere's
  bounding box plus a 4-voxel margin;
* shell mean: the mean HU of a 2-voxel shell around the sphere (a floor any method should beat on
  RMSE, and the texture-free answer);
* MedDiffFM: ``MedDiffFMLib.api.inpaint`` with its default options (RePaint with the base model),
  but for the region: the one the library guesses on the *whole* scan, as a user inpainting a loaded
  CT gets ("unknown" where that finds none, so the box is not guessed again). The box alone, cut
  from inside the body, has no skin edge to guess from (None), and a
  region-less fill follows the model's region-less prior: with the GPU-trained 1 mm model, mostly the
  sarcoma thigh crops, air (-728 HU in a 44 HU liver at 10 steps; 10 HU with the abdomen's region).

Scores inside the sphere against the original voxels: RMSE and MAE (HU), PSNR ([-1000, 1000] HU,
data range 2000), the mean error (bias, HU) and the std of the fill next to the std of the original
tissue (a fill with realistic texture has about the tissue's std; a smooth fill has ~0, which the
RMSE rewards: a real texture can never match voxel by voxel).

Usage: python -m benchmarks.inpaint_quality [--quick] [--model PATH | --config default] [--save]
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

DEFAULT_CASES = ["abdomen_3mm_small", "chest_upper_abdomen", "STS_034", "STS_035", "STS_036"]
QUICK_CASES = ["abdomen_3mm_small", "STS_034"]
RADIUS_MM = 15.0
CROP_MM = 128.0
METHODS = ["biharmonic", "shell_mean", "meddifffm"]


def tissue_mask(name: str, hu: np.ndarray) -> tuple[np.ndarray, str]:
    """Normal tissue to hide a sphere in: liver (labels) or muscle away from the tumour."""
    case = ct_cases.CASES[name]
    if "labels" in case.masks:
        labels = ct_cases.read_mask(name, "labels")
        return labels == ct_cases.TOTALSEG_LIVER, "liver"
    smooth = ndimage.median_filter(hu, size=3)
    muscle = (smooth >= 20) & (smooth <= 100)
    if "tumour" in case.masks:
        tumour = ct_cases.read_mask(name, "tumour") > 0
        muscle &= ~tumour
        return muscle, "muscle (20-100 HU, away from the tumour)"
    return muscle, "muscle (20-100 HU)"


def place_sphere(tissue: np.ndarray, spacing_zyx: np.ndarray, radius_mm: float,
                 avoid: Optional[np.ndarray] = None, avoid_mm: float = 20.0) -> tuple[np.ndarray, np.ndarray, float]:
    """(centre index, sphere mask, depth mm): the sphere at the point of ``tissue`` farthest from its
    boundary (and at least ``avoid_mm`` from ``avoid`` when possible)."""
    # Padded with background: tissue cut by the edge of the scan is not deep there.
    depth = ndimage.distance_transform_edt(np.pad(tissue, 1), sampling=spacing_zyx)[1:-1, 1:-1, 1:-1]
    if avoid is not None and avoid.any():
        far = ndimage.distance_transform_edt(~avoid, sampling=spacing_zyx) >= avoid_mm + radius_mm
        if (depth * far).max() > 0:
            depth = depth * far
    centre = np.array(np.unravel_index(int(np.argmax(depth)), depth.shape))
    zz, yy, xx = np.indices(tissue.shape, dtype=np.float32)
    r2 = sum(((g - c) * s) ** 2 for g, c, s in zip((zz, yy, xx), centre, spacing_zyx))
    return centre, r2 <= radius_mm**2, float(depth.max())


def biharmonic(hu: np.ndarray, mask: np.ndarray, margin: int = 4) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    from MedDiffFMLib.preprocessing.model_masks import region_of_interest

    box = region_of_interest(np.asarray(mask, bool), margin=(margin,) * 3, min_size=(0, 0, 0))
    out = hu.copy()
    out[box] = inpaint_biharmonic(hu[box].astype(np.float64), mask[box]).astype(np.float32)
    return out


def shell_mean(hu: np.ndarray, mask: np.ndarray, width: int = 2) -> np.ndarray:
    shell = ndimage.binary_dilation(mask, iterations=width) & ~mask
    out = hu.copy()
    out[mask] = float(hu[shell].mean())
    return out


def main(argv: Optional[list[str]] = None) -> int:
    from MedDiffFMLib.tasks.repaint import INITS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_options.add_common_args(parser, DEFAULT_CASES, QUICK_CASES)
    cli_options.add_engine_args(parser)
    parser.add_argument("--radius-mm", type=float, default=RADIUS_MM)
    parser.add_argument("--crop-mm", type=float, default=CROP_MM, help="box around the sphere given to every method")
    parser.add_argument("--steps", type=int, default=None, help="MedDiffFM sampler steps (default: the API default)")
    parser.add_argument("--init", choices=INITS, default=None,
                        help="what the mask starts from (default: the API default)")
    parser.add_argument("--start-step", type=int, default=None, help="MedDiffFM start step (default: the API default)")
    args = parser.parse_args(argv)
    cli_options.setup_threads(args)
    machine = reporting.machine_info(args.device)
    cases = ct_cases.parse_cases(args.cases, QUICK_CASES if args.quick else DEFAULT_CASES)
    model = model_setup.resolve_bench_model(args)
    reporting.print_header("Healthy inpainting quality (hidden sphere of normal tissue)", machine, model)
    engine, load_s = None, float("nan")
    if model.available:
        engine, load_s = timing.timed(lambda: model_setup.make_engine(model, args.device, **cli_options.engine_options(args)))
        print(f"Model loaded in {load_s:.1f} s (not included in the per-case seconds).")
    else:
        print(f"MedDiffFM: not available ({model.reason}).")

    case_table = reporting.Table("Cases", [("case", "case"), ("tissue", "tissue"), ("box", "box z×y×x"),
                                        ("spacing", "spacing mm (x,y,z)"), ("voxels", "voxels in sphere"),
                                        ("depth", "depth of centre mm", "{:.1f}"), ("std", "tissue std HU", "{:.1f}"),
                                        ("training", "model training")])
    per_case = reporting.Table("Per case (inside the sphere)", [
        ("case", "case"), ("method", "method"), ("rmse", "RMSE HU", "{:.1f}"), ("mae", "MAE HU", "{:.1f}"),
        ("psnr", "PSNR dB", "{:.2f}"), ("bias", "mean error HU", "{:+.1f}"), ("std", "fill std HU", "{:.1f}"),
        ("ref_std", "original std HU", "{:.1f}"), ("seconds", "s", "{:.2f}"), ("note", "note")])
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for name in cases:
        image = ct_cases.read_case(name)
        hu = sitk.GetArrayFromImage(image)
        spacing = ct_cases.spacing_zyx(image)
        tissue, tissue_name = tissue_mask(name, hu)
        avoid = ct_cases.read_mask(name, "tumour") > 0 if "tumour" in ct_cases.CASES[name].masks else None
        centre, sphere, depth = place_sphere(tissue, spacing, args.radius_mm, avoid)
        box = ct_cases.crop_box(hu, image.GetSpacing(), args.crop_mm, center=centre)
        crop = ct_cases.crop_image(image, box)
        original = hu[box].astype(np.float32)
        mask = sphere[box]
        ref = original[mask]
        case_table.add(case=name, tissue=tissue_name, box="×".join(map(str, original.shape)),
                       spacing=", ".join(f"{s:.2f}" for s in image.GetSpacing()), voxels=int(mask.sum()),
                       depth=depth, std=float(ref.std()), training=model_setup.training_status(model, name))
        print(f"[{name}] {tissue_name}: sphere of {int(mask.sum())} voxels, centre {depth:.1f} mm deep", flush=True)
        hidden = original.copy()
        hidden[mask] = 0.0  # nothing of the original survives inside the mask
        for method in METHODS:
            note = ""
            if method == "biharmonic":
                out, seconds = timing.timed(lambda: biharmonic(hidden, mask))
            elif method == "shell_mean":
                out, seconds = timing.timed(lambda: shell_mean(hidden, mask))
            elif engine is None:
                per_case.add(case=name, method=method, note="not available (no model)")
                continue
            else:
                from MedDiffFMLib import api

                kwargs = {k: v for k, v in (("steps", args.steps), ("init", args.init),
                                            ("start_step", args.start_step)) if v is not None}
                kwargs["region"] = ct_cases.whole_scan_region(image)  # see the module doc
                hidden_image = ct_cases.like(hidden, crop)
                mask_image = ct_cases.like(mask.astype(np.uint8), crop)
                result, seconds = timing.timed(lambda: api.inpaint(hidden_image, mask_image, engine=engine, **kwargs))
                out = sitk.GetArrayFromImage(result).astype(np.float32)
                given = ", ".join(f"{k} {v}" for k, v in kwargs.items() if k != "region") or "default options"
                note = f"{given}, region {kwargs['region']} (guessed on the whole scan)"
            fill = out[mask]
            row = {"case": name, "method": method, "rmse": metrics.rmse(ref, fill), "mae": metrics.mae(ref, fill),
                   "psnr": metrics.psnr(ref, fill), "bias": float(np.mean(fill - ref)), "std": float(fill.std()),
                   "ref_std": float(ref.std()), "seconds": seconds, "note": note}
            per_case.add(**row)
            results[method].append(row)
            print(f"  {method:10s} RMSE {row['rmse']:.1f} MAE {row['mae']:.1f} PSNR {row['psnr']:.2f} "
                  f"bias {row['bias']:+.1f} std {row['std']:.1f} ({seconds:.1f} s)", flush=True)

    summary = reporting.Table(f"Mean over {len(cases)} case(s) (sphere radius {args.radius_mm:g} mm)", [
        ("method", "method"), ("rmse", "RMSE HU", "{:.1f}"), ("mae", "MAE HU", "{:.1f}"), ("psnr", "PSNR dB", "{:.2f}"),
        ("bias", "mean error HU", "{:+.1f}"), ("std", "fill std HU", "{:.1f}"), ("ref_std", "original std HU", "{:.1f}"),
        ("seconds", "total s", "{:.1f}"), ("note", "note")])
    for method in METHODS:
        rows = results[method]
        if not rows:
            summary.add(method=method, note="not available (no model)")
            continue
        summary.add(method=method, seconds=sum(r["seconds"] for r in rows),
                    **{k: float(np.mean([r[k] for r in rows])) for k in ("rmse", "mae", "psnr", "bias", "std", "ref_std")})
    for t in (case_table, per_case, summary):
        t.print()
    if args.save:
        notes = ["All scores inside the hidden sphere only; PSNR over [-1000, 1000] HU."]
        reporting.save_results("inpaint_quality", args, machine, model, [case_table, per_case, summary], notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Lesion generation quality: hide a real tumour, generate a lesion in its mask, compare with the tumour.

Cases are the shared CT with a real tumour mask (``lung_tumour_5mm``, the sarcoma crops
``STS_001..036``); by default the sarcoma cases held out from the models' training (STS_034-036)
and the lung tumour (check the "model training" column: the starter's lesion ControlNet trained on
it). For every case:

1. Box: the tumour's bounding box plus ``--margin-mm`` (16 mm) of surrounding tissue on each side,
   clipped to the scan: the context every method sees. The runtime grows with the tumour's size
   (STS_034, 540 ml, is the slowest default case; ``--quick`` takes the two smallest).
2. Fill mask: the tumour mask dilated by ``--dilate-mm`` (3 mm, at least one voxel along every
   axis), so that the real tumour's rim (and on a coarse model grid its partial volume) does not
   leak into the fill. Inside it the input is replaced by the mean of a 2-voxel shell around it, so
   nothing of the real tumour reaches any method.
3. Each method fills the fill mask; the voxels inside the *original* tumour mask are compared with
   the real tumour's voxels there, by distribution and texture (a generated lesion is a new sample,
   so never voxel by voxel):

   * mean HU of the fill next to the tumour's, and ``|Δ mean|`` (HU);
   * std ratio: std(fill) / std(tumour) (1 = the same spread, 0 = a flat fill);
   * W1: 1D Wasserstein distance between the two HU distributions (HU; 0 = the same histogram);
   * gradient ratio: mean in-plane gradient magnitude (HU/mm) inside the mask, one voxel in from
     its in-plane edge, fill / tumour (fine texture; 1 = as rough as the tumour, 0 = flat);
   * GLCM contrast ratio: grey-level co-occurrence contrast (skimage, neighbours at 1 voxel
     in-plane, pairs inside the mask only), fill / tumour, both quantised to the same 32 levels
     spanning the 1st-99th HU percentiles of tumour and fill together (so that a fill far from the
     tumour's HU is not clipped flat; contrast scales with the square of the level width, so the
     ratio hardly depends on that span).

   The mean table adds "texture error": the mean over cases of abs(ln gradient ratio) (0 = the
   tumour's roughness, twice and half as rough score alike, a flat fill is infinitely far). A
   better lesion model lowers abs Δ mean, W1 and the texture error.

Methods (rows):

* ``shell_mean``: the mask filled with the shell mean (the input every other method gets): what
  a texture-free fill gives;
* ``tumour_stats_noise`` (a reference, not a method: it reads the real tumour): the real tumour's
  mean plus white Gaussian noise of its std. It matches mean and std by construction, so it shows
  what the texture figures say of a fill with the right histogram but no spatial structure;
* ``healthy_inpaint``: ``MedDiffFMLib.api.inpaint`` with the lesion ControlNet's own base model
  (RePaint, no ControlNet): what the ControlNet adds over healthy tissue;
* ``meddifffm``: ``MedDiffFMLib.api.generate_lesion`` with its default options (lesion ControlNet
  + RePaint, 50 steps, seed 0) but for the region: the one guessed on the whole scan, "unknown"
  where that finds none (the sarcoma thighs, as their training cases had no region), never a guess
  on the tumour's box (STS_035's reads as head and neck, a narrow window the tumour is clipped by);
* with ``--compare-model PATH``: ``meddifffm_compare`` and ``healthy_inpaint_compare``, the same
  for a second lesion ControlNet (and its base), so that two models sit in one table.

Cost: each model row samples the box around the fill mask on the model's grid. On the 2-core CPU
with one torch thread, the 3 mm starter takes 20-50 s per row and case at 50 steps; a 1 mm model
(80^3 patches) about 12 s per step per row and case (~10 min at 50 steps). ``--steps N`` sets the
steps of every model row (the comparison stays like for like) and ``--skip-healthy`` drops the
healthy_inpaint rows.

Model selection: ``--model`` / ``--compare-model`` take a lesion ControlNet folder; its base is found
the way the library finds it (a sibling folder named in the ControlNet's config, else the
registry), and must have the sha256 the ControlNet was trained on. E.g. today's CPU starter pair
extracted at /tmp/old_models: ``--model /tmp/old_models/Resources/Models/meddifffm-lesion``.

Usage: python -m benchmarks.lesion_quality [--quick] [--model LESION_CONTROLNET | --config tiny]
       [--compare-model LESION_CONTROLNET] [--save]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from benchmarks.common import cli_options, ct_cases, metrics, model_setup, reporting, timing
from benchmarks.inpaint_quality import shell_mean

DEFAULT_CASES = ["lung_tumour_5mm", "STS_034", "STS_035", "STS_036"]
QUICK_CASES = ["lung_tumour_5mm", "STS_035"]
MARGIN_MM = 16.0
DILATE_MM = 3.0
GLCM_LEVELS = 32
REFERENCE = "tumour_stats_noise"
SCORES = ("mean", "abs_mean", "std_ratio", "w1", "grad_ratio", "glcm_ratio")


# ---------------------------------------------------------------------------------------------
# Case preparation.
# ---------------------------------------------------------------------------------------------


def tumour_box(mask: np.ndarray, spacing_zyx, margin_mm: float) -> tuple[slice, slice, slice]:
    """The (z, y, x) bounding box of ``mask`` plus ``margin_mm`` on every side, clipped to the volume."""
    from MedDiffFMLib.preprocessing.model_masks import region_of_interest

    if not np.any(mask):
        raise SystemExit("The tumour mask is empty.")
    pad = [int(math.ceil(margin_mm / s)) for s in spacing_zyx]
    return region_of_interest(np.asarray(mask, bool), margin=pad, min_size=(0, 0, 0))


def dilate_mm(mask: np.ndarray, spacing_zyx, mm: float) -> np.ndarray:
    """``mask`` grown by ``mm`` (an ellipsoid of radius max(1, round(mm / spacing)) voxels per axis)."""
    if mm <= 0:
        return np.asarray(mask, bool)
    radius = [max(1, int(round(mm / s))) for s in spacing_zyx]
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g / r) ** 2 for g, r in zip(grids, radius)) <= 1.0
    return ndimage.binary_dilation(mask, structure=ball)


def hu_range_of(values: np.ndarray) -> tuple[float, float]:
    """The GLCM's grey-level range: the 1st-99th HU percentiles of ``values`` (tumour and fill together)."""
    lo, hi = np.percentile(values, [1.0, 99.0])
    return float(lo), float(max(hi, lo + 1.0))


def stats_noise(hidden: np.ndarray, mask: np.ndarray, real_values: np.ndarray, seed: int = 0) -> np.ndarray:
    """The reference fill: real mean + white Gaussian noise of the real std."""
    rng = np.random.default_rng(seed)
    out = hidden.copy()
    out[mask] = rng.normal(float(real_values.mean()), float(real_values.std()), int(mask.sum())).astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------
# Scores.
# ---------------------------------------------------------------------------------------------


class RealTumour:
    """The real tumour's statistics that every fill of a case is compared with."""

    def __init__(self, hu: np.ndarray, mask: np.ndarray, spacing_zyx) -> None:
        self.mask = mask
        self.spacing_yx = tuple(spacing_zyx[1:])
        self.values = hu[mask].astype(np.float64)
        self.mean = float(self.values.mean())
        self.std = float(self.values.std())
        self.gradient = metrics.mean_gradient_axial(hu, mask, self.spacing_yx)
        self.hu = hu


def lesion_scores(real: RealTumour, filled: np.ndarray) -> dict[str, float]:
    """The fill inside the tumour mask next to the real tumour (see the module docstring)."""
    values = filled[real.mask].astype(np.float64)
    gradient = metrics.mean_gradient_axial(filled, real.mask, real.spacing_yx)
    hu_range = hu_range_of(np.concatenate([real.values, values]))
    contrast = metrics.glcm_axial(filled, real.mask, hu_range, GLCM_LEVELS)["contrast"]
    real_contrast = metrics.glcm_axial(real.hu, real.mask, hu_range, GLCM_LEVELS)["contrast"]
    return {
        "mean": float(values.mean()),
        "abs_mean": abs(float(values.mean()) - real.mean),
        "std_ratio": metrics.std_ratio(real.values, values),
        "w1": metrics.wasserstein_hu(real.values, values),
        "grad_ratio": gradient / real.gradient if real.gradient > 0 else float("nan"),
        "glcm_ratio": contrast / real_contrast if real_contrast > 0 else float("nan"),
    }


def texture_error(ratio: float) -> float:
    """|ln ratio|: 0 at the tumour's texture, the same for twice and half as rough, inf for flat."""
    if not np.isfinite(ratio) or ratio < 0:
        return float("nan")
    return float("inf") if ratio == 0 else abs(math.log(ratio))


# ---------------------------------------------------------------------------------------------
# Models.
# ---------------------------------------------------------------------------------------------


class LesionModel:
    """A lesion ControlNet and its base, with their engines loaded once for every case."""

    def __init__(self, label: str, model: model_setup.BenchModel, device: str, options: dict, healthy: bool = True) -> None:
        self.label = label
        self.model = model
        self.base = model_setup.controlnet_base(model)
        self.healthy = healthy
        self.lesion_engine = self.base_engine = None
        self.grid = ""
        if model.available and self.base.available:  # (base unavailable: its reason is in self.base)
            from MedDiffFMLib.models.registry import resolve_model

            config = resolve_model(model.ref).model_config
            self.grid = (f"{'x'.join(f'{v:g}' for v in config.spacing_mm)} mm grid, "
                         f"{'x'.join(map(str, config.patch_size))} patches")
            self.lesion_engine, seconds = timing.timed(
                lambda: model_setup.make_engine(model, device, role="lesion", **options))
            print(f"[{label}] lesion ControlNet loaded in {seconds:.1f} s: {model.describe()}", flush=True)
        if self.base.available and healthy:
            self.base_engine, seconds = timing.timed(lambda: model_setup.make_engine(self.base, device, **options))
            print(f"[{label}] its base loaded in {seconds:.1f} s: {self.base.describe()}", flush=True)

    def rows(self, options: str = "default options") -> list[tuple[str, str, Optional[object]]]:
        """(method, note, engine) of this model's rows: the lesion ControlNet, then its base alone."""
        suffix = "" if self.label == "model" else "_compare"
        why = self.model.reason or self.base.reason
        rows = [(f"meddifffm{suffix}", f"{self.model.name}, {options}" if self.lesion_engine else why,
                 self.lesion_engine)]
        if self.healthy:
            rows.append((f"healthy_inpaint{suffix}",
                         f"base {self.base.name}, {options}" if self.base_engine else why, self.base_engine))
        return rows


def run_model(method: str, engine, hidden_image: sitk.Image, fill: np.ndarray, steps: Optional[int],
              region: str) -> np.ndarray:
    from MedDiffFMLib import api

    kwargs = {"steps": steps} if steps else {}
    kwargs["region"] = region
    mask_image = ct_cases.like(fill.astype(np.uint8), hidden_image)
    run = api.generate_lesion if method.startswith("meddifffm") else api.inpaint
    result = run(hidden_image, mask_image, engine=engine, **kwargs)
    return sitk.GetArrayFromImage(result).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_options.add_common_args(parser, DEFAULT_CASES, QUICK_CASES)
    cli_options.add_engine_args(parser)
    parser.add_argument("--compare-model", default=None,
                        help="a second lesion ControlNet folder, scored in the same run (rows *_compare)")
    parser.add_argument("--margin-mm", type=float, default=MARGIN_MM, help="context around the tumour's bounding box")
    parser.add_argument("--dilate-mm", type=float, default=DILATE_MM, help="growth of the tumour mask to fill")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampler steps of every model row (default: the API default, 50)")
    parser.add_argument("--skip-healthy", action="store_true",
                        help="leave out the healthy_inpaint rows (halves the model time)")
    args = parser.parse_args(argv)
    tumour_cases = [n for n, c in ct_cases.CASES.items() if "tumour" in c.masks]
    cases = ct_cases.parse_cases(args.cases, QUICK_CASES if args.quick else DEFAULT_CASES)
    if [n for n in cases if n not in tumour_cases]:
        raise SystemExit(f"Cases without a tumour mask: {[n for n in cases if n not in tumour_cases]}. "
                         f"Use lung_tumour_5mm or STS_001..STS_036.")
    cli_options.setup_threads(args)
    machine = reporting.machine_info(args.device)
    model = model_setup.resolve_bench_model(args, role="lesion")
    reporting.print_header("Lesion generation quality (real tumour hidden, lesion generated in its mask)", machine, model)
    options = cli_options.engine_options(args)
    healthy = not args.skip_healthy
    models = [LesionModel("model", model, args.device, options, healthy)]
    if args.compare_model:
        models.append(LesionModel("compare", model_setup.bench_model(args.compare_model, "lesion"), args.device, options,
                                  healthy))
    methods: list[tuple[str, str, Optional[object]]] = [("shell_mean", "texture-free fill", None),
                                                         (REFERENCE, "reference: reads the real tumour", None)]
    run_options = f"{args.steps} steps, other options default" if args.steps else "default options"
    for m in models:
        methods += m.rows(run_options)

    model_table = reporting.Table("Models", [("label", "rows"), ("name", "lesion ControlNet"), ("grid", "grid"),
                                          ("base", "base model"), ("trained", "trained"), ("path", "path")])
    for m in models:
        model_table.add(label=", ".join(r[0] for r in m.rows()), name=m.model.name or "none", grid=m.grid,
                        base=m.base.name or f"none ({m.base.reason})",
                        trained="yes" if m.model.trained else ("no" if m.model.available else "–"),
                        path=m.model.ref or m.model.reason)
    case_table = reporting.Table("Cases", [
        ("case", "case"), ("box", "box z×y×x"), ("spacing", "spacing mm (x,y,z)"), ("voxels", "tumour voxels"),
        ("ml", "tumour ml", "{:.0f}"), ("filled", "filled voxels"), ("mean", "tumour mean HU", "{:.1f}"),
        ("std", "tumour std HU", "{:.1f}"), ("grad", "tumour gradient HU/mm", "{:.1f}"),
        ("region", "region"), ("training", "model training")]
        + ([("training_compare", "compare model training")] if args.compare_model else []))
    columns = [("method", "method"), ("mean", "mean HU", "{:.1f}"), ("abs_mean", "abs Δ mean HU", "{:.1f}"),
               ("std_ratio", "std ratio", "{:.2f}"), ("w1", "W1 HU", "{:.1f}"),
               ("grad_ratio", "gradient ratio", "{:.2f}"), ("glcm_ratio", "GLCM contrast ratio", "{:.2f}")]
    per_case = reporting.Table("Per case (inside the real tumour mask; ratios: fill / tumour)",
                            [("case", "case")] + columns + [("seconds", "s", "{:.1f}"), ("note", "note")])
    results: dict[str, list[dict]] = {name: [] for name, _, _ in methods}
    for name in cases:
        image = ct_cases.read_case(name)
        hu = sitk.GetArrayFromImage(image)
        spacing = ct_cases.spacing_zyx(image)
        tumour_full = ct_cases.read_mask(name, "tumour") > 0
        box = tumour_box(tumour_full, spacing, args.margin_mm)
        crop = ct_cases.crop_image(image, box)
        original = hu[box].astype(np.float32)
        tumour = tumour_full[box]
        fill = dilate_mm(tumour, spacing, args.dilate_mm)
        real = RealTumour(original, tumour, spacing)
        region = ct_cases.whole_scan_region(image)
        hidden = shell_mean(original, fill)  # nothing of the real tumour survives inside the fill mask
        hidden_image = ct_cases.like(hidden, crop)
        row = dict(case=name, box="×".join(map(str, original.shape)),
                   spacing=", ".join(f"{s:.2f}" for s in image.GetSpacing()), voxels=int(tumour.sum()),
                   ml=float(tumour.sum() * np.prod(spacing) / 1000.0), filled=int(fill.sum()), mean=real.mean,
                   std=real.std, grad=real.gradient, region=region, training=model_setup.training_status(model, name))
        if args.compare_model:
            row["training_compare"] = model_setup.training_status(models[1].model, name)
        case_table.add(**row)
        print(f"[{name}] region {region} (guessed on the whole scan); box {original.shape}, tumour "
              f"{int(tumour.sum())} voxels (mean {real.mean:.1f} HU, std {real.std:.1f}, gradient "
              f"{real.gradient:.1f} HU/mm), fill {int(fill.sum())} voxels", flush=True)
        for method, note, engine in methods:
            if method == "shell_mean":
                out, seconds = hidden, 0.0
            elif method == REFERENCE:
                out, seconds = timing.timed(lambda: stats_noise(hidden, fill, real.values))
            elif engine is None:
                per_case.add(case=name, method=method, note=f"not available ({note})")
                continue
            else:
                out, seconds = timing.timed(lambda: run_model(method, engine, hidden_image, fill, args.steps, region))
            scores = lesion_scores(real, out)
            per_case.add(case=name, method=method, seconds=seconds, note=note, **scores)
            results[method].append({**scores, "seconds": seconds})
            print(f"  {method:24s} mean {scores['mean']:7.1f} abs Δ {scores['abs_mean']:6.1f} "
                  f"std× {scores['std_ratio']:.2f} W1 {scores['w1']:6.1f} grad× {scores['grad_ratio']:.2f} GLCM× {scores['glcm_ratio']:.2f} "
                  f"({seconds:.1f} s)", flush=True)

    summary = reporting.Table(
        f"Mean over {len(cases)} case(s) (margin {args.margin_mm:g} mm, fill = tumour + {args.dilate_mm:g} mm)",
        columns[:1] + columns[2:] + [("texture", "texture error (abs ln gradient ratio)", "{:.2f}"),
                                     ("seconds", "total s", "{:.1f}"), ("note", "note")])
    for method, note, _ in methods:
        rows = results[method]
        if not rows:
            summary.add(method=method, note=f"not available ({note})")
            continue
        means = {k: float(np.mean([r[k] for r in rows])) for k in SCORES if k != "mean"}
        summary.add(method=method, texture=float(np.mean([texture_error(r["grad_ratio"]) for r in rows])),
                    seconds=sum(r["seconds"] for r in rows), note=note, **means)
    for t in (model_table, case_table, per_case, summary):
        t.print()
    if args.save:
        notes = ["Scores inside the real tumour mask only; the methods fill the mask dilated by "
                 f"{args.dilate_mm:g} mm, given a box of the tumour's bounding box + {args.margin_mm:g} mm with the "
                 "fill mask set to its shell mean. Ratios are fill / real tumour (1 = a match); "
                 f"{REFERENCE} is a reference that reads the real tumour, not a method."]
        reporting.save_results("lesion_quality", args, machine, model, [model_table, case_table, per_case, summary], notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

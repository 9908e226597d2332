"""Denoising quality: simulated low-dose CT, classical denoisers vs MedDiffFM, scored against the scan.

For every case a box of real CT (``--crop-mm``, around the body's centroid) gets low-dose noise
simulated in the sinogram domain (benchmarks/common/lowdose.py: Poisson noise on the transmitted photons of
each full axial slice, FBP of the noise), with the incident flux I0 calibrated per case so that
about ``--noise-hu`` (35) HU of noise std is added in soft tissue; the measured std is printed.
Each denoiser gets the noisy box and is scored against the original box:

* PSNR (dB): both images clipped to [-1000, 1000] HU, data range 2000 HU, over the whole box;
* SSIM: mean over axial slices of the 2D SSIM (Gaussian window sigma 1.5 px) in the soft-tissue
  window W400/L40 ([-160, 240] HU -> [0, 1]);
* RMSE (HU) inside the soft-tissue mask of the clean box ([-150, 250] HU after a 3^3 median, eroded
  one voxel in-plane);
* seconds and Mvox/s of the denoiser alone (the model load is reported once, separately).

Denoisers (parameters tuned once with ``--tune`` on lidc_chest_1mm, which is not an evaluation case;
the grid and its result are printed by that mode and recorded in benchmarks/README.md):

* Gaussian smoothing, sigma in mm (per axis sigma / spacing voxels);
* anisotropic diffusion (Perona-Malik): SimpleITK's GradientAnisotropicDiffusion, i.e. ITK's
  Perona-Malik filter with image spacing (time step = 0.9 x the stable limit min spacing / 16),
  conductance and diffusion time (mm^2) tuned;
* non-local means: skimage.restoration.denoise_nl_means in 3D (fast mode, 5^3 patches, search
  distance 5 voxels), sigma estimated blindly from the noisy image with the estimator MedDiffFM
  itself uses (see :func:`estimated_sigma`), h = factor x sigma;
* BM4D (PyPI ``bm4d``, profile 'np', all stages) with the same estimated sigma (if installed);
* MedDiffFM: ``MedDiffFMLib.api.denoise`` with its default options (DiffPIR, 5 steps, noise
  estimated from the image, region guessed);
* oracle_model_grid (not a method, a ceiling): the clean scan's model-grid image returned as input
  + the change resampled to the input grid (the library's denoising way back until 2026-11-26). Noise
  finer than the model grid survives that way back, so no model could score better than this row;
* oracle_model_grid_replace (a ceiling too): the perfect model-grid image resampled onto the input
  grid instead (no fine noise comes back, nor any detail finer than the grid): the ceiling of the way
  denoising now goes back, before it adds the input's fine band through a local Wiener gain.

The "clean" scans are real clinical CT and carry their own noise (the sarcoma crops come from the
CT of PET/CT and are noisy); the table prints each case's own noise estimate: no method can score
better than that noise allows.

Usage: python -m benchmarks.denoise_quality [--quick] [--model PATH | --config default] [--save]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks.common import cli_options, ct_cases, metrics, model_setup, reporting, timing
from benchmarks.common.baselines import GAUSSIAN_SIGMA_MM, bm4d_available, bm4d_denoise, estimated_sigma, gaussian, nlm
from benchmarks.common.lowdose import DEFAULT_TARGET_STD_HU, added_std, calibrate_i0, simulate_low_dose

DEFAULT_CASES = ["lung_tumour_5mm", "abdomen_pelvis_3mm", "cta_aorta_crop", "STS_034", "STS_035", "STS_036"]
QUICK_CASES = ["lung_tumour_5mm", "STS_034"]
TUNE_CASE = "lidc_chest_1mm"
CROP_MM = 128.0
QUICK_CROP_MM = 80.0

# Tuned with --tune on lidc_chest_1mm (64 mm box, ~35 HU added), best SSIM; see benchmarks/README.md.
AD_CONDUCTANCE = 1.0
AD_TIME_MM2 = 0.25
METHODS = ["noisy", "gaussian", "aniso_diffusion", "nlm", "bm4d", "meddifffm", "oracle_model_grid",
           "oracle_model_grid_replace"]
UNTIMED = ("noisy", "oracle_model_grid", "oracle_model_grid_replace")


# ---------------------------------------------------------------------------------------------
# Baseline denoisers: (noisy HU (z, y, x), spacing (x, y, z)) -> denoised HU.
# ---------------------------------------------------------------------------------------------


def aniso_diffusion(noisy: np.ndarray, spacing_xyz, conductance: float = AD_CONDUCTANCE,
                    time_mm2: float = AD_TIME_MM2) -> np.ndarray:
    # Perona-Malik from ITK (SimpleITK ships it): spacing-aware, multi-threaded, no extra package.
    image = sitk.GetImageFromArray(noisy.astype(np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    limit = 0.9 * min(spacing_xyz) / 2 ** (3 + 1)
    iterations = max(1, int(math.ceil(time_mm2 / limit)))
    out = sitk.GradientAnisotropicDiffusion(image, timeStep=time_mm2 / iterations,
                                            conductanceParameter=float(conductance),
                                            conductanceScalingUpdateInterval=1, numberOfIterations=iterations)
    return sitk.GetArrayFromImage(out)


def _model_spaces(case: "NoisyCase", engine):
    from MedDiffFMLib.models.config import named_config
    from MedDiffFMLib.preprocessing import HUWindow, ModelSpace, guess_region

    config = engine.config if engine is not None else named_config("default")
    region = guess_region(case.noisy_image)
    level, width = config.window_for(region)
    window = HUWindow(level, width)
    spacing = config.spacing_mm[::-1]
    noisy_space = ModelSpace.from_image(case.noisy_image, spacing, window, min_size=config.patch_size)
    clean_space = ModelSpace.from_image(case.clean_image, spacing, window, min_size=config.patch_size)
    grid = "x".join(f"{v:g}" for v in config.spacing_mm)
    return noisy_space, clean_space, f"{grid} mm model grid, {region} window"


def oracle_model_grid_replace(case: "NoisyCase", engine) -> tuple[np.ndarray, str]:
    """The other way back, for comparison: the perfect model-grid image itself, resampled (linear)
    onto the input grid, voxels outside the HU window from the input: no fine noise returns, but
    no detail finer than the model grid either."""
    from MedDiffFMLib.preprocessing import resample_like

    noisy_space, clean_space, label = _model_spaces(case, engine)
    crop = tuple(slice(a, a + n) for (a, _), n in zip(noisy_space.padding, noisy_space.model_geometry.shape))
    hu = clean_space.window.model_to_hu(clean_space.model_array[crop])
    image = sitk.GetImageFromArray(hu.astype(np.float32))
    g = noisy_space.model_geometry
    image.SetSpacing(g.spacing)
    image.SetOrigin(g.origin)
    image.SetDirection(g.direction)
    out = sitk.GetArrayFromImage(resample_like(image, case.noisy_image, "linear", 0.0, extrapolate=True))
    window = noisy_space.window
    outside = (case.noisy < window.low) | (case.noisy > window.high)
    out[outside] = case.noisy[outside]
    return out.astype(np.float32), f"ceiling of replacing, before the fine band ({label})"


def oracle_model_grid(case: "NoisyCase", engine) -> tuple[np.ndarray, str]:
    """Not a denoiser: the ceiling of any denoiser that works on the model grid and returns its
    result the library's way (input + the change resampled to the input grid, as
    ``ModelSpace.to_input_grid`` does). The clean scan's model-grid image stands in for a perfect
    model output, so what remains is the noise finer than the model grid, which the way back keeps."""
    noisy_space, clean_space, label = _model_spaces(case, engine)
    out = noisy_space.to_input_grid(clean_space.model_array)
    return sitk.GetArrayFromImage(out).astype(np.float32), f"ceiling of input + change ({label})"


# ---------------------------------------------------------------------------------------------
# Cases.
# ---------------------------------------------------------------------------------------------


class NoisyCase:
    """A clean box of real CT, its simulated low-dose copy and the soft-tissue mask."""

    def __init__(self, name: str, crop_mm: float, target_std: float, seed: int, i0: Optional[float] = None,
                 views: Optional[int] = None) -> None:
        image = ct_cases.read_case(name)
        hu = sitk.GetArrayFromImage(image)
        spacing = image.GetSpacing()
        box = ct_cases.crop_box(hu, spacing, crop_mm)
        self.name = name
        self.box = box
        self.spacing = spacing
        self.clean_image = ct_cases.crop_image(image, box)
        self.clean = hu[box].astype(np.float32)
        self.soft = metrics.soft_tissue_mask(self.clean)
        # Noise is simulated on the full axial slices (the whole body attenuates the rays), then cropped.
        key = f"{name}_{crop_mm:g}mm_{target_std:g}hu_seed{seed}_i0{i0 or 'cal'}_v{views or 'n'}.npz"
        cached = ct_cases.cache_dir() / "lowdose" / key
        if cached.is_file():
            data = np.load(cached)
            noise, self.i0, self.views = data["noise"], float(data["i0"]), int(data["views"])
        else:
            slab = hu[box[0]]
            slab_mask = np.zeros(slab.shape, bool)
            slab_mask[:, box[1], box[2]] = self.soft
            if i0 is None:
                i0, _ = calibrate_i0(slab, spacing, slab_mask, target_std, n_views=views, seed=seed + 1)
            low = simulate_low_dose(slab, spacing, i0, seed=seed, n_views=views)
            noise, self.i0, self.views = low.noise[:, box[1], box[2]], low.i0, low.n_views
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cached, noise=noise, i0=self.i0, views=self.views)
        self.noisy = (self.clean + noise).astype(np.float32)
        self.added_std = added_std(noise, self.soft)
        self.noisy_image = ct_cases.like(self.noisy, self.clean_image)

    @property
    def voxels(self) -> int:
        return int(self.clean.size)


def score(case: NoisyCase, output: np.ndarray) -> dict:
    return {
        "psnr": metrics.psnr(case.clean, output),
        "ssim": metrics.ssim_axial(case.clean, output),
        "rmse": metrics.rmse(case.clean, output, case.soft),
    }


def run_method(method: str, case: NoisyCase, engine, steps: Optional[int] = None) -> tuple[Optional[np.ndarray], float, str]:
    """(output, seconds, note); output None when the method is unavailable."""
    spacing = case.spacing
    if method == "noisy":
        return case.noisy, 0.0, ""
    if method == "gaussian":
        out, s = timing.timed(lambda: gaussian(case.noisy, spacing))
        return out, s, f"sigma {GAUSSIAN_SIGMA_MM} mm"
    if method == "aniso_diffusion":
        out, s = timing.timed(lambda: aniso_diffusion(case.noisy, spacing))
        return out, s, f"K {AD_CONDUCTANCE}, t {AD_TIME_MM2} mm^2"
    if method in ("nlm", "bm4d"):
        if method == "bm4d" and not bm4d_available():
            return None, float("nan"), "not available (pip install bm4d)"
        fn: Callable = nlm if method == "nlm" else bm4d_denoise

        def call():
            sigma = estimated_sigma(case.noisy)
            return fn(case.noisy, spacing, sigma=sigma), sigma

        (out, sigma), s = timing.timed(call)
        return out, s, f"sigma est. {sigma:.1f} HU"
    if method in ("oracle_model_grid", "oracle_model_grid_replace"):
        fn = oracle_model_grid if method == "oracle_model_grid" else oracle_model_grid_replace
        out, note = fn(case, engine)
        return out, float("nan"), note
    if method == "meddifffm":
        if engine is None:
            return None, float("nan"), "not available (no model)"
        from MedDiffFMLib import api

        kwargs = {"steps": steps} if steps else {}
        result, s = timing.timed(lambda: api.denoise(case.noisy_image, engine=engine, **kwargs))
        return sitk.GetArrayFromImage(result).astype(np.float32), s, f"{steps} steps" if steps else "default options"
    raise ValueError(method)


# ---------------------------------------------------------------------------------------------
# Tuning mode.
# ---------------------------------------------------------------------------------------------


def tune(args: argparse.Namespace, machine: dict) -> list[reporting.Table]:
    case = NoisyCase(TUNE_CASE, args.tune_crop_mm, args.noise_hu, args.seed, views=args.views)
    print(f"Tuning on {TUNE_CASE}: box {case.clean.shape} voxels, added std {case.added_std:.1f} HU "
          f"(I0 {case.i0:.3g}); the best SSIM (soft-tissue window) wins.")
    table = reporting.Table(f"Baseline tuning on {TUNE_CASE} ({args.tune_crop_mm:.0f} mm box, {case.added_std:.1f} HU "
                         "added)", [("method", "method"), ("params", "parameters"), ("psnr", "PSNR dB", "{:.2f}"),
                                    ("ssim", "SSIM", "{:.4f}"), ("rmse", "RMSE soft HU", "{:.1f}"),
                                    ("seconds", "s", "{:.1f}")])
    noisy = score(case, case.noisy)
    table.add(method="noisy", params="", seconds=0.0, **noisy)
    print(f"  noisy            {'':20s} PSNR {noisy['psnr']:.2f} SSIM {noisy['ssim']:.4f} RMSE {noisy['rmse']:.1f}")
    grids: list[tuple[str, str, Callable[[], np.ndarray]]] = []
    for sigma in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0):
        grids.append(("gaussian", f"sigma {sigma} mm", lambda s=sigma: gaussian(case.noisy, case.spacing, s)))
    for k in (0.25, 0.5, 1.0, 2.0):
        for t in (0.1, 0.25, 0.5, 1.0):
            grids.append(("aniso_diffusion", f"K {k}, t {t} mm^2",
                          lambda k=k, t=t: aniso_diffusion(case.noisy, case.spacing, k, t)))
    sigma = estimated_sigma(case.noisy)
    print(f"estimated sigma: {sigma:.1f} HU (added {case.added_std:.1f} HU)")
    for h in (0.3, 0.4, 0.5, 0.6, 0.8):
        grids.append(("nlm", f"h {h} x sigma", lambda h=h: nlm(case.noisy, case.spacing, h, sigma)))
    if bm4d_available() and not args.quick:
        for f in (0.75, 1.0, 1.25):
            grids.append(("bm4d", f"sigma x {f}", lambda f=f: bm4d_denoise(case.noisy, case.spacing, f, sigma)))
    best: dict[str, dict[str, tuple[float, str]]] = {}
    for method, params, fn in grids:
        out, seconds = timing.timed(fn)
        metrics = score(case, out)
        table.add(method=method, params=params, seconds=seconds, **metrics)
        print(f"  {method:16s} {params:20s} PSNR {metrics['psnr']:.2f} SSIM {metrics['ssim']:.4f} "
              f"RMSE {metrics['rmse']:.1f} ({seconds:.1f} s)", flush=True)
        for key, sign in (("ssim", 1.0), ("psnr", 1.0), ("rmse", -1.0)):
            current = best.setdefault(method, {}).get(key)
            if current is None or sign * metrics[key] > sign * current[0]:
                best[method][key] = (metrics[key], params)
    summary = reporting.Table("Best parameters per metric (the SSIM choice is used)",
                           [("method", "method"), ("ssim", "best SSIM: parameters"), ("psnr", "best PSNR: parameters"),
                            ("rmse", "best RMSE: parameters")])
    for method, per_metric in best.items():
        summary.add(method=method, **{k: f"{v[1]} ({v[0]:.4g})" for k, v in per_metric.items()})
    return [table, summary]


# ---------------------------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------------------------


def write_png(path: Path, case: NoisyCase, outputs: dict[str, np.ndarray]) -> None:
    from PIL import Image, ImageDraw

    k = case.clean.shape[0] // 2
    tiles = [("clean", case.clean)] + list(outputs.items())
    size = 256
    canvas = Image.new("L", (size * len(tiles), size + 14), 0)
    draw = ImageDraw.Draw(canvas)
    for i, (name, vol) in enumerate(tiles):
        img = np.clip((vol[k] - metrics.SSIM_WINDOW[0]) / (metrics.SSIM_WINDOW[1] - metrics.SSIM_WINDOW[0]), 0, 1)
        canvas.paste(Image.fromarray((img * 255).astype(np.uint8)).resize((size, size)), (i * size, 14))
        draw.text((i * size + 4, 1), name, fill=255)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_options.add_common_args(parser, DEFAULT_CASES, QUICK_CASES)
    cli_options.add_engine_args(parser)
    parser.add_argument("--noise-hu", type=float, default=DEFAULT_TARGET_STD_HU,
                        help="target std (HU) of the added noise in soft tissue (I0 calibrated per case)")
    parser.add_argument("--i0", type=float, default=None, help="fixed incident photons per ray instead of calibrating")
    parser.add_argument("--views", type=int, default=None, help="projection angles (default: one per pixel row)")
    parser.add_argument("--crop-mm", type=float, default=None, help=f"box size (default {CROP_MM:.0f}, quick "
                                                                    f"{QUICK_CROP_MM:.0f})")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None,
                        help="MedDiffFM sampler steps (default: the API default); for steps-vs-quality studies")
    parser.add_argument("--tune", action="store_true", help=f"grid-search the baselines' parameters on {TUNE_CASE}")
    parser.add_argument("--tune-crop-mm", type=float, default=64.0, help="box of the tuning case (mm)")
    parser.add_argument("--png", type=Path, default=None, help="write a mid-slice montage per case into this folder")
    args = parser.parse_args(argv)
    cli_options.setup_threads(args)
    machine = reporting.machine_info(args.device)

    if args.tune:
        reporting.print_header("Denoising baselines: parameter tuning", machine)
        tables = tune(args, machine)
        for t in tables:
            t.print()
        if args.save:
            reporting.save_results("denoise_tuning", args, machine, None, tables)
        return 0

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}")
    cases = ct_cases.parse_cases(args.cases, QUICK_CASES if args.quick else DEFAULT_CASES)
    crop_mm = args.crop_mm or (QUICK_CROP_MM if args.quick else CROP_MM)
    model = model_setup.resolve_bench_model(args) if "meddifffm" in methods else None
    reporting.print_header("Denoising quality (simulated low-dose CT)", machine, model)

    engine, load_s = None, float("nan")
    if model is not None and model.available:
        engine, load_s = timing.timed(lambda: model_setup.make_engine(model, args.device, **cli_options.engine_options(args)))
        print(f"Model loaded in {load_s:.1f} s (not included in the per-case seconds).")
    elif model is not None:
        print(f"MedDiffFM: not available ({model.reason}).")

    case_table = reporting.Table("Cases (low-dose noise simulated per case)", [
        ("case", "case"), ("shape", "box z×y×x"), ("spacing", "spacing mm (x,y,z)"), ("mvox", "Mvox", "{:.2f}"),
        ("region", "guessed region"), ("training", "model training"), ("i0", "I0 photons/ray", "{:.3g}"),
        ("views", "views"),
        ("added", "added std HU (soft tissue)", "{:.1f}"), ("own", "own noise of the scan HU", "{:.1f}"),
        ("sim_s", "simulation s", "{:.1f}")])
    per_case = reporting.Table("Per case", [
        ("case", "case"), ("method", "method"), ("psnr", "PSNR dB", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"),
        ("rmse", "RMSE soft HU", "{:.1f}"), ("seconds", "s", "{:.1f}"), ("mvox_s", "Mvox/s", "{:.3f}"),
        ("note", "note")])
    results: dict[str, list[dict]] = {m: [] for m in methods}
    from MedDiffFMLib.preprocessing import guess_region
    from MedDiffFMLib.preprocessing.noise_estimate import estimate_noise_hu

    for name in cases:
        (case, sim_s) = timing.timed(lambda: NoisyCase(name, crop_mm, args.noise_hu, args.seed, args.i0, args.views))
        case_table.add(case=name, shape="×".join(map(str, case.clean.shape)),
                       spacing=", ".join(f"{s:.2f}" for s in case.spacing), mvox=case.voxels / 1e6,
                       region=str(guess_region(case.noisy_image)), training=model_setup.training_status(model, name),
                       i0=case.i0, views=case.views,
                       added=case.added_std, own=estimate_noise_hu(case.clean), sim_s=sim_s)
        print(f"[{name}] box {case.clean.shape}, I0 {case.i0:.3g}, added {case.added_std:.1f} HU "
              f"({sim_s:.0f} s to simulate)", flush=True)
        outputs = {}
        for method in methods:
            out, seconds, note = run_method(method, case, engine, args.steps)
            timed_method = method not in UNTIMED
            row = {"case": name, "method": method, "seconds": seconds if timed_method else None,
                   "mvox_s": timing.mvox_per_s(case.voxels, seconds) if timed_method else None, "note": note}
            if out is not None:
                row.update(score(case, out))
                outputs[method] = out
                results[method].append(row)
            per_case.add(**row)
            print(f"  {method:17s} " + (f"PSNR {row['psnr']:.2f} SSIM {row['ssim']:.4f} RMSE {row['rmse']:.1f} "
                                        if out is not None else "") + f"{seconds:.1f} s {note}", flush=True)
        if args.png:
            write_png(args.png / f"denoise_{name}.png", case, outputs)

    summary = reporting.Table(f"Mean over {len(cases)} case(s) ({crop_mm:.0f} mm boxes, ~{args.noise_hu:.0f} HU added)", [
        ("method", "method"), ("psnr", "PSNR dB", "{:.2f}"), ("dpsnr", "ΔPSNR vs noisy", "{:+.2f}"),
        ("ssim", "SSIM", "{:.4f}"), ("dssim", "ΔSSIM vs noisy", "{:+.4f}"), ("rmse", "RMSE soft HU", "{:.1f}"),
        ("seconds", "total s", "{:.1f}"), ("mvox_s", "Mvox/s", "{:.3f}")])
    noisy_rows = {r["case"]: r for r in results.get("noisy", [])}
    for method in methods:
        rows = results[method]
        if not rows:
            summary.add(method=method, psnr=None, note="n/a")
            continue
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "rmse")}
        d = {}
        if noisy_rows:
            d["dpsnr"] = float(np.mean([r["psnr"] - noisy_rows[r["case"]]["psnr"] for r in rows]))
            d["dssim"] = float(np.mean([r["ssim"] - noisy_rows[r["case"]]["ssim"] for r in rows]))
        seconds = sum(r["seconds"] or 0.0 for r in rows) if method not in UNTIMED else None
        voxels = sum(r["mvox_s"] * r["seconds"] for r in rows if r["seconds"]) if method not in UNTIMED else 0
        summary.add(method=method, seconds=seconds,
                    mvox_s=(voxels / seconds if seconds else None), **mean, **d)
    notes = [
        f"Model load {load_s:.1f} s (not in the per-case seconds).",
        "PSNR over [-1000, 1000] HU (data range 2000); SSIM = mean axial 2D SSIM in W400/L40; "
        "RMSE inside the clean image's soft-tissue mask. The references are real scans with their own noise.",
    ]
    for t in (case_table, per_case, summary):
        t.print()
    if args.save:
        reporting.save_results("denoise_quality", args, machine, model, [case_table, per_case, summary], notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

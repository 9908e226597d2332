"""The GPU training chunk's quick quality check: denoising of held-out CT with simulated low-dose
noise, the chunk's exported model against non-local means in the same run.

Made here (needs SimpleITK): :func:`make_quality_cases` takes held-out cases of the training
manifest, resamples each to the model's grid, cuts a box of about ``crop_mm`` (at least one patch)
around the body, and adds low-dose noise simulated in the sinogram domain on the full axial slices
of that grid (benchmarks/common/lowdose.py; I0 calibrated for about 35 HU in soft tissue, a fixed seed).
Each case is one small ``.npz`` (clean and noisy HU as int16) that travels with the chunk's shard,
so every chunk is scored on exactly the same noisy input.

Run on the GPU machine (no SimpleITK there): :func:`evaluate` denoises each noisy box with the
model on the model grid (DiffPIR, :func:`MedDiffFMLib.sampling.diffpir.diffpir_denoise`, the
library's default steps, the change added back to the input as the library does), and with NLM
(benchmarks/common/baselines.py, the benchmark's tuned parameters); both are given the noise std measured
when it was added, so neither depends on a noise estimator. Scores (benchmarks/common/metrics.py): PSNR
(dB, [-1000, 1000] HU), mean axial SSIM (W400/L40), RMSE in soft tissue (HU).

This is a model-grid check for tracking chunks, not the benchmark protocol: the model never has to
resample, so the figures are not comparable with benchmarks/denoise_quality.py's.

Usage (here): python -m tools.gpu_chunk.quality make --config configs/gpu_default.json OUT_DIR
              python -m tools.gpu_chunk.quality eval MODEL_DIR QUALITY_DIR [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from benchmarks.common.baselines import nlm
from benchmarks.common.lowdose import DEFAULT_TARGET_STD_HU, added_std, calibrate_i0, simulate_low_dose
from benchmarks.common.metrics import psnr, rmse, soft_tissue_mask, ssim_axial

DEFAULT_CASES = ("cta_aorta_crop", "STS_034")
CROP_MM = 80.0
SEED = 11


def make_quality_cases(manifest_path: Path, data_root: Optional[Path], spacing_zyx: Sequence[float],
                       patch_zyx: Sequence[int], out_dir: Path, cases: Sequence[str] = DEFAULT_CASES,
                       crop_mm: float = CROP_MM, target_std: float = DEFAULT_TARGET_STD_HU) -> list[Path]:
    """Write one ``<case>.npz`` per held-out case into ``out_dir`` (see the module docstring)."""
    import SimpleITK as sitk

    from benchmarks.common.ct_cases import crop_box
    from MedDiffFMLib.io import read_volume
    from MedDiffFMLib.preprocessing import resample_to_spacing
    from MedDiffFMLib.training import load_manifest

    manifest = load_manifest(manifest_path, data_root)
    by_id = {c.id: c for c in manifest.cases}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in cases:
        case = by_id.get(name)
        if case is None:
            raise SystemExit(f"chunk_quality: no case '{name}' in {manifest_path}.")
        if case.split == "train":
            raise SystemExit(f"chunk_quality: '{name}' is a training case; the check needs held-out ('val') cases.")
        image = read_volume(case.image)
        grid = resample_to_spacing(sitk.Cast(image, sitk.sitkFloat32), [float(s) for s in spacing_zyx[::-1]])
        hu = np.clip(sitk.GetArrayFromImage(grid), -1024, 3071).astype(np.float32)
        spacing_xyz = grid.GetSpacing()
        size_mm = [max(crop_mm, p * s) for p, s in zip(patch_zyx, spacing_zyx)]
        box = crop_box(hu, spacing_xyz, size_mm)
        clean = hu[box]
        soft = soft_tissue_mask(clean)
        # Noise from the full axial slices of the box's slab (the whole body attenuates the rays).
        slab = hu[box[0]]
        slab_mask = np.zeros(slab.shape, bool)
        slab_mask[:, box[1], box[2]] = soft
        i0, _ = calibrate_i0(slab, spacing_xyz, slab_mask, target_std, seed=SEED + 1)
        noise = simulate_low_dose(slab, spacing_xyz, i0, seed=SEED).noise[:, box[1], box[2]]
        noisy = np.clip(np.rint(clean + noise), -1024, 3071)
        path = out_dir / f"{name}.npz"
        np.savez_compressed(path, clean=np.rint(clean).astype(np.int16), noisy=noisy.astype(np.int16),
                            spacing_zyx=np.asarray(spacing_zyx, float), region=np.asarray(case.region or ""),
                            added_std_hu=added_std(noisy - np.rint(clean), soft), i0=i0,
                            source=np.asarray(manifest.attribution(case)))
        written.append(path)
    return written


def _denoise_on_grid(loaded, noisy_hu: np.ndarray, region: Optional[str], sigma_hu: float, device, steps: int):
    import torch

    from MedDiffFMLib.device import autocast_dtype
    from MedDiffFMLib.preprocessing.window import HUWindow
    from MedDiffFMLib.sampling import Conditions, VolumeNoisePredictor, sampler_for
    from MedDiffFMLib.sampling.diffpir import diffpir_denoise, measurement_sigma

    config = loaded.config
    window = HUWindow(*config.window_for(region))
    y_model = window.hu_to_model(noisy_hu)
    predictor = VolumeNoisePredictor(loaded.model, device=device, patch_size=config.patch_size, overlap=0.25,
                                     batch_size=8 if device.type == "cuda" else 2,
                                     autocast_dtype=autocast_dtype(device), coordinate_shape=tuple(y_model.shape),
                                     coordinate_offset=(0, 0, 0))
    predictor.set_conditions(Conditions(region=config.region_index(region or None)))
    y = torch.as_tensor(y_model)[None, None]
    sigma_n = measurement_sigma(sigma_hu, window.width)
    generator = torch.Generator().manual_seed(0)
    denoised, timesteps = diffpir_denoise(predictor, sampler_for(config), y, sigma_n, steps, generator=generator)
    if denoised is None:
        return noisy_hu.astype(np.float32), 0
    # On the model grid the library's way back comes to this: the model's image inside the window (input +
    # the change, so no fine band to restore), the input outside it.
    out = noisy_hu + (denoised[0, 0].numpy() - y_model) * np.float32(window.width / 2.0)
    outside = (noisy_hu < window.low) | (noisy_hu > window.high)
    out[outside] = noisy_hu[outside]
    return out.astype(np.float32), timesteps[0]


def evaluate(model_dir: Path, quality_dir: Path, device: str = "auto", steps: Optional[int] = None) -> dict:
    """Scores of the model and of NLM (and of the noisy input) on every case of ``quality_dir``."""
    from MedDiffFMLib.device import resolve_device
    from MedDiffFMLib.models.loading import load_pipeline_model

    from MedDiffFMLib.sampling.diffpir import DEFAULT_DENOISE_STEPS

    steps = DEFAULT_DENOISE_STEPS if steps is None else steps
    dev = resolve_device(device)
    loaded = load_pipeline_model(model_dir, "base", dev)
    cases = {}
    for path in sorted(Path(quality_dir).glob("*.npz")):
        data = np.load(path)
        clean = data["clean"].astype(np.float32)
        noisy = data["noisy"].astype(np.float32)
        spacing_xyz = tuple(float(s) for s in data["spacing_zyx"][::-1])
        region = str(data["region"]) or None
        sigma = float(data["added_std_hu"])
        soft = soft_tissue_mask(clean)
        row = {"voxels": int(clean.size), "region": region, "added_std_hu": round(sigma, 2)}
        t0 = time.time()
        model_out, t_start = _denoise_on_grid(loaded, noisy, region, sigma, dev, int(steps))
        row["model_seconds"] = round(time.time() - t0, 2)
        t0 = time.time()
        nlm_out = nlm(noisy, spacing_xyz, sigma=sigma)
        row["nlm_seconds"] = round(time.time() - t0, 2)
        for label, out in (("noisy", noisy), ("model", model_out), ("nlm", nlm_out)):
            row[label] = {"psnr": round(psnr(clean, out), 3), "ssim": round(ssim_axial(clean, out), 4),
                          "rmse_soft": round(rmse(clean, out, soft), 2)}
        row["start_step"] = int(t_start)
        cases[path.stem] = row
    mean = {label: {k: round(float(np.mean([c[label][k] for c in cases.values()])), 3)
                    for k in ("psnr", "ssim", "rmse_soft")} for label in ("noisy", "model", "nlm")} if cases else {}
    return {"steps": int(steps), "device": str(dev), "cases": cases, "mean": mean}


def card_lines(figures: dict) -> list[str]:
    """Model-card lines for the figures of :func:`evaluate`."""
    if not figures.get("cases"):
        return []
    lines = ["", "## Quality check of the last GPU chunk", "",
             f"Denoising of held-out CT with simulated low-dose noise on the model grid (tools/gpu_chunk/quality.py; "
             f"DiffPIR {figures['steps']} steps vs non-local means, both given the added noise std; "
             f"PSNR dB / SSIM / soft-tissue RMSE HU; {figures['device']}):", ""]
    lines.append("| case | noisy | model | NLM |")
    lines.append("| --- | --- | --- | --- |")
    for name, row in figures["cases"].items():
        cells = [f"{row[k]['psnr']:.2f} / {row[k]['ssim']:.3f} / {row[k]['rmse_soft']:.1f}" for k in ("noisy", "model", "nlm")]
        lines.append(f"| {name} (+{row['added_std_hu']:.0f} HU) | " + " | ".join(cells) + " |")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    make = sub.add_parser("make", help="write the noisy held-out boxes for a training config's model grid")
    make.add_argument("out_dir", type=Path)
    make.add_argument("--config", type=Path, default=Path("configs/gpu_default.json"))
    make.add_argument("--manifest", type=Path, default=Path("configs/shared_ct_manifest.json"))
    make.add_argument("--data-root", type=Path, default=None)
    make.add_argument("--cases", default=",".join(DEFAULT_CASES))
    ev = sub.add_parser("eval", help="score a model folder on the boxes")
    ev.add_argument("model_dir", type=Path)
    ev.add_argument("quality_dir", type=Path)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--steps", type=int, default=None)
    args = parser.parse_args(argv)
    if args.cmd == "make":
        from MedDiffFMLib.training import TrainConfig

        model = TrainConfig.from_file(args.config).model_config()
        paths = make_quality_cases(args.manifest, args.data_root, model.spacing_mm, model.patch_size, args.out_dir,
                                   [c for c in args.cases.split(",") if c])
        print("\n".join(str(p) for p in paths))
    else:
        print(json.dumps(evaluate(args.model_dir, args.quality_dir, args.device, args.steps), indent=1))


if __name__ == "__main__":
    main()

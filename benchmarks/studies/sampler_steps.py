"""Sampler steps against quality: DDIM and DPM-Solver++ (2M) on the same weights, for synthesis and
super-resolution, to set each task's default sampler and steps.

Synthesis (base model, one model patch from pure noise, regions chest and abdomen, seeds 0..S-1):

* ODE error: both samplers (eta = 0) solve the same probability-flow ODE from the same noise, so
  each run is scored by its PSNR (HU, [-1000, 1000], range 2000) against the converged solution of
  that seed (DDIM with ``--reference-steps`` steps, 200 by default): how far a few-step run is from
  what many steps give;
* realism: the 1-Wasserstein distance (HU) between the synthetic voxels' HU histogram (clipped
  to [-1024, 1500]) and held-out real CT of the region (whole scans, voxels outside the scanner's
  field of view dropped), and the fraction of voxels per tissue class (air < -900 HU,
  lung -900..-500, fat -150..-50, soft tissue 0..100, bone > 300) beside the real fractions.

Super-resolution (superres ControlNet + DiffPIR, thick slices from thin ones as in
``benchmarks/superres_quality.py``): PSNR / SSIM 3D against the thin original.

Unchanged maths: the pre-interface code (``--baseline-commit``, extracted with ``git archive``
into a temporary folder and run in a subprocess) and DDIM through the interface at the same steps
give PSNR (dB, HU range 2000) between their outputs; >= 90 dB means the same result.

Usage: python -m benchmarks.studies.sampler_steps [--seeds 3] [--cases cta_aorta_crop,lidc_chest_1mm] [--save]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import SimpleITK as sitk

from benchmarks import REPO_ROOT
from benchmarks.common import cli_options, ct_cases, metrics, model_setup, reporting, timing
from benchmarks.common.metrics import HIST_RANGE, TISSUES
from benchmarks.superres_quality import factor_for, make_thick, on_reference

SYNTH_SETTINGS = [("ddim", 50), ("ddim", 20), ("ddim", 10), ("dpmpp_2m", 20), ("dpmpp_2m", 10), ("dpmpp_2m", 5)]
SUPERRES_SETTINGS = [("ddim", 25), ("ddim", 10), ("ddim", 5), ("dpmpp_2m", 25), ("dpmpp_2m", 10), ("dpmpp_2m", 5)]
REAL = {"chest": ["lidc_chest_1mm", "chest_upper_abdomen"], "abdomen": ["abdomen_pelvis_3mm"]}
BASELINE_COMMIT = "44b2ad6"
CROP_MM = 96.0


def parse_settings(text: Optional[str], default):
    if not text:
        return list(default)
    out = []
    for part in text.split(","):
        name, steps = part.split(":")
        out.append((name.strip(), int(steps)))
    return out


def wasserstein_hu(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein distance (HU) between two voxel samples clipped to ``HIST_RANGE`` (exact, by
    :func:`benchmarks.common.metrics.wasserstein_hu`; the saved figures before 2026-11-26 came from 1001
    quantiles, about 0.5 HU above the exact value)."""
    return metrics.wasserstein_hu(np.clip(a, *HIST_RANGE), np.clip(b, *HIST_RANGE))


def tissue_fractions(hu: np.ndarray) -> dict[str, float]:
    return {k: float(np.mean((hu >= lo) & (hu < hi))) for k, (lo, hi) in TISSUES.items()}


def real_voxels(region: str) -> np.ndarray:
    values = []
    for name in REAL[region]:
        hu = sitk.GetArrayFromImage(ct_cases.read_case(name)).ravel()
        values.append(hu[hu > -1500][:: max(1, hu.size // 2_000_000)])  # drop out-of-field padding
    return np.concatenate(values)


def run_synthesis(engine, region: str, seed: int, sampler: str, steps: int) -> np.ndarray:
    from MedDiffFMLib.tasks.synthesize import SynthesisOptions, synthesize_image

    engine.options.sampler = sampler
    result = synthesize_image(engine, SynthesisOptions(region=region, steps=steps, seed=seed))
    return sitk.GetArrayFromImage(result.image).astype(np.float32)


def run_superres(engine, thick: sitk.Image, factor: int, sampler: str, steps: int) -> sitk.Image:
    from MedDiffFMLib.tasks.superres import SuperResOptions, super_resolve_image

    engine.options.sampler = sampler
    return super_resolve_image(thick, engine, SuperResOptions(factor_z=factor, steps=steps)).image


BASELINE_SCRIPT = r"""
import json, sys
import numpy as np, SimpleITK as sitk
from MedDiffFMLib import api
job = json.loads(sys.argv[1])
if job["task"] == "synthesize":
    out = api.synthesize(job["region"], steps=job["steps"], seed=job["seed"], model=job["model"], device="cpu")
else:
    thick = sitk.ReadImage(job["thick"])
    out = api.super_resolve(thick, factor_z=job["factor"], steps=job["steps"], model=job["model"], device="cpu")
np.save(job["out"], sitk.GetArrayFromImage(out).astype(np.float32))
"""


def run_baseline(source: Path, job: dict) -> np.ndarray:
    """Run ``job`` with the pre-interface library in ``source`` (a subprocess, its own imports)."""
    env = dict(os.environ, PYTHONPATH=str(source))
    subprocess.run([sys.executable, "-c", BASELINE_SCRIPT, json.dumps(job)], check=True, env=env, cwd=str(source))
    return np.load(job["out"])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_options.add_common_args(parser, ["cta_aorta_crop", "lidc_chest_1mm"], ["cta_aorta_crop"])
    parser.add_argument("--seeds", type=int, default=3, help="synthesis seeds per region (default 3)")
    parser.add_argument("--regions", default="chest,abdomen", help="synthesis regions")
    parser.add_argument("--reference-steps", type=int, default=200, help="DDIM steps of the converged synthesis")
    parser.add_argument("--synth-settings", default=None, help="sampler:steps,... (default: %s)" %
                        ",".join(f"{n}:{s}" for n, s in SYNTH_SETTINGS))
    parser.add_argument("--superres-settings", default=None, help="sampler:steps,... (default: %s)" %
                        ",".join(f"{n}:{s}" for n, s in SUPERRES_SETTINGS))
    parser.add_argument("--baseline-commit", default=BASELINE_COMMIT,
                        help="commit of the pre-interface code for the unchanged-maths line ('' to skip)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: synthesis,superres,baseline")
    args = parser.parse_args(argv)
    cli_options.setup_threads(args)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    machine = reporting.machine_info("cpu")
    base_model = model_setup.resolve_bench_model(args, role="base")
    sr_model = model_setup.resolve_bench_model(argparse.Namespace(model=None, config=None), role="superres")
    reporting.print_header("Sampler steps against quality (DDIM vs DPM-Solver++ 2M)", machine, base_model)
    tables = []
    from MedDiffFMLib.engine import Engine, EngineOptions

    synth_settings = parse_settings(args.synth_settings, SYNTH_SETTINGS)
    sr_settings = parse_settings(args.superres_settings, SUPERRES_SETTINGS)
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    synth_out: dict = {}
    if "synthesis" not in skip:
        engine = Engine(EngineOptions(model=base_model.ref, device="cpu"), role="base")
        rows = reporting.Table("Synthesis: per region and setting (mean over seeds)", [
            ("region", "region"), ("setting", "sampler @ steps"), ("evals", "network calls / patch"),
            ("ode", "PSNR vs converged dB", "{:.2f}"), ("w1", "HU W1 to real", "{:.1f}"),
            ("fractions", "air/lung/fat/soft/bone %"), ("seconds", "s / sample", "{:.2f}")])
        for region in regions:
            real = real_voxels(region)
            real_f = tissue_fractions(real)
            rows.add(region=region, setting="real CT (" + ", ".join(REAL[region]) + ")",
                     fractions="/".join(f"{100 * v:.0f}" for v in real_f.values()))
            references = {}
            for seed in range(args.seeds):
                references[seed], _ = timing.timed(lambda: run_synthesis(engine, region, seed, "ddim", args.reference_steps))
            ref_all = np.concatenate([r.ravel() for r in references.values()])
            rows.add(region=region, setting=f"ddim @ {args.reference_steps} (converged)", evals=args.reference_steps,
                     ode=float("inf"), w1=wasserstein_hu(ref_all, real),
                     fractions="/".join(f"{100 * v:.0f}" for v in tissue_fractions(ref_all).values()))
            for sampler, steps in synth_settings:
                outs, times = [], []
                for seed in range(args.seeds):
                    out, seconds = timing.timed(lambda: run_synthesis(engine, region, seed, sampler, steps))
                    outs.append(out)
                    times.append(seconds)
                    synth_out[(region, seed, sampler, steps)] = out
                ode = float(np.mean([metrics.psnr(references[s], o) for s, o in enumerate(outs)]))
                pooled = np.concatenate([o.ravel() for o in outs])
                rows.add(region=region, setting=f"{sampler} @ {steps}", evals=steps, ode=ode,
                         w1=wasserstein_hu(pooled, real),
                         fractions="/".join(f"{100 * v:.0f}" for v in tissue_fractions(pooled).values()),
                         seconds=float(np.mean(times)))
                print(f"[synthesis {region}] {sampler} @ {steps}: PSNR vs converged {ode:.2f} dB, "
                      f"W1 {wasserstein_hu(pooled, real):.1f} HU", flush=True)
        rows.print()
        tables.append(rows)

    sr_cases = ct_cases.parse_cases(args.cases, ["cta_aorta_crop"] if args.quick else ["cta_aorta_crop", "lidc_chest_1mm"])
    sr_inputs = {}
    if "superres" not in skip and sr_model.available:
        engine = Engine(EngineOptions(model=sr_model.ref, device="cpu"), role="superres", expect_task="superres")
        rows = reporting.Table(f"Super-resolution: per case and setting ({CROP_MM:.0f} mm boxes, ~5 mm thick)", [
            ("case", "case"), ("setting", "sampler @ steps"), ("psnr", "PSNR dB", "{:.2f}"),
            ("ssim", "SSIM 3D", "{:.4f}"), ("seconds", "s", "{:.1f}")])
        for name in sr_cases:
            image = ct_cases.read_case(name)
            hu = sitk.GetArrayFromImage(image)
            factor = factor_for(image.GetSpacing()[2])
            box = list(ct_cases.crop_box(hu, image.GetSpacing(), [CROP_MM] * 3))
            slabs = (box[0].stop - box[0].start) // factor
            box[0] = slice(box[0].start, box[0].start + slabs * factor)
            thin, thick = make_thick(ct_cases.crop_image(image, tuple(box)), factor)
            reference = sitk.GetArrayFromImage(thin).astype(np.float32)
            sr_inputs[name] = (thick, thin, factor)
            for method in ("linear",):
                out = sitk.GetArrayFromImage(sitk.Resample(thick, thin, sitk.Transform(), sitk.sitkLinear, -1000.0,
                                                           sitk.sitkFloat32, True))
                rows.add(case=name, setting="linear interpolation", psnr=metrics.psnr(reference, out),
                         ssim=metrics.ssim_3d(reference, out, window=metrics.HU_RANGE))
            for sampler, steps in sr_settings:
                result, seconds = timing.timed(lambda: run_superres(engine, thick, factor, sampler, steps))
                out, _ = on_reference(result, thin)
                synth_out[(name, sampler, steps)] = out
                row = dict(case=name, setting=f"{sampler} @ {steps}", psnr=metrics.psnr(reference, out),
                           ssim=metrics.ssim_3d(reference, out, window=metrics.HU_RANGE), seconds=seconds)
                rows.add(**row)
                print(f"[superres {name}] {sampler} @ {steps}: PSNR {row['psnr']:.2f} SSIM {row['ssim']:.4f}", flush=True)
        rows.print()
        tables.append(rows)

    if "baseline" not in skip and args.baseline_commit:
        rows = reporting.Table(f"DDIM unchanged: interface vs the code at {args.baseline_commit}", [
            ("task", "task"), ("setting", "setting"), ("psnr", "PSNR between the two dB", "{:.1f}"),
            ("max", "max |difference| HU", "{:.4f}")])
        with tempfile.TemporaryDirectory(prefix="meddifffm_baseline_") as tmp:
            source = Path(tmp) / "src"
            source.mkdir()
            archive = subprocess.run(["git", "archive", args.baseline_commit, "MedDiffFMLib", "Resources/Models"],
                                     cwd=REPO_ROOT, check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
            region = regions[0] if regions else "chest"
            engine = Engine(EngineOptions(model=base_model.ref, device="cpu"), role="base")
            ours = synth_out.get((region, 0, "ddim", 50))
            if ours is None:
                ours = run_synthesis(engine, region, 0, "ddim", 50)
            theirs = run_baseline(source, {"task": "synthesize", "region": region, "steps": 50, "seed": 0,
                                           "model": base_model.ref, "out": str(Path(tmp) / "synth.npy")})
            rows.add(task="synthesis", setting=f"{region}, seed 0, ddim @ 50",
                     psnr=metrics.psnr(theirs, ours, hu_range=(-1024, 3071)), max=float(np.abs(theirs - ours).max()))
            if sr_model.available and sr_cases:
                name = sr_cases[0]
                if name not in sr_inputs:
                    raise SystemExit("the baseline line needs the superres section (drop 'superres' from --skip)")
                thick, thin, factor = sr_inputs[name]
                thick_path = Path(tmp) / "thick.nii.gz"
                sitk.WriteImage(thick, str(thick_path))
                sr_engine = Engine(EngineOptions(model=sr_model.ref, device="cpu"), role="superres", expect_task="superres")
                ours = sitk.GetArrayFromImage(run_superres(sr_engine, sitk.ReadImage(str(thick_path)), factor, "ddim", 25))
                theirs = run_baseline(source, {"task": "superres", "thick": str(thick_path), "factor": factor,
                                               "steps": 25, "model": sr_model.ref, "out": str(Path(tmp) / "sr.npy")})
                rows.add(task="super-resolution", setting=f"{name}, ddim @ 25",
                         psnr=metrics.psnr(theirs, ours, hu_range=(-1024, 3071)), max=float(np.abs(theirs - ours).max()))
        rows.print()
        tables.append(rows)

    if args.save:
        notes = []
        if "synthesis" not in skip:
            notes.append(f"Synthesis: {args.seeds} seed(s) per region, one model patch each; converged = DDIM @ "
                         f"{args.reference_steps} from the same noise.")
        if "superres" not in skip:
            notes.append(f"Super-resolution model: {sr_model.describe()}; default options but the sampler and steps.")
        notes.append("Timings on a shared CPU are noisy.")
        reporting.save_results("sampler_steps", args, machine, base_model, tables, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Synthesis quality: realism, diversity and memorisation of synthetic CT, per body region, beside
two baselines measured in the same run.

For every body region the model knows (head_neck, chest, abdomen), a box of a real case of that
region (``REGION_CASES``, cases of the training manifest; the shipped base has seen them all but
lidc_chest_1mm, whose shard it has not trained yet) is cut around its body's centre on the model's grid (1 mm for the shipped base,
``--box-mm`` z y x, default 80 x 80 x 140 mm: 2 model patches; values below -1024 HU, which are
outside the scan's field of view, count as air). ``--samples`` synthetic CTs (seeds 0..N-1, the
task's default sampler and steps) are sampled on that grid with ``synthesize_image(..., like=box)``
and compared with the real box:

* HU W1: 1-Wasserstein distance (HU) between the HU histograms inside the body (values clipped
  to -1024..1500; the body is every voxel but the air outside the patient: below -950 HU after a
  3x3 in-plane median and connected, within its axial slice, to the box's edge, so that lungs open
  to the box's edge count as body; :func:`box_body_mask`);
* air / lung / fat / soft tissue / bone: fractions (%) of the body's voxels in
  ``benchmarks.common.metrics.TISSUES`` (the real box's fractions are the target);
* texture: mean in-plane gradient magnitude and GLCM contrast (32 levels over -1000..1000 HU,
  neighbours at 1 voxel in-plane, pairs inside the body) as ratios to the real box (1 = as rough);
* diversity: mean pairwise 3D SSIM (HU -1000..1000 mapped to 0..1) between the samples (lower
  = more varied; two different real patients show what "different" scores);
* memorisation: the highest normalised cross-correlation between a volume and any training case
  (``configs/shared_ct_manifest.json``, split "train": a superset of what a model saw) at the best shift, found by FFT template
  matching (``skimage.feature.match_template``) on a ``--match-mm`` grid (3 mm), HU clipped to
  -1024..1500; along an axis where a case is smaller than the volume, the volume's centre is
  matched. 1.0 = a copy of a training case (the real box itself shows it), the other-patient row
  shows how alike two different real patients are;
* time per sample (s, wall clock on this machine).

Rows per region: the real box (itself: the target and the memorisation check), ``real, other
patient`` (the same box from another training patient of the region, its own patient left out of
the memorisation search), ``meddifffm`` (means over samples; memorisation the highest over samples)
and ``smoothed noise`` (Gaussian noise smoothed by a 2 mm Gaussian and mapped rank by rank onto the
real box's HU values: the right histogram, no anatomy; as many volumes as samples).

Cost on the 2-core CPU (2026-12-05, shared with four other engineers' jobs, load average 10-14): one
80^3 mm patch at 10 steps took 53 s on a quiet machine; the default box (2 patches) 3-4 min per
sample under that load, so the default run (3 regions x 2 samples, plus about a minute of
memorisation search per region) takes about 30 min. A box of 4 patches (80 x 140 x 140 mm) would
double that.
``--quick``: an 80 mm cube (one patch), 2 samples per region.

``--pictures DIR`` also writes ``synthesis-<region>.png`` (the real box above seed 0's sample,
axial / coronal / sagittal) with :func:`benchmarks.synthesis_pictures.write_region_picture`.

Usage: python -m benchmarks.synthesis_quality [--quick] [--samples N] [--regions chest,...] [--save]
       [--pictures Resources/Screenshots]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks import REPO_ROOT
from benchmarks.common import cli_options, ct_cases, metrics, model_setup, reporting, timing
from benchmarks.common.metrics import HIST_RANGE, TISSUES

# (real box, another patient) per region: the largest whole-region scans of the shared CT.
REGION_CASES = {
    "head_neck": ("hn_pt1_3mm", "head_cranium_1.5mm"),
    "chest": ("lidc_chest_1mm", "chest_upper_abdomen"),
    "abdomen": ("abdomen_pelvis_3mm", "crlm_1006_5mm"),
}
# Cases of the same patient (left out together from an other-patient row's memorisation search).
SAME_PATIENT = [{"abdomen_pelvis_3mm", "abdomen_3mm_small"}]
MANIFEST = REPO_ROOT / "configs" / "shared_ct_manifest.json"
BOX_MM = (80.0, 80.0, 140.0)  # z, y, x: 2 patches of the 1 mm base along x (80^3: 140 = 80 + 60)
QUICK_BOX_MM = (80.0, 80.0, 80.0)  # one patch
AIR_HU = -1024.0
TEXTURE_RANGE = (-1000.0, 1000.0)
SSIM_RANGE = (-1000.0, 1000.0)
NOISE_SIGMA_MM = 2.0
OUTSIDE_AIR_HU = -950.0


# ---------------------------------------------------------------------------------------------
# Real cases.
# ---------------------------------------------------------------------------------------------


def manifest_cases() -> list[dict]:
    """The training manifest's cases (id, image relative to the shared CT, region, split)."""
    return json.loads(MANIFEST.read_text())["cases"]


def read_manifest_case(case_id: str) -> sitk.Image:
    """A manifest case as float32 HU (DICOM folders included), values below -1024 set to air."""
    from MedDiffFMLib.io import read_volume

    entry = next(c for c in manifest_cases() if c["id"] == case_id)
    path = ct_cases.data_root() / entry["image"]
    if not path.exists():
        raise SystemExit(f"Missing {path}: the shared CT data is needed (set MEDDIFFFM_CT_DATA to its folder).")
    image = sitk.Cast(read_volume(path), sitk.sitkFloat32)
    return sitk.Threshold(image, AIR_HU, 1e6, AIR_HU)


def on_spacing(image: sitk.Image, spacing_xyz: Sequence[float]) -> sitk.Image:
    """``image`` linearly resampled to ``spacing_xyz`` mm, axes in LPS order (its own geometry kept)."""
    from MedDiffFMLib.preprocessing import resample_to_spacing

    return resample_to_spacing(sitk.DICOMOrient(image, "LPS"), spacing_xyz, "linear", AIR_HU)


def real_box(case_id: str, spacing_xyz: Sequence[float], box_mm: Sequence[float]) -> sitk.Image:
    """The ``box_mm`` (z, y, x) box of a case around its body's centre, on ``spacing_xyz``."""
    image = on_spacing(read_manifest_case(case_id), spacing_xyz)
    hu = sitk.GetArrayViewFromImage(image)
    body = np.argwhere(metrics.body_mask(np.asarray(hu)))
    center = body.mean(axis=0) if len(body) else None
    return ct_cases.crop_image(image, ct_cases.crop_box(np.asarray(hu), image.GetSpacing(), box_mm, center))


# ---------------------------------------------------------------------------------------------
# Metrics.
# ---------------------------------------------------------------------------------------------


def box_body_mask(hu: np.ndarray) -> np.ndarray:
    """The body in a box cut from inside it: every voxel but the air outside the patient (below
    ``OUTSIDE_AIR_HU`` after a 3x3 in-plane median, connected within its axial slice to the box's
    in-plane edge). :func:`benchmarks.common.metrics.body_mask` fills holes slice by slice, which on a box
    whose edges cut the body drops the lungs (they reach the edge); here lung (about -850 HU),
    the trachea and bowel gas stay in the body."""
    from scipy import ndimage

    air = ndimage.median_filter(np.asarray(hu, dtype=np.float32), size=(1, 3, 3)) < OUTSIDE_AIR_HU
    outside = np.zeros_like(air)
    for k in range(air.shape[0]):
        labels, count = ndimage.label(air[k])
        if count:
            edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            outside[k] = np.isin(labels, edge[edge > 0])
    return ~outside


def tissue_fractions(hu: np.ndarray, body: np.ndarray) -> dict[str, float]:
    """Percent of the body's voxels in each of ``TISSUES``."""
    values = hu[body]
    return {k: 100.0 * float(np.mean((values >= lo) & (values < hi))) if values.size else float("nan")
            for k, (lo, hi) in TISSUES.items()}


def realism(hu: np.ndarray, real: np.ndarray, spacing_yx: Sequence[float]) -> dict[str, float]:
    """Histogram, tissue and texture figures of ``hu`` against the real box ``real`` (same grid)."""
    body, real_body = box_body_mask(hu), box_body_mask(real)
    out = {"w1": metrics.wasserstein_hu(np.clip(real[real_body], *HIST_RANGE), np.clip(hu[body], *HIST_RANGE))}
    out.update(tissue_fractions(hu, body))
    out["gradient_ratio"] = (metrics.mean_gradient_axial(hu, body, spacing_yx)
                             / metrics.mean_gradient_axial(real, real_body, spacing_yx))
    out["glcm_ratio"] = (metrics.glcm_axial(hu, body, TEXTURE_RANGE)["contrast"]
                         / metrics.glcm_axial(real, real_body, TEXTURE_RANGE)["contrast"])
    return out


def mean_pairwise_ssim(volumes: Sequence[np.ndarray]) -> float:
    """Mean 3D SSIM over every pair of ``volumes`` (nan for fewer than two)."""
    pairs = list(itertools.combinations(range(len(volumes)), 2))
    if not pairs:
        return float("nan")
    return float(np.mean([metrics.ssim_3d(volumes[i], volumes[j], window=SSIM_RANGE) for i, j in pairs]))


def smoothed_noise(real: np.ndarray, spacing_zyx: Sequence[float], seed: int) -> np.ndarray:
    """Gaussian noise smoothed by ``NOISE_SIGMA_MM`` and mapped rank by rank onto ``real``'s values:
    the real box's exact HU histogram with no anatomy."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(real.shape),
                                    sigma=[NOISE_SIGMA_MM / s for s in spacing_zyx])
    ranks = np.empty(noise.size, dtype=np.int64)
    ranks[np.argsort(noise, axis=None)] = np.arange(noise.size)
    return np.sort(real, axis=None)[ranks].reshape(real.shape).astype(np.float32)


@dataclass
class MatchCase:
    """A training case on the memorisation grid (HU clipped to ``HIST_RANGE``)."""

    case_id: str
    hu: np.ndarray


@dataclass
class Memorisation:
    """Training cases on the ``spacing`` grid, searched by normalised cross-correlation."""

    spacing_xyz: tuple[float, float, float]
    cases: list[MatchCase] = field(default_factory=list)

    @classmethod
    def load(cls, spacing_mm: float) -> "Memorisation":
        spacing = (float(spacing_mm),) * 3
        found = cls(spacing)
        for entry in manifest_cases():
            if entry.get("split") != "train" or not (ct_cases.data_root() / entry["image"]).exists():
                continue
            image = on_spacing(read_manifest_case(entry["id"]), spacing)
            found.cases.append(MatchCase(entry["id"], np.clip(sitk.GetArrayFromImage(image), *HIST_RANGE)))
        return found

    def best_match(self, volume: sitk.Image, exclude: Sequence[str] = ()) -> tuple[float, str]:
        """The highest normalised cross-correlation of ``volume`` with any training case (not in
        ``exclude``) at any shift that keeps it inside the case, and that case's id."""
        from skimage.feature import match_template

        template = np.clip(sitk.GetArrayFromImage(on_spacing(volume, self.spacing_xyz)), *HIST_RANGE)
        best, best_id = -1.0, "–"
        for case in self.cases:
            if case.case_id in exclude:
                continue
            # Along an axis where the case is smaller, match the volume's centre of the case's size.
            cut = tuple(slice((t - min(t, c)) // 2, (t - min(t, c)) // 2 + min(t, c))
                        for t, c in zip(template.shape, case.hu.shape))
            part = template[cut]
            if min(part.shape) < 2 or float(part.std()) == 0.0:
                continue
            score = float(match_template(case.hu, part).max())
            if score > best:
                best, best_id = score, case.case_id
        return best, best_id


def same_patient(case_id: str) -> set[str]:
    for group in SAME_PATIENT:
        if case_id in group:
            return set(group)
    return {case_id}


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------


def synthesize_samples(engine, region: str, grid: sitk.Image, count: int) -> tuple[list[sitk.Image], list[float]]:
    """``count`` synthetic CTs (seeds 0..count-1) on ``grid``'s geometry, and the seconds of each."""
    from MedDiffFMLib.tasks.synthesize import SynthesisOptions, synthesize_image

    images, seconds = [], []
    for seed in range(count):
        with timing.Stopwatch() as watch:
            result = synthesize_image(engine, SynthesisOptions(region=region, seed=seed), like=grid)
        images.append(sitk.Cast(result.image, sitk.sitkFloat32))
        seconds.append(watch.seconds)
        print(f"  {region} seed {seed}: {watch.seconds:.0f} s", flush=True)
    return images, seconds


def row_values(name: str, region: str, volumes: Sequence[np.ndarray], real: np.ndarray, spacing_yx,
               memorised: tuple[float, str], seconds: Optional[Sequence[float]] = None, diversity=None) -> dict:
    """One table row: realism figures averaged over ``volumes``, diversity, memorisation, time."""
    per = [realism(v, real, spacing_yx) for v in volumes]
    mean = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
    return dict(region=region, source=name, n=len(volumes), w1=mean["w1"],
                tissues="/".join(f"{mean[k]:.0f}" for k in TISSUES),
                gradient_ratio=mean["gradient_ratio"], glcm_ratio=mean["glcm_ratio"],
                diversity=mean_pairwise_ssim(volumes) if diversity is None else diversity,
                memorisation=memorised[0], nearest=memorised[1],
                seconds=float(np.mean(seconds)) if seconds else None)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="base model folder or name (default: the installed default)")
    parser.add_argument("--config", default=None,
                        help="no installed model: a RANDOM model of this config (figures marked untrained)")
    parser.add_argument("--regions", default=",".join(REGION_CASES), help="comma-separated regions")
    parser.add_argument("--samples", type=int, default=2, help="synthetic CTs per region (seeds 0..N-1; default 2)")
    parser.add_argument("--box-mm", type=float, nargs=3, metavar=("Z", "Y", "X"), default=None,
                        help=f"the real box in mm (default {BOX_MM}; --quick {QUICK_BOX_MM})")
    parser.add_argument("--match-mm", type=float, default=3.0, help="grid of the memorisation search in mm (default 3)")
    parser.add_argument("--quick", action="store_true", help="one model patch per sample (minutes, not tens)")
    parser.add_argument("--pictures", type=Path, default=None,
                        help="also write synthesis-<region>.png (real box above seed 0's sample) to this folder")
    parser.add_argument("--save", action="store_true", help="also write the table to benchmarks/results/")
    parser.add_argument("--save-name", default=None, help="file stem under benchmarks/results/")
    parser.add_argument("--device", default="cpu", help="auto|cpu|cuda|mps for MedDiffFM (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    unknown = [r for r in regions if r not in REGION_CASES]
    if unknown or args.samples < 1:
        parser.error(f"--regions takes {', '.join(REGION_CASES)} (got {unknown}); --samples at least 1")
    if args.pictures is not None and not args.pictures.is_dir():
        parser.error(f"--pictures: the folder '{args.pictures}' does not exist")
    box_mm = tuple(args.box_mm or (QUICK_BOX_MM if args.quick else BOX_MM))
    cli_options.setup_threads(args)
    machine = reporting.machine_info(args.device)
    model = model_setup.resolve_bench_model(args, role="base")
    reporting.print_header("Synthesis quality per region (realism, diversity, memorisation)", machine, model)
    if not model.available:
        print(model.reason)
        return 2
    engine = model_setup.make_engine(model, args.device)
    spacing_xyz = tuple(reversed(engine.config.spacing_mm))
    print(f"Loading the training cases on a {args.match_mm:g} mm grid for the memorisation search...", flush=True)
    with timing.Stopwatch() as load_watch:
        memory = Memorisation.load(args.match_mm)
    print(f"  {len(memory.cases)} training cases in {load_watch.seconds:.0f} s", flush=True)

    table = reporting.Table("Synthesis per region: realism against the real box, diversity, memorisation", [
        ("region", "region"), ("source", "volume"), ("n", "n"), ("w1", "HU W1 in body", "{:.1f}"),
        ("tissues", "air/lung/fat/soft/bone % of body"), ("gradient_ratio", "gradient ratio", "{:.2f}"),
        ("glcm_ratio", "GLCM contrast ratio", "{:.2f}"), ("diversity", "pairwise SSIM", "{:.3f}"),
        ("memorisation", "max NCC to training", "{:.3f}"), ("nearest", "nearest training case"),
        ("seconds", "s / sample", "{:.0f}"),
    ])
    match_seconds = []
    for region in regions:
        real_id, other_id = REGION_CASES[region]
        real_image = real_box(real_id, spacing_xyz, box_mm)
        other_image = real_box(other_id, spacing_xyz, box_mm)
        # The other patient's box on the real box's grid (the same size; positions differ by patient).
        other_image = sitk.Resample(other_image, real_image.GetSize(), sitk.Transform(), sitk.sitkLinear,
                                    other_image.GetOrigin(), real_image.GetSpacing(), other_image.GetDirection(),
                                    AIR_HU, sitk.sitkFloat32)
        other_image.CopyInformation(real_image)
        real, other = sitk.GetArrayFromImage(real_image), sitk.GetArrayFromImage(other_image)
        spacing_zyx = ct_cases.spacing_zyx(real_image)
        spacing_yx = spacing_zyx[1:]
        print(f"{region}: real box {real_id} {real_image.GetSize()} at {spacing_xyz} mm; "
              f"other patient {other_id}", flush=True)
        samples, seconds = synthesize_samples(engine, region, real_image, args.samples)
        sample_arrays = [sitk.GetArrayFromImage(s) for s in samples]
        noise = [smoothed_noise(real, spacing_zyx, seed) for seed in range(args.samples)]
        with timing.Stopwatch() as watch:
            found = {
                "real": memory.best_match(real_image),
                "other": memory.best_match(other_image, exclude=sorted(same_patient(other_id))),
                "sample": max((memory.best_match(s) for s in samples), key=lambda m: m[0]),
                "noise": memory.best_match(ct_cases.like(noise[0], real_image)),  # seed 0: the search is the cost
            }
        match_seconds.append(watch.seconds)
        pair_ssim = metrics.ssim_3d(real, other, window=SSIM_RANGE)
        table.add(**row_values(f"real box: {real_id} (itself)", region, [real], real, spacing_yx, found["real"]))
        table.add(**row_values(f"real, other patient: {other_id}", region, [other], real, spacing_yx, found["other"],
                               diversity=pair_ssim))
        table.add(**row_values(f"meddifffm ({args.samples} seeds)", region, sample_arrays, real, spacing_yx,
                               found["sample"], seconds))
        table.add(**row_values(f"smoothed noise ({args.samples} seeds)", region, noise, real, spacing_yx,
                               found["noise"]))
        if args.pictures is not None:
            from benchmarks.synthesis_pictures import write_region_picture

            path = write_region_picture(region, real_image, samples[0], real_id, args.pictures / f"synthesis-{region}.png")
            print(f"  wrote {path}", flush=True)
        table.print()

    notes = [
        f"Box per region: {box_mm[0]:g} x {box_mm[1]:g} x {box_mm[2]:g} mm (z, y, x) around the body's centre of the "
        f"real case, on the model's {spacing_xyz} mm grid; {args.samples} synthetic CTs per region (seeds 0..{args.samples - 1}, "
        f"the synthesize task's default sampler and steps). Memorisation on a {args.match_mm:g} mm grid over "
        f"{len(memory.cases)} training cases (configs/shared_ct_manifest.json, split train), about "
        f"{np.mean(match_seconds):.0f} s of search per region. \"pairwise SSIM\" of the other-patient row: its box against "
        "the real box (two real patients); of the real box itself: n/a (one volume).",
    ]
    table.note = ("HU W1 and the tissue fractions inside the body; gradient and GLCM contrast ratios to the real box "
                  "(1 = as rough); pairwise SSIM between the row's volumes (lower = more varied); max NCC: the highest "
                  "normalised cross-correlation with any training case at the best shift (1 = a copy); s / sample: "
                  "wall clock per synthetic CT on this machine.")
    if args.save:
        reporting.save_results("synthesis_quality", args, machine, model, [table], notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

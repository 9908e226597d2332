"""A picture per body region: axial, coronal and sagittal slices of a real box of that region above
one seeded synthetic CT on the same grid, drawn by the library's own preview renderer
(:func:`MedDiffFMLib.preview.write_preview`).

The boxes are those of ``benchmarks/synthesis_quality.py`` (the same real cases, box and grid), so
the pictures show what its table scores; ``python -m benchmarks.synthesis_quality --pictures DIR``
writes them from its seed-0 samples in the same run. Alone, this script samples one CT per region:

Usage: python -m benchmarks.synthesis_pictures [--out Resources/Screenshots] [--seed 0] [--regions chest,...]
       [--box-mm Z Y X] [--model PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import SimpleITK as sitk

from benchmarks import REPO_ROOT
from benchmarks.common import model_setup

# Display window (level, width) per region: lungs and mediastinum in one chest picture.
DISPLAY_WINDOWS = {"chest": (-400.0, 1400.0), "abdomen": (40.0, 400.0), "head_neck": (60.0, 600.0)}
DEFAULT_OUT = REPO_ROOT / "Resources" / "Screenshots"


def write_region_picture(region: str, real: sitk.Image, sample: sitk.Image, real_name: str, path: Path,
                         seed: int = 0) -> Path:
    """``real`` (top row) above ``sample`` (bottom row), axial / coronal / sagittal through the centre."""
    from MedDiffFMLib.preview import write_preview

    return write_preview(real, sample, path,
                         titles=(f"real {region}: {real_name}", f"MedDiffFM synthetic {region}, seed {seed}"),
                         window=DISPLAY_WINDOWS.get(region, (40.0, 400.0)), difference=False)


def main(argv: Optional[list[str]] = None) -> int:
    from benchmarks.synthesis_quality import BOX_MM, REGION_CASES, real_box

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder of the pictures (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic CT (default 0)")
    parser.add_argument("--regions", default=",".join(REGION_CASES), help="comma-separated regions")
    parser.add_argument("--box-mm", type=float, nargs=3, metavar=("Z", "Y", "X"), default=BOX_MM,
                        help=f"the box in mm (default {BOX_MM})")
    parser.add_argument("--model", default=None, help="base model folder or name (default: the installed default)")
    parser.add_argument("--device", default="cpu", help="auto|cpu|cuda|mps (default cpu)")
    args = parser.parse_args(argv)
    if not args.out.is_dir():
        parser.error(f"--out: the folder '{args.out}' does not exist")
    from MedDiffFMLib.tasks.synthesize import SynthesisOptions, synthesize_image

    model = model_setup.bench_model(args.model, "base")
    if not model.available:
        print(model.reason)
        return 2
    engine = model_setup.make_engine(model, args.device)
    spacing_xyz = tuple(reversed(engine.config.spacing_mm))
    for region in [r.strip() for r in args.regions.split(",") if r.strip()]:
        real_id = REGION_CASES[region][0]
        real = real_box(real_id, spacing_xyz, args.box_mm)
        sample = synthesize_image(engine, SynthesisOptions(region=region, seed=args.seed), like=real).image
        path = write_region_picture(region, real, sample, real_id, args.out / f"synthesis-{region}.png", args.seed)
        print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

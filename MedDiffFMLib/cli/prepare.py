"""``meddifffm prepare MANIFEST CACHE_DIR``: preprocess a training manifest once into a cache."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "preprocess a training manifest (CT + labels) into a compact training cache"


def register(subparsers) -> None:
    parser = subparsers.add_parser("prepare", help=HELP, description=HELP + ". The cache holds each volume on the "
                                   "model grid (thick axes kept as they are), as int16 HU or uint8 window codes, "
                                   "with its labels, and an index.json that training reads.")
    parser.add_argument("manifest", type=Path, help="manifest JSON or CSV (image, region, anatomy, lesion, split)")
    parser.add_argument("cache_dir", type=Path, help="cache folder to create or update")
    parser.add_argument("--config", default="default",
                        help="model config whose spacing (and windows, for uint8) the cache uses (default: default)")
    parser.add_argument("--spacing", type=float, default=None, help="override the spacing in mm (isotropic)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder the manifest's relative paths start from")
    parser.add_argument("--dtype", choices=["uint8", "int16"], default="uint8",
                        help="uint8: codes of each region's HU window (smallest, default); int16: HU (any window)")
    parser.add_argument("--storage", choices=["npz", "npy"], default="npz",
                        help="npz: compressed (default); npy: uncompressed, memory-mapped at training time")
    parser.add_argument("--allow-non-hu", action="store_true", help="skip the check that every image is CT in HU")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..io.output_plan import FOLDER, plan_outputs
    from ..models.config import named_config
    from ..progress import JsonProgress
    from ..option_checks import check_number
    from ..training import load_manifest, prepare_cache
    from .common import finish

    if args.spacing is not None:
        check_number(args.spacing, "--spacing", 0.0, low_open=True, why=" (the cache spacing in mm)")
    cache = [("cache folder", args.cache_dir, FOLDER)]
    plan_outputs(cache, [args.manifest])
    config = named_config(args.config)
    spacing = [args.spacing] * 3 if args.spacing else list(config.spacing_mm)
    manifest = load_manifest(args.manifest, args.data_root, regions=config.regions)
    plan_outputs(cache, [args.manifest] + [p for case in manifest.cases
                                           for p in (case.image, case.anatomy, case.lesion) if p is not None])
    bar = None
    if args.progress == "bar":
        from tqdm import tqdm

        bar = tqdm(total=len(manifest.cases), desc="prepare", unit="case", file=sys.stderr)
    json_out = JsonProgress() if args.progress == "json" else None

    def progress(done: int, total: int, case_id: str) -> None:
        if args.cancel():
            from ..errors import CancelledError

            raise CancelledError("Preparing was cancelled; nothing was written (the cache is as it was).")
        if bar is not None:
            bar.n = done
            bar.set_postfix_str(case_id, refresh=True)
        if json_out is not None:
            json_out.emit({"stage": "prepare", "step": done, "total": total, "case": case_id})

    try:  # all or nothing: a failed or cancelled run leaves the cache as it was
        index = prepare_cache(manifest, args.cache_dir, spacing, storage=args.storage, dtype=args.dtype,
                              windows=config.window_for, allow_non_hu=args.allow_non_hu, progress=progress,
                              config_name=config.name)
    finally:
        if bar is not None:
            bar.close()
    splits = {s: sum(1 for c in index["cases"] if c["split"] == s) for s in ("train", "val")}
    finish(args, [args.cache_dir / "index.json"],
           f"Prepared {len(index['cases'])} cases ({splits['train']} train, {splits['val']} val) at "
           f"{spacing[0]:g} mm into {args.cache_dir}: {index['total_bytes'] / 2**20:.1f} MiB, "
           f"{index['voxels'] / 1e6:.1f} M voxels.")


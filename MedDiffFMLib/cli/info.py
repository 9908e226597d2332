"""``meddifffm info``: versions, devices and the models found, with their checksum status."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import platform
from typing import Optional

from .. import __version__
from ..device import available_devices, cpu_has_native_bf16
from ..errors import ModelChecksumError, ModelConfigError, ModelError
from ..models.registry import iter_model_folders, search_dirs
from ..models.weights import verify_model_folder
from ..sampling import SAMPLERS
from ..sampling.tiling import DEFAULT_OVERLAP
from ..tasks.registry import export_tasks

HELP = "show versions, devices, installed models (with checksum status) and the tasks with their defaults"


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help=HELP, description=HELP)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--server", default=None, metavar="URL",
                        help="show a `meddifffm serve` server's versions, devices and models instead")
    parser.add_argument("--token-file", type=Path, default=None,
                        help="file holding the server's token (default: $MEDDIFFFM_SERVER_TOKEN)")
    parser.set_defaults(func=run)


def _anomaly_threshold(files) -> Optional[float]:
    """The calibrated default threshold of the anomaly map (base models with healthy statistics), or None."""
    from ..tasks.anomaly_calibration import calibration_of

    try:
        calibration = calibration_of(files) if files.controlnet_config is None else None
    except ModelError:
        return None
    return None if calibration is None else calibration.threshold


def collect() -> dict:
    import monai
    import SimpleITK
    import torch

    models = []
    for folder in iter_model_folders():
        entry = {"name": folder.name, "path": str(folder)}
        try:
            files = verify_model_folder(folder)
            entry.update(name=files.name, kind=files.kind, sha256_ok=True, fingerprint=files.fingerprint,
                         card_summary=files.card_summary, config=files.model_config.to_dict(),
                         task=files.controlnet_config.task if files.controlnet_config else None,
                         anomaly_threshold=_anomaly_threshold(files))
        except ModelChecksumError as error:
            entry.update(status="checksum failed", sha256_ok=False, error=str(error))
        except ModelConfigError as error:
            entry.update(status="config unreadable", sha256_ok=None, error=str(error))
        except ModelError as error:  # a file missing, no weights listed
            entry.update(status="incomplete", sha256_ok=None, error=str(error))
        else:
            entry["status"] = "ok"
        models.append(entry)
    return {
        "version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "simpleitk": SimpleITK.Version_VersionString(),
        "devices": available_devices(),
        # What --precision auto runs on this machine's CPU (the Slicer panel's time estimate uses it).
        "cpu_precision": "bfloat16" if cpu_has_native_bf16() else "float32",
        # The least overlap of neighbouring patches (--overlap's default): the estimate places its windows with it.
        "overlap": DEFAULT_OVERLAP,
        "model_dirs": [str(d) for d in search_dirs()],
        "models": models,
        "samplers": sorted(SAMPLERS),
        "tasks": export_tasks(),
    }


def run(args: argparse.Namespace) -> None:
    if args.server:
        from .remote import server_client

        with server_client(args) as client:
            info = client.info()
    else:
        info = collect()
    if args.cancel():
        from ..errors import CancelledError

        raise CancelledError("Interrupted; nothing was shown.")
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"MedDiffFM {info['version']} (Python {info['python']}, torch {info['torch']}, MONAI {info['monai']}, "
          f"SimpleITK {info['simpleitk']})")
    print("Devices: " + ", ".join(info["devices"]))
    if "cpu_precision" in info:  # (an older server does not say)
        print(f"CPU arithmetic (--precision auto): {info['cpu_precision']}")
    if "model_dirs" in info:  # (a server does not show its paths)
        print("Model folders searched: " + ", ".join(info["model_dirs"]))
    if not info["models"]:
        print("Models: none installed (see `meddifffm import-weights`).")
    for model in info["models"]:
        status = "sha256 OK" if model["status"] == "ok" else f"{model['status'].upper()}: {model.get('error', '')}"
        kind = model.get("kind", "?") + (f"/{model['task']}" if model.get("task") else "")
        print(f"  {model['name']} [{kind}] {model.get('path', '(on the server)')} — {status}")
        if model.get("card_summary"):
            print(f"      {model['card_summary'][:160]}")
        if model.get("config"):
            config = model["config"]
            anatomy = int(config.get("anatomy_channels") or 0)
            takes = f"anatomy label map ({anatomy} labels)" if anatomy else "no anatomy label map (synthesize --anatomy is refused)"
            print(f"      sampler {config.get('sampler')}, prediction {config.get('prediction_type')}; conditions: body "
                  f"region, {takes}")
    print("Tasks (default steps): " + ", ".join(f"{name} ({task['default_steps']})" for name, task in info["tasks"].items()))

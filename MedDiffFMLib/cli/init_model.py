"""``meddifffm init-model``: write a randomly initialised model (tests, smoke runs, start of training)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..models.config import CONTROLNET_TASKS, ControlNetConfig, named_config
from ..models.network import MedDiffFMControlNet, MedDiffFMUNet
from ..models.weights import save_model, verify_model_folder

HELP = "write a randomly initialised model folder"


def register(subparsers) -> None:
    parser = subparsers.add_parser("init-model", help=HELP, description=HELP)
    parser.add_argument("--config", default="tiny", help="config name (tiny, default, paper) or JSON file")
    parser.add_argument("--controlnet", choices=list(CONTROLNET_TASKS), default=None,
                        help="write a ControlNet for this task, initialised from --base")
    parser.add_argument("--base", type=Path, default=None, help="base model folder (with --controlnet)")
    parser.add_argument("--name", default=None, help="model name (default: the folder name)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--randomize-output", action="store_true",
                        help="give the (normally zero-initialised) output layer random weights, so that an "
                        "untrained model visibly changes its input (smoke tests)")
    parser.add_argument("output", type=Path, help="model folder to create")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    name = args.name or args.output.name
    card = (f"# {name}\n\nRandomly initialised MedDiffFM model (config '{args.config}', seed {args.seed}). "
            "It has not been trained: its outputs are noise-like and meant for tests and smoke runs only.\n")
    if args.controlnet:
        from ..errors import ModelError

        if args.base is None:
            raise ModelError("--controlnet needs --base: the base model folder the ControlNet attaches to.")
        base_files = verify_model_folder(args.base)
        from ..models.weights import build_module

        base = build_module(base_files)
        control = ControlNetConfig(task=args.controlnet, condition_channels=1, base_model=base_files.name,
                                   base_sha256=base_files.fingerprint)
        module = MedDiffFMControlNet(base_files.model_config, control)
        module.initialise_from(base)  # type: ignore[arg-type]
    else:
        module = MedDiffFMUNet(named_config(args.config))
        if args.randomize_output:
            _randomize_output_layer(module)
    files = save_model(module, args.output, name=name, card=card)
    print(f"Wrote {files.kind} model '{files.name}' to {files.path}")


def _randomize_output_layer(module: MedDiffFMUNet) -> None:
    # MONAI zero-initialises the U-Net's last convolution (good for training, invisible in smoke tests).
    last_conv = [m for m in module.unet.out.modules() if isinstance(m, torch.nn.Conv3d)][-1]
    torch.nn.init.normal_(last_conv.weight, std=0.05)

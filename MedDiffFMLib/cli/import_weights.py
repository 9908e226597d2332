"""``meddifffm import-weights PATH``: copy a model folder into the user's models, checksums verified."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models.registry import import_weights

HELP = "import a model folder (offline) into your model library after verifying its checksums"


def register(subparsers) -> None:
    parser = subparsers.add_parser("import-weights", help=HELP, description=HELP)
    parser.add_argument("path", type=Path, help="model folder (with manifest.json) or its manifest.json")
    parser.add_argument("--name", default=None, help="name to install it under (default: its own name)")
    parser.add_argument("--dest", type=Path, default=None, help="model library folder (default: the user's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    files = import_weights(args.path, name=args.name, dest_root=args.dest)
    print(f"Imported '{files.name}' ({files.kind}) into {files.path}; checksums verified.")

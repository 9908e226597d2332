"""The ``meddifffm`` command line: one subcommand per task, each in its own module."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
from typing import Optional, Sequence

from .. import __version__
from ..errors import CancelledError, MedDiffFMError

# Each module has ``register(subparsers)``; add new subcommands here.
SUBCOMMANDS = (
    "info",
    "init_model",
    "import_weights",
    "denoise",
    "anomaly",
    "synthesize",
    "superres",
    "inpaint",
    "lesion",
    "batch",
    "prepare",
    "train",
    "finetune",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meddifffm",
        description="MedDiffFM: a 3D CT diffusion foundation model (MedDiff-FM) for denoising, anomaly maps, "
        "synthesis, super-resolution, inpainting and lesion generation.",
    )
    parser.add_argument("--version", action="version", version=f"meddifffm {__version__}")
    parser.add_argument("--progress", choices=["bar", "json", "none"], default="bar",
                        help="progress display: a bar (default), JSON lines for programs, or none")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of unexpected errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def _hoist_global_options(argv: list[str]) -> list[str]:
    # Let --progress/--debug appear after the subcommand too (``meddifffm denoise IN OUT --progress json``).
    hoisted, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--progress" and i + 1 < len(argv):
            hoisted += argv[i : i + 2]
            i += 2
            continue
        if arg.startswith("--progress=") or arg == "--debug":
            hoisted.append(arg)
        else:
            rest.append(arg)
        i += 1
    return hoisted + rest


def _report_error(args, message: str) -> None:
    if getattr(args, "progress", None) == "json":
        print(json.dumps({"stage": "error", "message": message}), flush=True)
    print("\n".join(textwrap.wrap(f"meddifffm: error: {message}", width=100)), file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 unexpected failure, 2 bad input/usage, 130 cancelled)."""
    argv = _hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from .common import CancelFlag

    args.cancel = CancelFlag()
    try:
        args.func(args)
    except CancelledError as error:
        _report_error(args, str(error))
        return 130
    except MedDiffFMError as error:
        _report_error(args, str(error))
        return 2
    except KeyboardInterrupt:
        _report_error(args, "Interrupted; nothing was written.")
        return 130
    except Exception as error:  # an unexpected failure: short message, traceback on request
        if args.debug:
            raise
        _report_error(args, f"unexpected {type(error).__name__}: {error}. Re-run with --debug for the traceback, "
                      "and please report it.")
        return 1
    return 0


def entry_point() -> None:
    sys.exit(main())

"""The ``meddifffm`` command line: one subcommand per task of the registry (built by
:mod:`.task_command`) and one module per other command."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import textwrap
from typing import Callable, Optional, Sequence

from .. import __version__
from ..errors import CancelledError, MedDiffFMError

# The subcommands in the order ``--help`` lists them. A task of the registry is built by
# :mod:`.task_command`; a task not named here comes before ``batch``. Every other name is a module
# with ``register(subparsers)``: add new non-task subcommands here.
SUBCOMMANDS = (
    "info",
    "init_model",
    "import_weights",
    "denoise",
    "anomaly",
    "calibrate_anomaly",
    "synthesize",
    "superres",
    "inpaint",
    "lesion",
    "batch",
    "serve",
    "prepare",
    "train",
    "finetune",
)


# The exit codes, one place: --help shows them and the README's table says the same.
EXIT_CODES = (
    (0, "success"),
    (1, "unexpected error, i.e. a bug (--debug shows the traceback; please report it)"),
    (2, "bad input or usage, a bad model or not enough memory: a one-paragraph message, no traceback, "
        "nothing written (batch: the failed cases are listed, the others were written)"),
    (130, "cancelled (Ctrl-C or SIGTERM, start-up included): nothing written"),
)
EXIT_CODES_TEXT = "exit codes:\n" + "\n".join(
    textwrap.fill(meaning, width=96, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7)
    for code, meaning in EXIT_CODES
)


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual but keeps the exit-code table as a table."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        head, table, tail = text.partition("exit codes:\n")
        filled = super()._fill_text(head, width, indent) if head.strip() else ""
        return filled + ("\n\n" if filled and table else "") + (table + tail if table else "")


def build_parser(between_imports: Optional[Callable[[], None]] = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; ``between_imports`` runs after each subcommand's import
    (the command line raises a remembered Ctrl-C there)."""
    parser = argparse.ArgumentParser(
        prog="meddifffm",
        description="MedDiffFM: a 3D CT diffusion foundation model (MedDiff-FM) for denoising, anomaly maps, "
        "synthesis, super-resolution, inpainting and lesion generation.",
        epilog=EXIT_CODES_TEXT,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"meddifffm {__version__}")
    parser.add_argument("--progress", choices=["bar", "json", "none"], default="bar",
                        help="progress display: a bar (default), JSON lines for programs, or none")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of unexpected errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from ..tasks.registry import TASKS
    from . import task_command

    names = list(SUBCOMMANDS)
    names[names.index("batch"):names.index("batch")] = [task for task in TASKS if task not in SUBCOMMANDS]
    for name in names:
        if name in TASKS:
            task_command.register(subparsers, TASKS[name])
        else:
            importlib.import_module(f"{__name__}.{name}").register(subparsers)
        if between_imports is not None:
            between_imports()
    for sub in _all_subparsers(subparsers):
        sub.epilog = ((sub.epilog + "\n\n") if sub.epilog else "") + EXIT_CODES_TEXT
        sub.formatter_class = _HelpFormatter
    return parser


def _all_subparsers(action) -> list:
    """Every subcommand parser, nested ones (``batch denoise``) included."""
    found = []
    for sub in dict.fromkeys(action.choices.values()):
        found.append(sub)
        for nested in sub._subparsers._group_actions if sub._subparsers is not None else ():
            found += _all_subparsers(nested)
    return found


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


def _stdout_gone() -> None:
    """The reader of our standard output went away (a closed pipe): send the rest to /dev/null so
    that Python's final flush does not fail with a traceback (the Python docs' recipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _report_error(args, message: str) -> None:
    if getattr(args, "progress", None) == "json":
        try:
            print(json.dumps({"stage": "error", "message": message}), flush=True)
        except BrokenPipeError:
            _stdout_gone()
    print("\n".join(textwrap.wrap(f"meddifffm: error: {message}", width=100, break_on_hyphens=False, break_long_words=False)), file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (see :data:`EXIT_CODES`).

    Ctrl-C (or SIGTERM) at any moment, the start-up imports included, ends with 130 and one line,
    no traceback.
    """
    startup = _StartupInterrupt()
    try:
        return _main(argv, startup)
    except KeyboardInterrupt:  # a second Ctrl-C, or one at a safe point of the start-up
        print("meddifffm: error: Interrupted; nothing was written.", file=sys.stderr, flush=True)
        return 130


class _StartupInterrupt:
    """SIGINT/SIGTERM while the subcommands import (torch, SciPy...) is only remembered, and raised
    as KeyboardInterrupt between two imports: an exception in the middle of an import leaves that
    library half-initialised, and the next use of it fails with an unrelated error."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, self)
            except ValueError:  # not the main thread
                pass

    def __call__(self, signum=None, frame=None) -> None:
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


def _main(argv: Optional[Sequence[str]], startup: _StartupInterrupt) -> int:
    argv = _hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(startup.check)
    args = parser.parse_args(argv)
    startup.check()
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from .common import CancelFlag, quiet_native_warnings

    if not args.debug:
        quiet_native_warnings()
    args.cancel = CancelFlag()
    startup.check()  # a Ctrl-C just before the cancel handler took over
    func = args.func
    if getattr(args, "server", None):  # a task command runs on the server (batch and info handle --server)
        from ..tasks.registry import TASKS

        if args.command in TASKS:
            from .remote import run_task as func
    try:
        func(args)
    except CancelledError as error:
        _report_error(args, str(error))
        return 130
    except MedDiffFMError as error:
        _report_error(args, str(error))
        return 2
    except KeyboardInterrupt:
        _report_error(args, "Interrupted; nothing was written.")
        return 130
    except BrokenPipeError:  # whoever read the progress stopped listening: stop like a cancel
        _stdout_gone()
        _report_error(args, "The reader of the output stream went away (closed pipe); stopped, nothing was written.")
        return 130
    except Exception as error:  # an unexpected failure: short message, traceback on request
        if args.cancel.requested:  # a library broken by the interrupt, not a bug of its own
            _report_error(args, "Interrupted; nothing was written.")
            return 130
        if args.debug:
            raise
        _report_error(args, f"unexpected {type(error).__name__}: {error}. Re-run with --debug for the traceback, "
                      "and please report it.")
        return 1
    return 0


def entry_point() -> None:
    try:
        code = main()
    except KeyboardInterrupt:  # a Ctrl-C while the first one was being reported
        code = 130
    if code == 130:
        # CPython exits an interrupted run by killing itself with SIGINT (status -2) when a library
        # once let a KeyboardInterrupt escape; the exit code must be 130, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    # Nothing is left to interrupt: a late Ctrl-C must not turn the exit into a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)

"""Tools for the "nothing lost, nothing silently wrong" tests: hash every input, list every file of
a folder, run the command line in-process and check a refusal (exit code, one paragraph, no
traceback, nothing written, inputs byte-identical)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Iterable, Sequence

from MedDiffFMLib.cli import main


def digests(paths: Iterable[Path]) -> Dict[str, str]:
    """sha256 of every file at or under ``paths`` (folders recursively), keyed by path."""
    found: Dict[str, str] = {}
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            found[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


def listing(folder: Path) -> set:
    """Every file and folder under ``folder`` (hidden ones included), relative."""
    return {str(p.relative_to(folder)) for p in Path(folder).rglob("*")}


def run_cli(argv: Sequence[str], capsys) -> tuple:
    """(exit code, stderr) of ``meddifffm argv`` run in-process."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_paragraph(err: str) -> str:
    """The error message of ``err`` (stderr): exactly one 'meddifffm: error:' paragraph, no traceback.
    Returns the message joined on one line."""
    assert "Traceback" not in err, err
    assert err.count("meddifffm: error:") == 1, err
    message = err[err.index("meddifffm: error:"):].strip()
    assert "\n\n" not in message, message
    return " ".join(message.split())


def assert_refused(argv: Sequence[str], capsys, watch: Path, inputs: Sequence[Path], code: int = 2) -> str:
    """Run ``argv``; assert the exit ``code``, one paragraph, no traceback, nothing new under
    ``watch`` and every input byte-identical. Returns the message on one line."""
    before_files, before_hashes = listing(watch), digests(inputs)
    got, err = run_cli(argv, capsys)
    assert got == code, (got, err)
    message = assert_one_paragraph(err)
    assert listing(watch) == before_files, sorted(listing(watch) ^ before_files)
    assert digests(inputs) == before_hashes
    return message

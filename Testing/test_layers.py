"""The library's layers import only downwards (docs/ARCHITECTURE.md):
io -> preprocessing -> models -> sampling -> engine -> tasks -> api/cli, training beside the engine
and tasks (it imports neither). Every import in MedDiffFMLib, lazy ones inside functions included,
is read with ``ast`` and checked against that order."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "MedDiffFMLib"

# Rank of each top-level part of the library; a module may import parts of lower or equal rank.
BASE = 0  # errors, progress, device, option checks, lazy exports: used by every layer
RANKS = {
    "_lazy": BASE, "errors": BASE, "progress": BASE, "device": BASE, "option_checks": BASE,
    "io": 1, "preview": 1,
    "preprocessing": 2,
    "models": 3,
    "sampling": 4,
    "engine": 5,
    "tasks": 6,
    "training": 6,
    "api": 7, "cli": 7, "server": 7, "__init__": 7,
}
# Beside, not above: training reaches neither the engine nor the tasks.
FORBIDDEN = {"training": {"engine", "tasks"}, "tasks": {"training"}, "engine": {"training"}}
# The CLI's train/finetune commands are the only way down into training.
# ("prepare" builds the training cache.)
TRAINING_ENTRIES = {"cli/train.py", "cli/finetune.py", "cli/prepare.py", "cli/__init__.py"}


def _part(path: Path) -> str:
    relative = path.relative_to(LIBRARY)
    return relative.parts[0].removesuffix(".py")


def _imported_parts(source: str, package: tuple):
    """(line, top-level library part) of every library import in ``source``, a module of the
    library's sub-package ``package`` (e.g. ``("tasks",)``; ``()`` at the top level)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                if node.level - 1 > len(package):
                    continue
                target = list(base) + (node.module.split(".") if node.module else [])
                names = [target] if target else [[alias.name] for alias in node.names]
            elif node.module and node.module.split(".")[0] == "MedDiffFMLib":
                target = node.module.split(".")[1:]
                names = [target] if target else [[alias.name] for alias in node.names]
            else:
                continue
            for name in names:
                yield node.lineno, name[0].removesuffix(".py")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "MedDiffFMLib" and len(parts) > 1:
                    yield node.lineno, parts[1]


def test_no_module_imports_upwards():
    problems = []
    for path in sorted(LIBRARY.rglob("*.py")):
        part = _part(path)
        relative = path.relative_to(LIBRARY).as_posix()
        for line, imported in _imported_parts(path.read_text(), path.relative_to(LIBRARY).parent.parts):
            if imported not in RANKS:
                continue
            upward = RANKS[imported] > RANKS[part]
            beside = imported in FORBIDDEN.get(part, ())
            training = imported == "training" and part == "cli" and relative not in TRAINING_ENTRIES
            if upward or beside or training:
                problems.append(f"{relative}:{line} imports {imported}")
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_the_checker_resolves_every_import_form():
    """The checker itself: relative, parent-relative, lazy and absolute imports are all resolved."""
    source = ("from ..tasks import skeleton\nfrom .schedule import NoiseSchedule\nfrom .. import engine\n"
              "def f():\n    import MedDiffFMLib.cli.common\n    from MedDiffFMLib.training import objective\n")
    assert list(_imported_parts(source, ("sampling",))) == [
        (1, "tasks"), (2, "sampling"), (3, "engine"), (5, "cli"), (6, "training")]

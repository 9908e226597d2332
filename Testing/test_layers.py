"""The library's layers import only downwards (docs/ARCHITECTURE.md):
io -> preprocessing -> models -> sampling -> engine -> tasks -> api/cli, training beside the engine
and tasks (it imports neither). Every import in MedDiffFMLib, lazy ones inside functions included,
is read with ``ast`` and checked against that order; no two modules import each other, directly or
round a longer loop; and the library never imports what lives beside it in the repository (the
developer tools in tools/, the benchmarks)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

LIBRARY = Path(__file__).resolve().parents[1] / "MedDiffFMLib"
# Top-level packages of the repository that are not the library and never ship with it.
OUTSIDE = {"tools", "benchmarks", "Testing", "scripts"}

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


# ----------------------------------------------------------------------------- import loops


def _module_name(path: Path, library: Path) -> tuple[str, tuple]:
    """(dotted module name, package parts) of a library file; a package is named by its __init__."""
    parts = path.relative_to(library.parent).with_suffix("").parts
    package = parts[:-1]
    return (".".join(package) if parts[-1] == "__init__" else ".".join(parts)), package


def _imported_modules(source: str, package: tuple, modules: set) -> Iterator[tuple[int, str]]:
    """(line, dotted library module) of every library import in ``source``, lazy ones included:
    ``from .x import y`` names the module ``x.y`` when there is one, else ``x`` (a package's __init__)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    continue
                base = list(package[: len(package) - (node.level - 1)])
                target = ".".join(base + (node.module.split(".") if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                name = f"{target}.{alias.name}"
                if name in modules:
                    yield node.lineno, name
                elif target in modules:
                    yield node.lineno, target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                while parts and ".".join(parts) not in modules:
                    parts.pop()
                if parts:
                    yield node.lineno, ".".join(parts)


def import_graph(library: Path = LIBRARY) -> dict[str, set[str]]:
    """Every library module and the library modules it imports (itself left out)."""
    files = {_module_name(path, library): path for path in sorted(library.rglob("*.py"))}
    modules = {name for name, _ in files}
    return {name: {target for _, target in _imported_modules(path.read_text(), package, modules)} - {name}
            for (name, package), path in files.items()}


def import_loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules that import each other round a loop: the strongly connected components of more than
    one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        loops.append(sorted(component))
    return loops


def test_no_modules_import_each_other_in_a_loop():
    loops = import_loops(import_graph())
    assert not loops, "modules that import each other (break the loop: move the shared part down):\n" + "\n".join(
        " <-> ".join(loop) for loop in loops)


def test_the_loop_finder_sees_a_lazy_loop_and_nothing_else(tmp_path):
    """The checker itself, on a made-up library: a loop closed by an import inside a function is found;
    a chain, and a package's __init__ re-exporting its own module, are not loops."""
    lib = tmp_path / "MedDiffFMLib"
    (lib / "training").mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "training" / "__init__.py").write_text("from .trainer import Trainer\n")
    (lib / "training" / "trainer.py").write_text("from .resume import resume\nfrom ..errors import E\n")
    (lib / "training" / "resume.py").write_text("def resume(t):\n    from .trainer import Trainer\n")
    (lib / "errors.py").write_text("import MedDiffFMLib.training.resume\n")
    graph = import_graph(lib)
    assert graph["MedDiffFMLib.training"] == {"MedDiffFMLib.training.trainer"}
    assert graph["MedDiffFMLib.errors"] == {"MedDiffFMLib.training.resume"}
    assert import_loops(graph) == [["MedDiffFMLib.errors", "MedDiffFMLib.training.resume",
                                    "MedDiffFMLib.training.trainer"]]
    (lib / "training" / "resume.py").write_text("def resume(t):\n    return t\n")
    assert import_loops(import_graph(lib)) == []


def test_the_library_never_imports_the_tools_or_benchmarks_beside_it():
    problems = []
    for path in sorted(LIBRARY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            problems += [f"{path.relative_to(LIBRARY).as_posix()}:{node.lineno} imports {name}"
                         for name in names if name.split(".")[0] in OUTSIDE]
    assert not problems, "the library imports what does not ship with it:\n" + "\n".join(problems)


def test_the_tools_are_not_in_the_pip_package():
    """pyproject's package list takes the library only: tools/ (and the benchmarks) stay in the repository."""
    import pytest
    from setuptools import find_packages

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = LIBRARY.parent
    include = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = find_packages(str(root), include=include)
    assert "MedDiffFMLib.training" in shipped and (root / "tools" / "gpu_chunk" / "__init__.py").is_file()
    assert not [name for name in shipped if name.split(".")[0] in OUTSIDE], shipped

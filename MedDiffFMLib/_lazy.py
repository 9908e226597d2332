"""Package attributes imported on first use (PEP 562), so that importing one light submodule of a
package (e.g. ``io.permissions``) does not import SimpleITK through the package's other modules: a
GPU training node has no SimpleITK."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, namespace: dict, exports: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports ``name`` from its submodule
    ``exports[name]`` on first access and keeps it in ``namespace`` (the package's globals)."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__

"""Check, and with the user's consent install, the Python packages the library needs in Slicer.

Nothing is ever installed silently: ``ensure()`` asks through the injected ``confirm`` callable
(a dialog in Slicer, a canned answer in tests). PyTorch is installed with the PyTorch extension's
installer when that extension is present (it picks the CUDA build matching the driver), else with
``slicer.util.pip_install``.
"""

import importlib
import importlib.util
import logging
from typing import Callable, Dict, List, Optional

from .I18n import _

# Python module -> pip requirement (the library's dependencies, pyproject.toml). torch first: monai
# must not pull a CUDA build from PyPI. Slicer already ships numpy, SimpleITK and Pillow.
REQUIRED_PACKAGES: Dict[str, str] = {
    "torch": "torch>=2.2",
    "monai": "monai>=1.5",
    "numpy": "numpy>=1.24",
    "SimpleITK": "SimpleITK>=2.3",
    "scipy": "scipy>=1.10",
    "safetensors": "safetensors>=0.4",
    "einops": "einops>=0.7",
    "tqdm": "tqdm>=4.60",
    "PIL": "pillow>=9.0",
}


class DependencyError(Exception):
    """The packages are missing and were not installed (declined or failed)."""


def _hasModule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def installTorchInSlicer() -> None:
    """Install PyTorch in Slicer's Python: with the PyTorch extension when present."""
    import slicer

    if hasattr(slicer.modules, "pytorchutils"):
        import PyTorchUtils

        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=">=2.2")
        if torch is None:
            raise DependencyError(_("The PyTorch extension did not install PyTorch."))
    else:
        slicer.util.pip_install(REQUIRED_PACKAGES["torch"])


def pipInstallInSlicer(requirements: List[str]) -> None:
    import slicer

    slicer.util.pip_install(requirements)


class DependencyChecker:
    """:param hasModule: ``name -> bool`` (default: importlib's find_spec, which does not import).
    :param installTorch: installs PyTorch (default: the PyTorch extension or pip, inside Slicer).
    :param pipInstall: installs a list of pip requirements (default: ``slicer.util.pip_install``).
    """

    def __init__(self, packages: Optional[Dict[str, str]] = None,
                 hasModule: Callable[[str], bool] = _hasModule,
                 installTorch: Callable[[], None] = installTorchInSlicer,
                 pipInstall: Callable[[List[str]], None] = pipInstallInSlicer):
        self.packages = dict(REQUIRED_PACKAGES if packages is None else packages)
        self.hasModule = hasModule
        self.installTorch = installTorch
        self.pipInstall = pipInstall
        self.checked = False

    def missing(self) -> List[str]:
        """Python modules that cannot be found."""
        importlib.invalidate_caches()
        return [name for name in self.packages if not self.hasModule(name)]

    def confirmationText(self, missing: List[str]) -> str:
        return _(
            "MedDiffFM needs these Python packages, which are not installed in Slicer: {names}.\n\n"
            "Install them now? This downloads them from the Python package index (PyTorch may be "
            "several GB) and can take several minutes; Slicer may have to be restarted afterwards."
        ).format(names=", ".join(missing))

    def ensure(self, confirm: Callable[[str], bool]) -> bool:
        """Return True when every package is available, installing the missing ones if the user
        agrees. Raise :class:`DependencyError` when they stay missing."""
        if self.checked:
            return True
        missing = self.missing()
        if not missing:
            self.checked = True
            return True
        if not confirm(self.confirmationText(missing)):
            raise DependencyError(_(
                "MedDiffFM cannot run without {names}. Install them when asked, or from the Python "
                "console: slicer.util.pip_install(...).").format(names=", ".join(missing)))
        try:
            if "torch" in missing:
                logging.info("MedDiffFM: installing PyTorch")
                self.installTorch()
            others = [self.packages[name] for name in missing if name != "torch"]
            if others:
                logging.info("MedDiffFM: installing %s", " ".join(others))
                self.pipInstall(others)
        except DependencyError:
            raise
        except Exception as error:  # pip failures come as several exception types
            raise DependencyError(_("Installing {names} failed: {error}").format(
                names=", ".join(missing), error=error)) from error
        stillMissing = self.missing()
        if stillMissing:
            raise DependencyError(_(
                "{names} could not be imported after installation. Restart Slicer and try again.").format(
                names=", ".join(stillMissing)))
        self.checked = True
        return True

"""The chest CT that ships with the extension, and its entry in Slicer's Sample Data module.

Where it is: an installed extension has it in the module's own ``Resources/SampleData`` (the top-level
CMakeLists.txt installs ``Resources/`` there, beside ``MedDiffFM.py``); a source checkout has it one
level up, at the repository root, the same two places :func:`Process.libraryRoot` looks for the
library. It is registered with Sample Data as a ``file://`` address, so loading it works offline:
Sample Data copies the file into its cache and checks its sha256, as for a download.

The lookup is pure Python (tested against an installed layout); only :func:`registerSampleData`
needs the Slicer application.
"""

import os
import pathlib
from typing import Optional


MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SAMPLE_CATEGORY = "MedDiffFM"
SAMPLE_NAME = "MedDiffFMChestCT"
SAMPLE_FILE = "chest_ct_sample.nii.gz"
SAMPLE_NODE_NAME = "Chest CT"
SAMPLE_SHA256 = "1f615aec03649164c887f88ba8e47d57db8daf794655eeba020c721ad842f408"
"""sha256 of ``Resources/SampleData/chest_ct_sample.nii.gz`` (a test checks it against the file)."""
THUMBNAIL = "MedDiffFMChestCT.png"
"""Sample Data's thumbnail, in the module's ``Resources/Icons`` (made by scripts/screenshots.py)."""


def resourceCandidates(moduleDir: str = MODULE_DIR):
    """The ``Resources`` folders that may hold the shipped data, installed layout first."""
    return [os.path.join(moduleDir, "Resources"), os.path.join(os.path.dirname(moduleDir), "Resources")]


def sampleDataPath(moduleDir: str = MODULE_DIR) -> Optional[str]:
    """Path of the bundled chest CT, or ``None`` when this installation has none."""
    for resources in resourceCandidates(moduleDir):
        path = os.path.join(resources, "SampleData", SAMPLE_FILE)
        if os.path.isfile(path):
            return os.path.abspath(path)
    return None


def thumbnailPath(moduleDir: str = MODULE_DIR) -> Optional[str]:
    path = os.path.join(moduleDir, "Resources", "Icons", THUMBNAIL)
    return path if os.path.isfile(path) else None


def sampleDataSourceArguments(moduleDir: str = MODULE_DIR) -> Optional[dict]:
    """Keyword arguments of ``SampleData.SampleDataLogic.registerCustomSampleDataSource`` for the
    bundled CT (``None`` without the file)."""
    path = sampleDataPath(moduleDir)
    if path is None:
        return None
    return dict(
        category=SAMPLE_CATEGORY,
        sampleName=SAMPLE_NAME,
        uris=[pathlib.Path(path).as_uri()],
        fileNames=[SAMPLE_FILE],
        nodeNames=[SAMPLE_NODE_NAME],
        checksums=[f"SHA256:{SAMPLE_SHA256}"],
        thumbnailFileName=thumbnailPath(moduleDir),
    )


def registerSampleData(sampleDataModule=None, moduleDir: str = MODULE_DIR) -> bool:
    """Add the bundled chest CT to Slicer's Sample Data module (once Slicer has started).

    :param sampleDataModule: Slicer's ``SampleData`` module (imported when not given).
    :return: whether it was registered (False: no Sample Data module or no bundled file).
    """
    arguments = sampleDataSourceArguments(moduleDir)
    if arguments is None:
        return False
    if sampleDataModule is None:
        try:
            import SampleData as sampleDataModule
        except ImportError:  # Slicer built without the Sample Data module
            return False
    sampleDataModule.SampleDataLogic.registerCustomSampleDataSource(**arguments)
    return True

"""Paths of the repository, and ``sys.path`` set up for importing the module's package."""

import os
import sys

HELPERS_DIR = os.path.dirname(os.path.abspath(__file__))
TESTING_DIR = os.path.dirname(HELPERS_DIR)
REPO_ROOT = os.path.dirname(TESTING_DIR)
MODULE_DIR = os.path.join(REPO_ROOT, "MedDiffFM")
UI_FILE = os.path.join(MODULE_DIR, "Resources", "UI", "MedDiffFM.ui")
FAKE_CLI = os.path.join(HELPERS_DIR, "fake_meddifffm.py")
FAKE_COMMAND = [sys.executable, FAKE_CLI]


def setup() -> None:
    for path in (MODULE_DIR, REPO_ROOT):
        if path not in sys.path:
            sys.path.insert(0, path)


setup()

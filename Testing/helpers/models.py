"""Session-scoped tiny models for task tests: a random tiny base model and tiny superres / lesion
ControlNets attached to it, written once per test session with ``meddifffm init-model``.

Import the fixtures into a test module (``from helpers.models import tiny_models  # noqa: F401``);
pytest then offers them to that module's tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TinyModels:
    """Folders of the tiny models (the ControlNets sit beside their base, as the loader expects)."""

    root: Path
    base: Path
    superres: Path
    lesion: Path


def write_tiny_models(root: Path) -> TinyModels:
    """Write the three tiny models under ``root`` with the command line (as a user would)."""
    from MedDiffFMLib.cli import main

    root.mkdir(parents=True, exist_ok=True)
    base = root / "tiny-base"
    assert main(["init-model", "--config", "tiny", "--seed", "0", str(base)]) == 0
    folders = {}
    for task in ("superres", "lesion"):
        folder = root / f"tiny-{task}"
        assert main(["init-model", "--controlnet", task, "--base", str(base), "--seed", "1", str(folder)]) == 0
        folders[task] = folder
    return TinyModels(root=root, base=base, superres=folders["superres"], lesion=folders["lesion"])


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    """The tiny base, superres and lesion models (random weights: outputs are noise-like)."""
    return write_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def tiny_engines(tiny_models):
    """Loaded CPU engines for the tiny models, keyed by role (loading once keeps tests fast)."""
    from MedDiffFMLib.engine import Engine, EngineOptions

    def make(folder: Path, role: str, task=None) -> Engine:
        return Engine(EngineOptions(model=str(folder), device="cpu"), role=role, expect_task=task)

    return {
        "base": make(tiny_models.base, "base"),
        "superres": make(tiny_models.superres, "superres", "superres"),
        "lesion": make(tiny_models.lesion, "lesion", "lesion"),
    }


def write_random_tiny_model(folder: Path, name: str, anatomy_channels: int = 0, seed: int = 2) -> Path:
    """A tiny base model whose output depends on its input.

    MONAI zero-initialises the U-Net's output layer, so a freshly initialised model predicts zero
    noise whatever its input; this one gets small random weights there.
    """
    import torch

    from MedDiffFMLib.models.config import named_config
    from MedDiffFMLib.models.network import MedDiffFMUNet
    from MedDiffFMLib.models.weights import save_model

    config = named_config("tiny")
    config.name, config.anatomy_channels = name, anatomy_channels
    torch.manual_seed(seed)
    module = MedDiffFMUNet(config)
    with torch.no_grad():
        for parameter in module.parameters():
            if not parameter.detach().abs().sum():
                parameter.normal_(0.0, 0.05)
    save_model(module, folder, name=name, card=f"# {name}\n\nRandom weights, for tests only.\n")
    return folder


@pytest.fixture(scope="session")
def tiny_anatomy_model(tmp_path_factory) -> Path:
    """A tiny base model with two anatomy channels (labels 1 and 2 condition the synthesis), whose
    output depends on its input (:func:`write_random_tiny_model`)."""
    return write_random_tiny_model(tmp_path_factory.mktemp("tiny_anatomy") / "tiny-anatomy", "tiny-anatomy", 2)


@pytest.fixture(scope="session")
def tiny_random_base(tmp_path_factory) -> Path:
    """A tiny base model whose output depends on its input (:func:`write_random_tiny_model`)."""
    return write_random_tiny_model(tmp_path_factory.mktemp("tiny_random") / "tiny-random", "tiny-random", 0, seed=3)


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Run torch on one thread during a test (restored afterwards).

    On the shared 2-core test machine several threads per process oversubscribe the cores: a
    tiny-model forward pass took 2.5 s with 2 threads under load and 0.1 s with one. Importing this
    fixture into a test module makes it apply to that module's tests.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

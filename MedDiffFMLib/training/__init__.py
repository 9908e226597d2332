"""Training and fine-tuning of MedDiff-FM: data cache, multi-level sampling, one trainer, DDP, export.

Layers above: models, sampling (for the training scheduler), io and preprocessing (for preparing
the cache). Training from a prepared cache needs no SimpleITK: ``prepare_cache`` (which does) is
imported on first use.
"""

from ..models.inputs import anatomy_one_hot  # the network-input contract's one-hot, for training code
from .cache import TrainingCache
from .condition_builders import CONDITION_BUILDERS, condition_builder, thick_slices
from .config import ExportOptions, TrainConfig, TrainConfigError
from .dataset import SampleOptions, SampleSource, collate
from .manifest import CaseEntry, Manifest, ManifestError, load_manifest
from .multilevel import LEVELS, Box, choose_box, sample_box
from .objective import ControlNetObjective, DiffusionObjective, build_model_input
from .run_state import RunState, lr_factor
from .trainer import Trainer, TrainResult, export_only

__all__ = [
    "TrainingCache",
    "prepare_cache",
    "CONDITION_BUILDERS",
    "anatomy_one_hot",
    "condition_builder",
    "thick_slices",
    "ExportOptions",
    "TrainConfig",
    "TrainConfigError",
    "SampleOptions",
    "SampleSource",
    "collate",
    "CaseEntry",
    "Manifest",
    "ManifestError",
    "load_manifest",
    "LEVELS",
    "Box",
    "choose_box",
    "sample_box",
    "ControlNetObjective",
    "DiffusionObjective",
    "build_model_input",
    "RunState",
    "lr_factor",
    "Trainer",
    "TrainResult",
    "export_only",
]


def __getattr__(name: str):
    # PEP 562: preparing needs SimpleITK, training does not; import it only when asked for.
    if name == "prepare_cache":
        from .prepare import prepare_cache

        return prepare_cache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Training and fine-tuning of MedDiff-FM: data cache, multi-level sampling, one trainer, DDP, export.

Layers above: models, sampling (for the training scheduler), io and preprocessing (for the cache).
"""

from .cache import TrainingCache, prepare_cache
from .conditions import CONDITION_BUILDERS, anatomy_one_hot, condition_builder, thick_slices
from .config import ExportOptions, TrainConfig, TrainConfigError
from .dataset import SampleOptions, SampleSource, collate
from .manifest import CaseEntry, Manifest, ManifestError, load_manifest
from .multilevel import LEVELS, Box, choose_box, sample_box
from .objective import ControlNetObjective, DiffusionObjective, build_model_input
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
    "Trainer",
    "TrainResult",
    "export_only",
]

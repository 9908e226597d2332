"""MedDiff-FM networks, configs and the weights format."""

from .config import ControlNetConfig, ModelConfig, named_config
from .network import ConditionedModel, MedDiffFMControlNet, MedDiffFMUNet
from .registry import import_weights, resolve_model
from .weights import ModelFiles, build_module, save_model, verify_model_folder
from .loading import load_pipeline_model

__all__ = [
    "ControlNetConfig",
    "ModelConfig",
    "named_config",
    "ConditionedModel",
    "MedDiffFMControlNet",
    "MedDiffFMUNet",
    "import_weights",
    "resolve_model",
    "ModelFiles",
    "build_module",
    "save_model",
    "verify_model_folder",
    "load_pipeline_model",
]

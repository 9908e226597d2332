"""Downstream tasks of MedDiff-FM, each built on the shared sampler.

One module per task (denoise, anomaly, synthesize, superres, inpaint, lesion) plus the shared
steps they are built from: :mod:`.skeleton` (prepare, preprocessing, plan the time steps, initial
sample, run the sampler, postprocessing, with progress and cancel handled once), :mod:`.shared`
(model-dependent checks, pixel types), :mod:`.repaint` (known-region hook, RePaint regeneration),
:mod:`.batch` (many volumes, one model load) and :mod:`.registry` (every task's options, runner,
model role and command-line options, read by the CLI, the API and the Slicer module).

The model on its device is :class:`~MedDiffFMLib.engine.Engine` (the layer below the tasks);
``Engine`` and ``EngineOptions`` are re-exported here because the README's API promises
``MedDiffFMLib.tasks.Engine``.
"""

from ..engine import Engine, EngineOptions
from .anomaly import AnomalyOptions, AnomalyResult, anomaly_map_image
from .batch import BatchResult, find_cases, run_batch
from .denoise import DenoiseOptions, DenoiseResult, denoise_image
from .inpaint import InpaintOptions, inpaint_image
from .lesion import LesionOptions, generate_lesion_image
from .registry import TASKS, TaskEntry, export_tasks, task_entry
from .repaint import RegenerateResult
from .skeleton import prepare_ct
from .superres import SuperResOptions, SuperResResult, super_resolve_image
from .synthesize import SynthesisOptions, SynthesisResult, synthesize_image

__all__ = [
    "AnomalyOptions",
    "AnomalyResult",
    "BatchResult",
    "DenoiseOptions",
    "DenoiseResult",
    "Engine",
    "EngineOptions",
    "InpaintOptions",
    "LesionOptions",
    "RegenerateResult",
    "SuperResOptions",
    "SuperResResult",
    "SynthesisOptions",
    "SynthesisResult",
    "TASKS",
    "TaskEntry",
    "export_tasks",
    "task_entry",
    "anomaly_map_image",
    "denoise_image",
    "find_cases",
    "generate_lesion_image",
    "inpaint_image",
    "prepare_ct",
    "run_batch",
    "super_resolve_image",
    "synthesize_image",
]

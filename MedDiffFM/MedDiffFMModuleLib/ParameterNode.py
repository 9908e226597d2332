"""The module's parameter node (Slicer's ``parameterNodeWrapper``).

Widgets of ``Resources/UI/MedDiffFM.ui`` carry a ``SlicerParameterName`` dynamic property naming
one of these parameters; ``connectGui`` keeps both in sync. Two parameters have no GUI connector
in Slicer and are synchronised by the panel itself: ``segmentationNode``/``segmentId`` (the
``qMRMLSegmentSelectorWidget``) and ``model`` (a combo box filled from ``meddifffm info``).

Outside Slicer (``slicer-core`` has no ``slicer.parameterNodeWrapper``) the decorator and the
annotations fall back to inert stand-ins, so that tests can read this declaration.
"""

from typing import Annotated

import slicer

from .Tasks import Device, InputRegion, Region, Task

try:
    from slicer.parameterNodeWrapper import Maximum, Minimum, WithinRange, parameterNodeWrapper
except ImportError:  # outside the Slicer application
    import dataclasses

    def parameterNodeWrapper(cls):
        return cls

    @dataclasses.dataclass
    class WithinRange:
        minimum: float
        maximum: float

    @dataclasses.dataclass
    class Minimum:
        minimum: float

    @dataclasses.dataclass
    class Maximum:
        maximum: float


SEED_MAX = 2**31 - 1

# Parameters bound by ``connectGui`` through SlicerParameterName (the others are synced by hand).
GUI_BOUND_PARAMETERS = (
    "inputVolume", "anatomyVolume", "task", "strength", "steps", "seed", "region", "inputRegion", "useThreshold", "threshold",
    "factorZ", "outputVolume", "device",
)


@parameterNodeWrapper
class MedDiffFMParameterNode:
    """
    inputVolume - the CT to process (reference geometry, optional, for synthesis).
    task - which MedDiff-FM task runs.
    strength - denoising strength: fraction of the estimated noise removed, 0..1.
    steps - sampling steps; 0 = the model's default.
    seed - random seed; -1 = random.
    region - body region for synthesis.
    anatomyVolume - anatomy label map for synthesis (shown only for a model with anatomy channels).
    inputRegion - body region of the input CT (the other tasks); auto = guessed by the library.
    useThreshold, threshold - segment the anomaly map above this value instead of the model's calibrated
        threshold (map units: times the residual of healthy tissue of the same structure).
    factorZ - thin slices per thick slice (super-resolution); 0 = automatic.
    segmentationNode, segmentId - the region for inpainting / lesion generation.
    outputVolume - an existing volume to overwrite; none = create "<input> <task>".
    model - model name or folder; empty = the library's default.
    device - auto, GPU or CPU.
    """

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    task: Task = Task.DENOISE
    strength: Annotated[float, WithinRange(0.0, 1.0)] = 1.0
    steps: Annotated[int, WithinRange(0, 1000)] = 0
    seed: Annotated[int, WithinRange(-1, SEED_MAX)] = -1
    region: Region = Region.CHEST
    anatomyVolume: slicer.vtkMRMLLabelMapVolumeNode
    inputRegion: InputRegion = InputRegion.AUTO
    useThreshold: bool = False
    threshold: Annotated[float, WithinRange(0.0, 4000.0)] = 5.0
    factorZ: Annotated[int, WithinRange(0, 16)] = 0
    segmentationNode: slicer.vtkMRMLSegmentationNode
    segmentId: str = ""
    outputVolume: slicer.vtkMRMLScalarVolumeNode
    model: str = ""
    device: Device = Device.AUTO

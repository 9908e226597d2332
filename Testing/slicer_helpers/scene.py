"""A real MRML scene built from the ``slicer-core`` wheel (no Slicer application, no Qt).

``mrmlScene`` is a pytest fixture: a fresh ``vtkMRMLScene`` with a ``vtkSlicerApplicationLogic``,
default colour nodes, the Volumes / Segmentations / SubjectHierarchy logics registered, three slice
composite nodes (Red, Yellow, Green) and ``slicer.mrmlScene`` / ``slicer.modules.<name>.logic()``
set so that the ``slicer.util`` functions that only need those work.
"""

import dataclasses
import types

import numpy as np
import pytest

from . import paths  # noqa: F401  (sys.path)

slicer = pytest.importorskip(
    "slicer", reason="needs the slicer-core wheel (pip install slicer-core); never the unrelated 'slicer' package")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core (no vtkMRMLScene)", allow_module_level=True)

import vtk  # noqa: E402


@dataclasses.dataclass
class SceneContext:
    scene: object
    appLogic: object
    logics: dict

    def nodeCount(self) -> int:
        return self.scene.GetNumberOfNodes()

    def nodeIds(self) -> set:
        return {self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())}


def makeScene() -> SceneContext:
    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    previous = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()  # no colour files outside Slicer: silence that error
    try:
        colorLogic = slicer.vtkSlicerColorLogic()
        colorLogic.SetMRMLApplicationLogic(appLogic)
        colorLogic.SetMRMLScene(scene)
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(previous)
    logics = {"colors": colorLogic}
    for name, cls in (("volumes", slicer.vtkSlicerVolumesLogic),
                      ("segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                      ("subjecthierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(appLogic)
        logic.SetMRMLScene(scene)
        logics[name] = logic
    for name, logic in logics.items():
        appLogic.SetModuleLogic(name, logic)
    for layout in ("Red", "Yellow", "Green"):
        composite = slicer.vtkMRMLSliceCompositeNode()
        composite.SetLayoutName(layout)
        scene.AddNode(composite)
    # The ColdToHotRainbow table comes from Slicer's colour files, absent from slicer-core.
    scene.AddNode(coldToHotRainbow())
    return SceneContext(scene, appLogic, logics)


def coldToHotRainbow():
    """A stand-in for Slicer's "ColdToHotRainbow" table: blue (low) to red (high)."""
    import colorsys

    table = slicer.vtkMRMLColorTableNode()
    table.SetName("ColdToHotRainbow")
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    for index in range(256):
        red, green, blue = colorsys.hsv_to_rgb(0.66 * (1 - index / 255.0), 1.0, 1.0)
        table.SetColor(index, f"c{index}", red, green, blue, 1.0)
    return table


@pytest.fixture
def mrmlScene():
    context = makeScene()
    saved = {name: getattr(slicer, name, None) for name in ("mrmlScene", "modules")}
    slicer.mrmlScene = context.scene
    slicer.modules = types.SimpleNamespace(
        **{name: types.SimpleNamespace(logic=(lambda logic=logic: logic)) for name, logic in context.logics.items()})
    try:
        yield context
    finally:
        for name, value in saved.items():
            if value is None:
                if hasattr(slicer, name):
                    delattr(slicer, name)
            else:
                setattr(slicer, name, value)
        context.scene.Clear(True)


def ijkToRas(spacing=(0.7, 0.9, 2.5), angles=(0.3, -0.2, 0.15), origin=(10.5, -20.25, 33.125)) -> np.ndarray:
    """An oblique, anisotropic IJK-to-RAS matrix."""
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ rx @ np.diag(spacing)
    matrix[:3, 3] = origin
    return matrix


def addCtVolume(name="CT", shape=(6, 9, 11), matrix=None, seed=0):
    """A small int16 'CT' volume (array shape ``(k, j, i)``) with oblique anisotropic geometry."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    node = slicer.util.addVolumeFromArray(array, ijkToRas() if matrix is None else matrix, name=name)
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetAutoWindowLevel(False)
    node.GetDisplayNode().SetWindowLevel(400, 40)
    return node, array


def volumeMatrix(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def addSegmentOnGrid(scene, mask: np.ndarray, matrix: np.ndarray, name="lesion", segmentationNode=None):
    """A segment painted on its own grid (``matrix``), like Segment Editor on another volume."""
    if segmentationNode is None:
        segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentationNode.CreateDefaultDisplayNodes()
    segmentId = segmentationNode.GetSegmentation().AddEmptySegment("", name)
    reference = slicer.vtkMRMLScalarVolumeNode()
    reference.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(matrix))
    slicer.util.updateVolumeFromArray(reference, np.zeros(mask.shape, np.uint8))
    scene.AddNode(reference)
    try:
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), segmentationNode, segmentId, reference)
    finally:
        scene.RemoveNode(reference)
    return segmentationNode, segmentId

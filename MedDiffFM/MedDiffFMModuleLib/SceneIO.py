"""Move data between the MRML scene and the files the ``meddifffm`` process reads and writes.

Only storage nodes and the module logics are used (no ``slicer.util.saveNode``/``loadVolume``,
which need the Qt application), so this runs the same in Slicer and on ``slicer-core``.
Nothing here adds a node to the scene until a result is imported: a failed or cancelled run
leaves the scene exactly as it was.
"""

import logging
from typing import Optional, Tuple

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .I18n import _

ANOMALY_COLOR_NODE_IDS = (
    "vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
    "vtkMRMLColorTableNodeRainbow",
)
ANOMALY_COLOR_NODE_NAMES = ("ColdToHotRainbow",)
ANOMALY_OPACITY = 0.5
GEOMETRY_TOLERANCE = 1e-3


class SceneError(Exception):
    """A selection or a file cannot be used; the message says why and what to do."""


# --------------------------------------------------------------------------------------------
# Writing inputs
# --------------------------------------------------------------------------------------------


def writeVolume(volumeNode, path: str) -> None:
    """Write ``volumeNode`` (voxels and its own IJK-to-RAS geometry) to ``path`` (.nrrd).

    A standalone storage node is used, so the node's own storage node and the scene are untouched.
    """
    if volumeNode is None or volumeNode.GetImageData() is None:
        raise SceneError(_("The volume has no voxel data."))
    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(path)
    storageNode.SetUseCompression(False)
    if not storageNode.WriteData(volumeNode):
        raise SceneError(_("Could not write '{name}' to the temporary file {path}.").format(
            name=volumeNode.GetName(), path=path))


def segmentMaskArray(segmentationNode, segmentId: str, referenceVolumeNode) -> np.ndarray:
    """The segment as a 0/1 ``uint8`` array ``(k, j, i)`` on the grid of ``referenceVolumeNode``.

    The segment may be stored on any grid and under another transform: it is resampled (nearest
    neighbour) onto the volume's voxels.
    """
    segmentation = segmentationNode.GetSegmentation()
    segment = segmentation.GetSegment(segmentId) if segmentId else None
    if segment is None:
        raise SceneError(_("Select a segment of '{segmentation}' (draw it with Segment Editor).").format(
            segmentation=segmentationNode.GetName()))
    segmentName = segment.GetName()

    labelmap = slicer.vtkOrientedImageData()
    segmentationNode.GetBinaryLabelmapRepresentation(segmentId, labelmap)
    if _isEmpty(labelmap):
        raise SceneError(_("The segment '{segment}' is empty: paint the region with Segment Editor first.").format(
            segment=segmentName))

    reference = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(referenceVolumeNode)
    segmentToVolume = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
        segmentationNode.GetParentTransformNode(), referenceVolumeNode.GetParentTransformNode(), segmentToVolume)
    resampled = slicer.vtkOrientedImageData()
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            labelmap, reference, resampled, False, False, segmentToVolume):
        raise SceneError(_("The segment '{segment}' could not be resampled onto '{volume}'.").format(
            segment=segmentName, volume=referenceVolumeNode.GetName()))
    dims = reference.GetDimensions()
    mask = np.zeros(tuple(reversed(dims)), dtype=np.uint8)
    if not _isEmpty(resampled):
        values = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars())
        values = values.reshape(tuple(reversed(resampled.GetDimensions())))
        # With padImage=False the output covers exactly the reference extent.
        if values.shape == mask.shape:
            mask[values > 0] = 1
    if not mask.any():
        raise SceneError(_("The segment '{segment}' lies outside the volume '{volume}': draw it on this volume.").format(
            segment=segmentName, volume=referenceVolumeNode.GetName()))
    return mask


def writeSegmentMask(segmentationNode, segmentId: str, referenceVolumeNode, path: str) -> int:
    """Write the segment as a 0/1 mask on the grid of ``referenceVolumeNode``; return its voxel count."""
    mask = segmentMaskArray(segmentationNode, segmentId, referenceVolumeNode)
    labelmapNode = slicer.vtkMRMLLabelMapVolumeNode()  # never added to the scene
    labelmapNode.CopyOrientation(referenceVolumeNode)
    slicer.util.updateVolumeFromArray(labelmapNode, mask)
    writeVolume(labelmapNode, path)
    return int(mask.sum())


def _isEmpty(image) -> bool:
    extent = image.GetExtent()
    if extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]:
        return True
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        return True
    low, high = scalars.GetRange()
    return high <= 0 and low >= 0


# --------------------------------------------------------------------------------------------
# Reading results
# --------------------------------------------------------------------------------------------


def readVolume(path: str, labelmap: bool = False):
    """Read a file into a new volume node that is NOT in the scene."""
    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(path)
    storageNode.SetSingleFile(True)
    if not storageNode.ReadData(node) or node.GetImageData() is None:
        raise SceneError(_("Could not read the result file {path}.").format(path=path))
    return node


def _ijkToRas(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def sameGrid(a, b, tolerance: float = GEOMETRY_TOLERANCE) -> bool:
    """Same voxel dimensions and (nearly) the same IJK-to-RAS matrix."""
    if a.GetImageData() is None or b.GetImageData() is None:
        return False
    if tuple(a.GetImageData().GetDimensions()) != tuple(b.GetImageData().GetDimensions()):
        return False
    return bool(np.abs(_ijkToRas(a) - _ijkToRas(b)).max() <= tolerance)


def importResultVolume(scene, path: str, name: str, geometryNode=None, outputNode=None):
    """Put the volume in ``path`` into the scene and return its node.

    :param geometryNode: when the result has this node's voxel dimensions, it gets exactly this
        node's geometry (origin, spacing, directions) and parent transform.
    :param outputNode: an existing node to update instead of adding a new one.
    """
    loaded = readVolume(path)
    if geometryNode is not None and geometryNode.GetImageData() is not None:
        sameDims = tuple(loaded.GetImageData().GetDimensions()) == tuple(geometryNode.GetImageData().GetDimensions())
        if sameDims:
            difference = np.abs(_ijkToRas(loaded) - _ijkToRas(geometryNode)).max()
            if difference > GEOMETRY_TOLERANCE:
                logging.warning("MedDiffFM: the result's geometry differs from '%s' by %g; the input's is used.",
                                geometryNode.GetName(), difference)
            loaded.CopyOrientation(geometryNode)
    if outputNode is None:
        outputNode = slicer.vtkMRMLScalarVolumeNode()
        outputNode.SetName(scene.GenerateUniqueName(name))
        outputNode.CopyOrientation(loaded)
        outputNode.SetAndObserveImageData(loaded.GetImageData())
        scene.AddNode(outputNode)
    else:
        outputNode.CopyOrientation(loaded)
        outputNode.SetAndObserveImageData(loaded.GetImageData())
        outputNode.StorableModified()
    if geometryNode is not None:
        outputNode.SetAndObserveTransformNodeID(geometryNode.GetTransformNodeID())
    if outputNode.GetDisplayNode() is None:
        outputNode.CreateDefaultDisplayNodes()
    return outputNode


def readMaskArray(path: str) -> Tuple[np.ndarray, object]:
    node = readVolume(path, labelmap=True)
    return slicer.util.arrayFromVolume(node).copy(), node


def addSegmentationFromMask(scene, maskPath: str, referenceVolumeNode, name: str, segmentName: str,
                            color=(1.0, 0.1, 0.1)):
    """Add a segmentation node with one segment from a 0/1 mask file on the reference's grid."""
    mask, _node = readMaskArray(maskPath)
    labelmapNode = slicer.vtkMRMLLabelMapVolumeNode()  # not added to the scene
    labelmapNode.CopyOrientation(referenceVolumeNode)
    slicer.util.updateVolumeFromArray(labelmapNode, (mask > 0).astype(np.uint8))

    segmentationNode = _addSegmentationNode(scene, referenceVolumeNode, name)
    segmentation = segmentationNode.GetSegmentation()
    if mask.any():
        slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode, "")
    if segmentation.GetNumberOfSegments() == 0:
        segmentation.AddEmptySegment("", segmentName)
    segment = segmentation.GetNthSegment(0)
    segment.SetName(segmentName)
    segment.SetColor(*color)
    return segmentationNode


def _addSegmentationNode(scene, referenceVolumeNode, name: str):
    """A new segmentation node in ``scene`` with display nodes, on the grid and transform of
    ``referenceVolumeNode``."""
    segmentationNode = slicer.vtkMRMLSegmentationNode()
    segmentationNode.SetName(scene.GenerateUniqueName(name))
    scene.AddNode(segmentationNode)
    segmentationNode.CreateDefaultDisplayNodes()
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
    segmentationNode.SetAndObserveTransformNodeID(referenceVolumeNode.GetTransformNodeID())
    return segmentationNode


def addEmptySegmentation(scene, referenceVolumeNode, name: str, segmentName: str, color=(0.9, 0.6, 0.1)):
    """Add a segmentation with one empty segment on the grid of ``referenceVolumeNode`` (for the user
    to paint with Segment Editor); return ``(segmentationNode, segmentId)``."""
    segmentationNode = _addSegmentationNode(scene, referenceVolumeNode, name)
    segmentId = segmentationNode.GetSegmentation().AddEmptySegment("", segmentName, list(color))
    return segmentationNode, segmentId


# --------------------------------------------------------------------------------------------
# Placement and display
# --------------------------------------------------------------------------------------------


def placeBeside(scene, node, siblingNode) -> None:
    """Put ``node`` in the subject-hierarchy folder (study, patient...) of ``siblingNode``."""
    if siblingNode is None:
        return
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if shNode is None:
        return
    siblingItem = shNode.GetItemByDataNode(siblingNode)
    if not siblingItem:
        return
    parentItem = shNode.GetItemParent(siblingItem)
    nodeItem = shNode.GetItemByDataNode(node)
    if not nodeItem:
        # In Slicer the subject-hierarchy plugin logic adds an item for every new node; without
        # the application (slicer-core) it is created here.
        shNode.CreateItem(parentItem, node)
        return
    shNode.SetItemParent(nodeItem, parentItem)


def copyWindowLevel(node, fromNode) -> None:
    """Same grey-level display as ``fromNode`` so that input and result compare directly."""
    source = fromNode.GetDisplayNode() if fromNode is not None else None
    target = node.GetDisplayNode()
    if source is None or target is None:
        return
    target.SetAutoWindowLevel(False)
    target.SetWindowLevel(source.GetWindow(), source.GetLevel())
    if source.GetColorNodeID():
        target.SetAndObserveColorNodeID(source.GetColorNodeID())


def anomalyColorNodeId(scene) -> Optional[str]:
    for nodeId in ANOMALY_COLOR_NODE_IDS[:1]:
        if scene.GetNodeByID(nodeId) is not None:
            return nodeId
    for name in ANOMALY_COLOR_NODE_NAMES:
        node = scene.GetFirstNodeByName(name)
        if node is not None and node.IsA("vtkMRMLColorNode"):
            return node.GetID()
    for nodeId in ANOMALY_COLOR_NODE_IDS[1:]:
        if scene.GetNodeByID(nodeId) is not None:
            return nodeId
    return None


def showAsColorOverlay(scene, node, threshold: Optional[float] = None, percentile: float = 95.0) -> None:
    """Colour table ("ColdToHotRainbow") on the anomaly map; voxels below ``threshold`` (or, without
    one, below the map's ``percentile``) are transparent so that only anomalies tint the CT."""
    display = node.GetDisplayNode()
    if display is None:
        return
    colorId = anomalyColorNodeId(scene)
    if colorId:
        display.SetAndObserveColorNodeID(colorId)
    values = slicer.util.arrayFromVolume(node)
    finite = values[np.isfinite(values)] if values.size else values
    if finite.size == 0:
        display.SetAutoWindowLevel(True)
        return
    high = float(finite.max())
    low = float(threshold) if threshold is not None else float(np.percentile(finite, percentile))
    low = min(low, high)
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(low, high if high > low else low + 1.0)
    display.SetApplyThreshold(True)
    display.SetThreshold(low, max(high, low) + 1.0)


def addColorLegend(node, title: str, labelFormat: str = "%.0f HU"):
    """Show the colour legend of ``node`` (Slicer's Colors module), with its values in HU, in the
    views that show it. Returns the legend display node (``None`` without the Colors module)."""
    try:
        colorLogic = slicer.modules.colors.logic()
    except AttributeError:  # no Colors module logic (a bare MRML scene)
        return None
    legend = colorLogic.AddDefaultColorLegendDisplayNode(node)
    if legend is None:
        return None
    legend.SetTitleText(title)
    legend.SetLabelFormat(labelFormat)
    legend.SetVisibility(True)
    return legend


def showInSliceViews(scene, applicationLogic, background, foreground=None, foregroundOpacity=ANOMALY_OPACITY) -> None:
    """Show ``background`` (and ``foreground`` over it) in every slice view."""
    if applicationLogic is None:
        return
    selectionNode = applicationLogic.GetSelectionNode()
    if selectionNode is None:
        return
    selectionNode.SetActiveVolumeID(background.GetID() if background is not None else None)
    selectionNode.SetSecondaryVolumeID(foreground.GetID() if foreground is not None else None)
    applicationLogic.PropagateVolumeSelection(0)
    if foreground is not None:
        compositeNodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        for index in range(compositeNodes.GetNumberOfItems()):
            compositeNodes.GetItemAsObject(index).SetForegroundOpacity(foregroundOpacity)

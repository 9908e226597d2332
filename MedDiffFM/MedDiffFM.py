"""MedDiffFM: the MedDiff-FM CT diffusion foundation model in 3D Slicer.

Thin module: the behaviour lives in ``MedDiffFMModuleLib`` (logic, panel, scene I/O, process
runner) and the model in the ``MedDiffFMLib`` library, run in a separate process.
"""

import importlib
import logging
import os
import sys

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from MedDiffFMModuleLib import HOMEPAGE, BundledData
from MedDiffFMModuleLib.Logic import Logic, MedDiffFMModuleError
from MedDiffFMModuleLib.Panel import MedDiffFMPanel
from MedDiffFMModuleLib.ParameterNode import MedDiffFMParameterNode

#
# MedDiffFM
#


class MedDiffFM(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedDiffFM")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = [f"MedDiffFM developers ({HOMEPAGE})"]
        self.parent.helpText = _(
            "Runs MedDiff-FM, a 3D CT diffusion foundation model, on a loaded CT volume. Results are added "
            "as new nodes beside the input; the input is never changed. The model runs in a separate "
            "process: Slicer stays responsive and Cancel leaves the scene as it was.<br><br>"
            "<b>Research use only:</b> the results are synthetic or altered images made by a generative "
            "model, not for diagnosis.<br><br>"
            "<b>Tasks</b><ul>"
            "<li><b>Denoise</b>: partly noises the volume and denoises it again; the strength sets how much.</li>"
            "<li><b>Anomaly map</b>: reconstructs pseudo-healthy volumes and shows where the input differs more "
            "than healthy tissue of the same structure does (colour overlay); the voxels above the model's "
            "calibrated threshold, or your own, become a segment.</li>"
            "<li><b>Synthesize</b>: generates a synthetic CT of a body region (chest, abdomen, head and neck), "
            "on the grid of an optional reference volume.</li>"
            "<li><b>Super-resolve</b>: generates thin slices from a thick-slice volume (z factor).</li>"
            "<li><b>Inpaint</b>: replaces the region of a segment (drawn with Segment Editor) with plausible "
            "healthy tissue.</li>"
            "<li><b>Generate lesion</b>: generates a lesion inside the region of a segment.</li></ul>"
            "Batch processing and all tasks are available from the Python console, see the "
            "<a href=\"{documentation}\">documentation</a>."
            "<br><br>If you use this module, please cite: Y. Yu, Y. Gu, S. Zhang, X. Zhang, "
            "\"MedDiff-FM: A Diffusion-based Foundation Model for Versatile Medical Image Applications\", "
            "<a href=\"https://arxiv.org/abs/2410.15432\">arXiv:2410.15432</a>."
        ).format(documentation=f"{HOMEPAGE}/blob/main/docs/SLICER.md")
        self.parent.acknowledgementText = _(
            "MedDiff-FM was developed by Yongrui Yu, Yannian Gu, Shaoting Zhang and Xiaofan Zhang "
            "(arXiv:2410.15432). This extension re-implements the model and its tasks for 3D Slicer; "
            "it builds on MONAI, PyTorch, SimpleITK and the Slicer PyTorch extension. "
            "Generated images are for research only, not for diagnosis."
        )
        # Sample Data lists the chest CT that ships with the extension (offline: a file:// address).
        if getattr(slicer, "app", None) is not None:
            slicer.app.startupCompleted.connect(BundledData.registerSampleData)


#
# MedDiffFMWidget
#


class MedDiffFMWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: loads the .ui, binds the parameter node, and hands the rest to MedDiffFMPanel."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedDiffFM.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MedDiffFMLogic()
        self.panel = MedDiffFMPanel(self.ui, self.logic)
        self.panel.setMRMLScene(slicer.mrmlScene)
        self.panel.setup()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self.panel is not None:
            self.panel.cleanup()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        if self.panel.libraryInfo is None:
            self.panel.refreshModels(automatic=True)

    def exit(self) -> None:
        # Keep the run going when the user switches modules; only stop listening to the GUI.
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.panel.onParameterNodeModified)
            self._parameterNode = None

    def onSceneStartClose(self, caller, event) -> None:
        if self.panel.running:
            self.panel.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.panel.onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode is not None:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.panel.onParameterNodeModified)
        self.panel.setParameterNode(self._parameterNode)

    def onReload(self) -> None:
        """Reload the helper package too (Slicer's reload only reloads this file)."""
        for name in ("I18n", "BundledData", "Tasks", "Progress", "Process", "Models", "Dependencies", "SceneIO", "Logic",
                     "ParameterNode", "Panel"):
            moduleName = f"MedDiffFMModuleLib.{name}"
            if moduleName in sys.modules:
                importlib.reload(sys.modules[moduleName])
        ScriptedLoadableModuleWidget.onReload(self)


#
# MedDiffFMLogic
#


class MedDiffFMLogic(ScriptedLoadableModuleLogic, Logic):
    """Console API: ``denoise``, ``anomalyMap``, ``synthesize``, ``superResolve``, ``inpaint``,
    ``generateLesion``, ``processBatch``, ``listModels``, ``importWeights`` (see docs/SLICER.md)."""

    def __init__(self, **kwargs) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        Logic.__init__(self, **kwargs)

    def getParameterNode(self):
        return MedDiffFMParameterNode(super().getParameterNode())


#
# MedDiffFMTest
#


class MedDiffFMTest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer: the scene round trip with the real library and a tiny random model.

    The pytest suite (Testing/test_slicer_*.py) covers the rest outside Slicer.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_badSelections()
        self.setUp()
        self.test_denoiseWithTinyModel()

    def _volume(self):
        import numpy as np

        ijkToRas = np.array([[0.0, 0.8, 0.1, 12.0], [0.9, 0.0, 0.0, -30.0], [0.0, 0.05, 2.5, 7.5], [0, 0, 0, 1]])
        array = (np.random.default_rng(0).normal(0, 200, (8, 24, 24))).astype(np.int16)
        return slicer.util.addVolumeFromArray(array, ijkToRas, name="MedDiffFMTestCT")

    def test_badSelections(self):
        self.delayDisplay(_("Bad selections give clear messages"))
        logic = MedDiffFMLogic()
        volume = self._volume()
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentId = segmentation.GetSegmentation().AddEmptySegment("", "empty")
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        for call, expected in ((lambda: logic.denoise(None), "Select an input volume"),
                               (lambda: logic.inpaint(volume, segmentation, segmentId), "is empty")):
            try:
                call()
            except MedDiffFMModuleError as error:
                self.assertIn(expected, str(error))
            else:
                self.fail(f"no error, expected '{expected}'")
        self.assertEqual(nodes, slicer.mrmlScene.GetNumberOfNodes())
        self.delayDisplay(_("Test passed"))

    def test_denoiseWithTinyModel(self):
        import importlib.util
        import tempfile

        import numpy as np

        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("monai") is None:
            self.delayDisplay(_("PyTorch or MONAI not installed: the tiny-model run is skipped."))
            return
        self.delayDisplay(_("Denoise with a tiny random model"))
        logic = MedDiffFMLogic()
        volume = self._volume()
        with tempfile.TemporaryDirectory() as modelDir:
            logic.createTinyModel(os.path.join(modelDir, "tiny"))
            output = logic.denoise(volume, strength=0.2, steps=2, seed=1, model=os.path.join(modelDir, "tiny"), device="cpu")
        self.assertEqual(output.GetName(), "MedDiffFMTestCT denoised")
        self.assertEqual(slicer.util.arrayFromVolume(output).shape, slicer.util.arrayFromVolume(volume).shape)
        self.assertTrue(np.allclose(output.GetSpacing(), volume.GetSpacing()))
        self.assertTrue(np.allclose(output.GetOrigin(), volume.GetOrigin()))
        logging.info("MedDiffFM self-test: denoise took %.1f s", logic.lastResult.seconds)
        self.delayDisplay(_("Test passed"))

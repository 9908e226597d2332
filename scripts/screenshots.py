#!/usr/bin/env python
"""Regenerate every picture of the extension from real runs on the bundled chest CT.

All runs use the real library (``python -m MedDiffFMLib.cli``, the command the module runs inside
Slicer as ``PythonSlicer -m MedDiffFMLib.cli``) with the shipped models, on
``Resources/SampleData/chest_ct_sample.nii.gz``:

- ``Resources/Screenshots/panel.png``: the module's real ``MedDiffFM.ui`` loaded offscreen with
  PySide6 (stand-ins for Slicer's own widget classes, ``Testing/slicer_helpers/qt_standins.py``),
  driven by the real panel and logic code on a real MRML scene (slicer-core), grabbed while the
  Anomaly map task runs in the background (Apply has become Cancel; the bar shows the step).
- ``Resources/Screenshots/anomaly-overlay.png``: the result as the module displays it (its own
  ``SceneIO`` display calls: CT background, anomaly map foreground with its colour table,
  threshold and opacity, Slicer's colour legend in HU), in an axial slice view rendered offscreen
  by Slicer's own classes: ``vtkMRMLSliceLogic`` for the layers and a displayable-manager group
  (``vtkMRMLColorLegendDisplayableManager``, ``vtkMRMLRulerDisplayableManager``) in a VTK render
  window.
- ``Resources/Screenshots/before-after.png``: the README picture, written by the library's own
  preview renderer: the README quick-start command, ``meddifffm denoise ... --preview``.
- ``MedDiffFM/Resources/Icons/MedDiffFMChestCT.png``: the Sample Data thumbnail of the chest CT
  (same slice view, CT only).

Slicer's "ColdToHotRainbow" colour file is not part of slicer-core: the overlay uses the test
scene's stand-in table of the same name (blue = low to red = high); inside Slicer the module picks
the real one. The shipped models are small CPU-trained starter models (see their model cards): the
pictures show real outputs of those, not of the paper's model.

Needs (pip): PySide6-Essentials, slicer-core, torch, monai (the ``test`` and ``slicer-test``
extras). VTK renders headless through EGL with Mesa: Debian packages ``libegl1``,
``libegl-mesa0``, ``libgl1-mesa-dri``, ``libgbm1`` (installed on the project's machines; no X
server or xvfb needed). The runs take about 10 minutes on a 2-core CPU.

Usage: python scripts/screenshots.py [--out DIR] [--seed S] [--pictures panel,overlay,before-after,thumbnail]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Headless VTK: render through EGL (Mesa) rather than an X window.
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Testing"))

from slicer_helpers import qt_standins  # noqa: E402  (also puts MedDiffFM/ and the repository on sys.path)

qt = qt_standins.installQtShim()

import slicer  # noqa: E402
import vtk  # noqa: E402
from slicer_helpers.fake_parameter_node import FakeParameterNode  # noqa: E402
from slicer_helpers.scene import makeScene  # noqa: E402

from MedDiffFMModuleLib import BundledData, SceneIO  # noqa: E402
from MedDiffFMModuleLib.Logic import Logic  # noqa: E402
from MedDiffFMModuleLib.Panel import MedDiffFMPanel  # noqa: E402
from MedDiffFMModuleLib.ParameterNode import MedDiffFMParameterNode  # noqa: E402
from MedDiffFMModuleLib.Process import defaultCommand, processEnvironment  # noqa: E402
from MedDiffFMModuleLib.Tasks import Task  # noqa: E402

CT_WINDOW_LEVEL = (1400.0, -400.0)  # lung and mediastinum in one picture
PANEL_GRAB_STEP = 6  # grab the panel at this sampling step, with the progress bar part-way


class OffscreenSliceView:
    """One Slicer slice view without the Qt application: a slice logic for the layers and a group of
    Slicer's slice-view displayable managers in an offscreen VTK render window."""

    MANAGERS = ("vtkMRMLColorLegendDisplayableManager", "vtkMRMLRulerDisplayableManager")

    def __init__(self, context, layoutName="Red", size=(640, 520), managers=MANAGERS):
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetMultiSamples(0)
        self.window.SetSize(*size)
        self.renderer = vtk.vtkRenderer()
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.window)
        self.interactor.Initialize()

        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(context.appLogic)
        self.logic.SetMRMLScene(context.scene)
        self.sliceNode = self.logic.AddSliceNode(layoutName)
        # The legend finds its slice view's layers through the application's slice logics.
        if context.appLogic.GetSliceLogics() is None:
            context.appLogic.SetSliceLogics(vtk.vtkCollection())
        context.appLogic.GetSliceLogics().AddItem(self.logic)

        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(context.appLogic)
        for name in managers:
            if not factory.IsDisplayableManagerRegistered(name):
                factory.RegisterDisplayableManager(name)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)
        self.managers.SetMRMLDisplayableNode(self.sliceNode)
        self.sliceNode.SetRulerType(slicer.vtkMRMLAbstractViewNode.RulerTypeThin)

        # The blended layers (what Slicer's light-box renderer manager shows), as a background image.
        self.mapper = vtk.vtkImageMapper()
        self.mapper.SetColorWindow(255)
        self.mapper.SetColorLevel(127.5)
        self.actor = vtk.vtkActor2D()
        self.actor.SetMapper(self.mapper)
        self.actor.GetProperty().SetDisplayLocationToBackground()
        self.renderer.AddViewProp(self.actor)
        self.logic.ResizeSliceNode(*size)

    def show(self, background, foreground=None, opacity=SceneIO.ANOMALY_OPACITY):
        composite = self.logic.GetSliceCompositeNode()
        composite.SetBackgroundVolumeID(background.GetID())
        composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        composite.SetForegroundOpacity(opacity)
        self.logic.FitSliceToBackground()
        self.mapper.SetInputConnection(self.logic.GetImageDataConnection())

    def save(self, path):
        if not self.window.IsA("vtkEGLRenderWindow") and not self.window.IsA("vtkOSOpenGLRenderWindow") \
                and not os.environ.get("DISPLAY"):
            raise RuntimeError(f"VTK cannot render offscreen here ({self.window.GetClassName()}): install Mesa's "
                               "EGL (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1).")
        self.window.Render()
        self.window.Render()  # the displayable managers update on the first render
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.ReadFrontBufferOff()
        grab.Update()
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(path)
        writer.SetInputConnection(grab.GetOutputPort())
        writer.Write()
        print("wrote", path)


def loadSampleCt(context):
    node = context.logics["volumes"].AddArchetypeVolume(BundledData.sampleDataPath(), BundledData.SAMPLE_NODE_NAME)
    if node is None:
        raise RuntimeError("could not load the sample CT")
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(*CT_WINDOW_LEVEL)
    return node


def runPanel(context, ct, out, seed):
    """The panel during a real Anomaly-map run; returns the finished result."""
    top, ui = qt_standins.loadUi()
    with tempfile.TemporaryDirectory() as temp:
        settings = qt.QSettings(os.path.join(temp, "settings.ini"), qt.QSettings.IniFormat)
        logic = Logic(applicationLogic=context.appLogic, tempRoot=temp)  # the real command
        messages = types.SimpleNamespace(error=print, info=print, confirm=lambda text: True,
                                         askWeightsPath=lambda folder: "")
        panel = MedDiffFMPanel(ui, logic, messages=messages, settings=settings)
        panel.setMRMLScene(context.scene)
        panel.setup()
        parameters = FakeParameterNode(MedDiffFMParameterNode)
        parameters.connectGui(ui)
        parameters.addObserver(panel.onParameterNodeModified)
        panel.setParameterNode(parameters)
        top.resize(440, 760)
        top.show()

        panel.refreshModels()
        while panel.infoJob is not None:
            qt_standins.processEvents(0.05)
        if not panel.hasUsableModel():
            raise RuntimeError(f"no usable shipped model: {ui.modelCardLabel.text()}")
        ui.taskComboBox.setCurrentIndex(list(Task).index(Task.ANOMALY))
        ui.seedSpinBox.setValue(seed)
        qt_standins.processEvents(0.1)

        ui.applyButton.click()
        if not panel.running:
            raise RuntimeError(f"the run did not start: {ui.statusLabel.text()}")

        def step():
            latest = panel.job.parser.latest if panel.job is not None else None
            return latest.step if latest is not None and latest.total > 1 else 0

        while panel.running and step() < PANEL_GRAB_STEP:
            qt_standins.processEvents(0.05)
        qt_standins.processEvents(0.3)  # one more timer tick: the bar shows the latest step
        path = os.path.join(out, "panel.png")
        top.grab().save(path)
        print("wrote", path)

        started = time.monotonic()
        while panel.running:
            qt_standins.processEvents(0.1)
        if panel.lastResult is None:
            raise RuntimeError(f"the run failed: {ui.statusLabel.text()}")
        print(f"anomaly map in {time.monotonic() - started:.0f} s more:", ui.statusLabel.text())
        panel.cleanup()
        top.close()
        return panel.lastResult


def writeBeforeAfter(out, seed):
    """The README quick-start command, with its own preview picture."""
    path = os.path.join(out, "before-after.png")
    with tempfile.TemporaryDirectory() as temp:
        command = defaultCommand() + ["denoise", BundledData.sampleDataPath(), os.path.join(temp, "denoised.nii.gz"),
                                      "--preview", path, "--seed", str(seed), "--progress", "none"]
        subprocess.run(command, check=True, env=processEnvironment(ROOT))
    print("wrote", path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "Resources", "Screenshots"))
    parser.add_argument("--icons", default=os.path.join(ROOT, "MedDiffFM", "Resources", "Icons"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pictures", default="panel,overlay,before-after,thumbnail",
                        help="which pictures to make (panel and overlay come from the same run)")
    args = parser.parse_args(argv)
    pictures = set(args.pictures.split(","))
    os.makedirs(args.out, exist_ok=True)

    context = makeScene()
    slicer.mrmlScene = context.scene
    slicer.modules = types.SimpleNamespace(
        **{name: types.SimpleNamespace(logic=(lambda logic=logic: logic)) for name, logic in context.logics.items()})
    ct = loadSampleCt(context)

    if "thumbnail" in pictures:
        thumbnail = OffscreenSliceView(context, "Thumbnail", size=(200, 200), managers=())
        thumbnail.show(ct)
        thumbnail.save(os.path.join(args.icons, BundledData.THUMBNAIL))

    if pictures & {"panel", "overlay"}:
        # The view exists before the run, as in Slicer: its displayable managers see the module add
        # the colour legend.
        view = OffscreenSliceView(context, "Red")
        result = runPanel(context, ct, args.out, args.seed)
        view.show(ct, result.outputVolume)
        view.save(os.path.join(args.out, "anomaly-overlay.png"))

    if "before-after" in pictures:
        writeBeforeAfter(args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

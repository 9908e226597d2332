#!/usr/bin/env python
"""Screenshots of the MedDiffFM Slicer module without the Slicer application.

- ``panel.png``: the real ``MedDiffFM/Resources/UI/MedDiffFM.ui`` loaded offscreen with PySide6
  (stand-ins for Slicer's own widgets), driven by the real panel code during a real background run
  (Anomaly map on a chest phantom, grabbed while sampling).
- ``anomaly-overlay.png``: the axial slice view of the result, blended by Slicer's own
  ``vtkMRMLSliceLogic`` exactly as the slice views show it (CT background, anomaly map foreground
  with its colour table at 50 % opacity), when VTK can render offscreen.

The run uses the model-free stand-in CLI of the tests (``Testing/slicer_helpers/fake_meddifffm.py``,
anomaly = deviation from the local mean), not trained weights: the pictures show the module and
its display, not model quality.

Needs: PySide6-Essentials, slicer-core (pip). Usage: python scripts/screenshot_panel.py [--out DIR]
"""

import argparse
import os
import sys
import tempfile
import time
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Testing"))

from slicer_helpers import paths, qt_standins  # noqa: E402

qt = qt_standins.installQtShim()

import numpy as np  # noqa: E402
import slicer  # noqa: E402
import vtk  # noqa: E402
from slicer_helpers.fake_parameter_node import FakeParameterNode  # noqa: E402
from slicer_helpers.scene import makeScene  # noqa: E402

from MedDiffFMModuleLib.Logic import Logic  # noqa: E402
from MedDiffFMModuleLib.Panel import MedDiffFMPanel  # noqa: E402
from MedDiffFMModuleLib.ParameterNode import MedDiffFMParameterNode  # noqa: E402
from MedDiffFMModuleLib.Tasks import Task  # noqa: E402


def chestPhantom(shape=(40, 160, 160), seed=0):
    """An axial chest-like CT in HU (k, j, i): body, lungs, heart, spine, a nodule, noise."""
    k, j, i = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]].astype(np.float32)
    cj, ci = shape[1] / 2, shape[2] / 2
    image = np.full(shape, -1000.0, np.float32)
    body = ((i - ci) / 68) ** 2 + ((j - cj) / 52) ** 2 <= 1
    image[body] = 30
    fat = body & (((i - ci) / 63) ** 2 + ((j - cj) / 47) ** 2 > 1)
    image[fat] = -100
    for side in (-1, 1):
        lung = ((i - ci - side * 30) / 24) ** 2 + ((j - cj + 4) / 34) ** 2 <= 1
        image[lung] = -850
    heart = ((i - ci + 8) / 18) ** 2 + ((j - cj - 8) / 16) ** 2 <= 1
    image[heart] = 45
    spine = ((i - ci) / 9) ** 2 + ((j - cj + 36) / 9) ** 2 <= 1  # posterior: small j is P in RAS
    image[spine] = 700
    nodule = ((i - ci - 36) / 5) ** 2 + ((j - cj - 12) / 5) ** 2 + ((k - shape[0] / 2) / 2.5) ** 2 <= 1
    image[nodule] = 40
    image += np.random.default_rng(seed).normal(0, 12, shape).astype(np.float32)
    return image.astype(np.int16)


def renderSliceView(context, sliceName, path, size=(480, 480)):
    """Blend the slice view layers with Slicer's vtkMRMLSliceLogic and save a PNG."""
    scene = context.scene
    sliceNode = slicer.vtkMRMLSliceNode()  # default orientation: axial
    sliceNode.SetName(sliceName)
    sliceNode.SetLayoutName(sliceName)
    sliceNode.SetDimensions(size[0], size[1], 1)
    scene.AddNode(sliceNode)
    sliceLogic = slicer.vtkMRMLSliceLogic()
    sliceLogic.SetMRMLApplicationLogic(context.appLogic)
    sliceLogic.SetMRMLScene(scene)
    sliceLogic.SetSliceNode(sliceNode)
    sliceLogic.FitSliceToAll()
    producer = sliceLogic.GetImageDataConnection().GetProducer()
    producer.Update()
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(path)
    writer.SetInputData(producer.GetOutputDataObject(0))
    writer.Write()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "Resources", "Screenshots"))
    parser.add_argument("--no-slices", action="store_true", help="only the panel")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    context = makeScene()
    slicer.mrmlScene = context.scene
    slicer.modules = types.SimpleNamespace(
        **{name: types.SimpleNamespace(logic=(lambda logic=logic: logic)) for name, logic in context.logics.items()})
    matrix = np.diag([0.8, 0.8, 2.5, 1.0])
    volume = slicer.util.addVolumeFromArray(chestPhantom(), matrix, name="Chest CT")
    volume.CreateDefaultDisplayNodes()
    volume.GetDisplayNode().SetAutoWindowLevel(False)
    volume.GetDisplayNode().SetWindowLevel(1500, -500)

    top, ui = qt_standins.loadUi()
    with tempfile.TemporaryDirectory() as temp:
        settings = qt.QSettings(os.path.join(temp, "settings.ini"), qt.QSettings.IniFormat)
        logic = Logic(command=paths.FAKE_COMMAND, applicationLogic=context.appLogic, tempRoot=temp,
                      env={"FAKE_MEDDIFFFM_DELAY": "0.1", "FAKE_MEDDIFFFM_STEPS": "50",
                           "FAKE_MEDDIFFFM_ANOMALY": "local"})
        messages = types.SimpleNamespace(error=print, info=print, confirm=lambda text: True,
                                         askWeightsPath=lambda folder: "")
        panel = MedDiffFMPanel(ui, logic, messages=messages, settings=settings)
        panel.setMRMLScene(context.scene)
        panel.setup()
        parameters = FakeParameterNode(MedDiffFMParameterNode)
        parameters.connectGui(ui)
        parameters.addObserver(panel.onParameterNodeModified)
        panel.setParameterNode(parameters)
        top.resize(440, 880)
        top.show()

        panel.refreshModels()
        while panel.infoJob is not None:
            qt_standins.processEvents(0.05)
        ui.modelComboBox.setCurrentIndex(1)
        ui.taskComboBox.setCurrentIndex(list(Task).index(Task.ANOMALY))
        ui.thresholdCheckBox.setChecked(True)
        ui.thresholdSpinBox.setValue(250)
        ui.stepsSpinBox.setValue(50)
        ui.logCollapsibleButton.setCollapsed(False)
        qt_standins.processEvents(0.1)

        ui.applyButton.click()
        deadline = time.monotonic() + 60
        def step():
            latest = panel.job.parser.latest if panel.job is not None else None
            return latest.step if latest is not None and latest.stage == "sampling" else 0

        while panel.running and step() < 18:
            if time.monotonic() > deadline:
                raise RuntimeError("the run did not progress")
            qt_standins.processEvents(0.02)
        qt_standins.processEvents(0.25)  # one more timer tick: the bar shows the latest step
        panelPath = os.path.join(args.out, "panel.png")
        top.grab().save(panelPath)
        print("wrote", panelPath)

        while panel.running:
            qt_standins.processEvents(0.05)
        if panel.lastResult is None:
            raise RuntimeError(f"the run failed: {ui.statusLabel.text()}")
        if not args.no_slices:
            overlayPath = os.path.join(args.out, "anomaly-overlay.png")
            renderSliceView(context, "Red", overlayPath)
            print("wrote", overlayPath)
        panel.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The thin ``MedDiffFM.py`` itself (Module, Widget, Logic, Test), imported with minimal stand-ins
for Slicer's application classes (``Testing/slicer_helpers/slicer_app_stubs.py``) on a real MRML
scene, the real ``.ui`` under PySide6 and the fake ``meddifffm``. What the stand-ins replace is
only checked inside Slicer (docs/SLICER.md)."""

import os
import sys
import time
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slicer_helpers import paths  # noqa: E402

pytest.importorskip("PySide6", reason="needs PySide6 (pip install PySide6-Essentials) for the offscreen panel")
from slicer_helpers import qt_standins  # noqa: E402

qt_standins.installQtShim()
from slicer_helpers import slicer_app_stubs  # noqa: E402
from slicer_helpers.scene import addCtVolume, mrmlScene, slicer  # noqa: E402,F401


@pytest.fixture
def MedDiffFM(mrmlScene, monkeypatch, tmp_path):
    monkeypatch.setattr(qt_standins.QtCore.QSettings, "__init__", _iniSettings(tmp_path), raising=False)
    module = slicer_app_stubs.install(monkeypatch)
    yield module
    slicer_app_stubs.uninstall()


def _iniSettings(tmp_path):
    original = qt_standins.QtCore.QSettings.__init__

    def init(self, *args):
        if args:
            original(self, *args)
        else:  # the module's default QSettings(): a file in the test folder, not the user's settings
            original(self, str(tmp_path / "Slicer.ini"), qt_standins.QtCore.QSettings.IniFormat)
    return init


def test_module_metadata(MedDiffFM):
    parent = types.SimpleNamespace()
    MedDiffFM.MedDiffFM(parent)
    assert parent.title == "MedDiffFM"
    assert parent.categories == ["Filtering"]
    assert "arXiv:2410.15432" in parent.helpText and "Generate lesion" in parent.helpText
    assert "Yu" in parent.acknowledgementText
    for text in ("MedDiff-FM: A Diffusion-based Foundation Model for Versatile Medical Image Applications",
                 "Denoise", "Anomaly map", "Synthesize", "Super-resolve", "Inpaint"):
        assert text in parent.helpText + parent.acknowledgementText, text
    assert "Research use only" in parent.helpText and "not for diagnosis" in parent.helpText
    assert "https://github.com/meddifffm/SlicerMedDiffFM/blob/main/docs/SLICER.md" in parent.helpText


def test_module_registers_the_sample_ct_once_slicer_has_started(MedDiffFM, monkeypatch):
    connected = []
    app = types.SimpleNamespace(startupCompleted=types.SimpleNamespace(connect=connected.append))
    monkeypatch.setattr(slicer, "app", app, raising=False)
    MedDiffFM.MedDiffFM(types.SimpleNamespace())
    from MedDiffFMModuleLib import BundledData

    assert connected == [BundledData.registerSampleData]


def test_widget_setup_apply_scene_close_and_cleanup(MedDiffFM, mrmlScene):
    volume, array = addCtVolume()
    widget = MedDiffFM.MedDiffFMWidget(parent=types.SimpleNamespace(isEntered=True))
    widget.setup()
    logic = widget.logic
    assert isinstance(logic, MedDiffFM.MedDiffFMLogic)
    assert logic.command[1:] == ["-m", "MedDiffFMLib.cli"]  # PythonSlicer (here sys.executable) -m ...
    logic.command, logic.usesDefaultCommand = list(paths.FAKE_COMMAND), False
    logic._applicationLogic = mrmlScene.appLogic
    widget.enter()
    ui = widget.ui
    parameterNode = widget._parameterNode
    assert parameterNode.inputVolume is volume  # the first CT is preselected
    assert parameterNode.parameterNode.GetSingletonTag() == "MedDiffFM"
    assert ui.applyButton.isEnabled()

    ui.strengthSlider.setValue(0.25)
    qt_standins.processEvents()
    assert parameterNode.strength == 0.25
    ui.applyButton.click()
    deadline = time.monotonic() + 30
    while widget.panel.running or widget.panel.infoJob is not None:
        assert time.monotonic() < deadline
        qt_standins.processEvents(0.02)
    output = mrmlScene.scene.GetFirstNodeByName("CT denoised")
    assert output is not None and np.array_equal(slicer.util.arrayFromVolume(output), array)
    assert ui.modelComboBox.count() > 1  # the model list was fetched on enter()

    mrmlScene.scene.Clear(False)  # File > Close scene: a fresh parameter node is bound again
    qt_standins.processEvents()
    assert widget._parameterNode is not None and widget._parameterNode.inputVolume is None
    assert not ui.applyButton.isEnabled()
    widget.exit()
    assert widget._parameterNode is None
    widget.cleanup()


def test_scene_close_during_a_run_cancels_it(MedDiffFM, mrmlScene):
    addCtVolume()
    widget = MedDiffFM.MedDiffFMWidget(parent=types.SimpleNamespace(isEntered=True))
    widget.setup()
    widget.logic.command, widget.logic.usesDefaultCommand = list(paths.FAKE_COMMAND), False
    widget.logic.extraEnv.update({"FAKE_MEDDIFFFM_DELAY": "1", "FAKE_MEDDIFFFM_STEPS": "30"})
    widget.initializeParameterNode()
    widget.ui.applyButton.click()
    assert widget.panel.running
    mrmlScene.scene.Clear(False)
    assert not widget.panel.running
    assert mrmlScene.scene.GetFirstNodeByName("CT denoised") is None
    widget.cleanup()


def test_self_test_bad_selections_runs(MedDiffFM, mrmlScene):
    test = MedDiffFM.MedDiffFMTest("test_badSelections")
    test.setUp()
    test.test_badSelections()


def test_logic_is_the_console_api(MedDiffFM, mrmlScene):
    logic = MedDiffFM.MedDiffFMLogic(command=paths.FAKE_COMMAND, applicationLogic=mrmlScene.appLogic)
    volume, _ = addCtVolume()
    assert logic.superResolve(volume, factorZ=2).GetName() == "CT super-resolved"
    for name in ("denoise", "anomalyMap", "synthesize", "superResolve", "inpaint", "generateLesion",
                 "processBatch", "listModels", "importWeights"):
        assert callable(getattr(logic, name))

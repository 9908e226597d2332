"""The module panel: the real ``MedDiffFM.ui`` loaded offscreen with PySide6 (stand-ins for Slicer's
custom widgets), bound to the declared parameter node the way ``parameterNodeWrapper.connectGui``
binds it, and driven by the real ``MedDiffFMPanel`` with the real logic, a real MRML scene
(slicer-core) and the fake ``meddifffm`` command."""

import json
import os
import sys
import time
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slicer_helpers import paths  # noqa: E402

pytest.importorskip("PySide6", reason="needs PySide6 (pip install PySide6-Essentials) for the offscreen panel")
from slicer_helpers import qt_standins  # noqa: E402

qt = qt_standins.installQtShim()

from slicer_helpers.fake_parameter_node import FakeParameterNode  # noqa: E402
from slicer_helpers.scene import addCtVolume, addSegmentOnGrid, mrmlScene, slicer, volumeMatrix  # noqa: E402,F401

from MedDiffFMModuleLib.Logic import Logic  # noqa: E402
from MedDiffFMModuleLib.Panel import (SETTINGS_DEVICE, SETTINGS_MODEL, SETTINGS_RUN_ON, SETTINGS_SERVER_TOKEN,  # noqa: E402
                                      SETTINGS_SERVER_URL, MedDiffFMPanel)
from MedDiffFMModuleLib.ParameterNode import GUI_BOUND_PARAMETERS, MedDiffFMParameterNode  # noqa: E402
from MedDiffFMModuleLib.Tasks import Device, InputRegion, RunOn, Task  # noqa: E402

TASK_ROWS = {
    Task.DENOISE: {"strength", "inputRegion", "steps", "seed"},
    Task.ANOMALY: {"inputRegion", "steps", "seed", "threshold"},
    Task.SYNTHESIZE: {"region", "steps", "seed"},
    Task.SUPERRES: {"factorZ", "inputRegion", "steps", "seed"},
    Task.INPAINT: {"mask", "inputRegion", "steps", "seed"},
    Task.LESION: {"mask", "inputRegion", "steps", "seed"},
}


class Messages:
    def __init__(self):
        self.errors, self.infos, self.questions = [], [], []
        self.weightsPath = ""

    def error(self, text):
        self.errors.append(text)

    def info(self, text):
        self.infos.append(text)

    def confirm(self, text):
        self.questions.append(text)
        return True

    def askWeightsPath(self, folder):
        return self.weightsPath


class SegmentEditor:
    """Records what the panel asks Segment Editor to open."""

    def __init__(self):
        self.opened = []

    def open(self, segmentationNode, sourceVolumeNode):
        self.opened.append((segmentationNode, sourceVolumeNode))


class PanelHarness:
    def __init__(self, scene, appLogic, tmp_path, settingsFile=None):
        self.record = tmp_path / "argv.jsonl"
        self.top, self.ui = qt_standins.loadUi()
        self.messages = Messages()
        self.settings = qt.QSettings(str(settingsFile or tmp_path / "settings.ini"), qt.QSettings.IniFormat)
        (tmp_path / "temp").mkdir(exist_ok=True)
        self.logic = Logic(command=paths.FAKE_COMMAND, applicationLogic=appLogic, tempRoot=str(tmp_path / "temp"),
                           env={"FAKE_MEDDIFFFM_RECORD": str(self.record)})
        self.segmentEditor = SegmentEditor()
        self.panel = MedDiffFMPanel(self.ui, self.logic, messages=self.messages, settings=self.settings,
                                    segmentEditor=self.segmentEditor)
        self.panel.setMRMLScene(scene)
        self.panel.setup()
        self.parameters = FakeParameterNode(MedDiffFMParameterNode)
        self.boundNames = self.parameters.connectGui(self.ui)  # as parameterNodeWrapper.connectGui(self.ui)
        self.parameters.addObserver(self.panel.onParameterNodeModified)
        self.panel.setParameterNode(self.parameters)
        self.top.resize(420, 900)
        self.top.show()
        qt_standins.processEvents()

    def visibleRows(self):
        return {name for name, row in self.panel.optionRows.items() if not row.isHidden()}

    def top_y(self, widget):
        """Vertical position of ``widget`` in the panel (what the user reads first is on top)."""
        return widget.mapTo(self.top, qt.QPoint(0, 0)).y()

    def chooseTask(self, task):
        self.ui.taskComboBox.setCurrentIndex(list(Task).index(task))
        qt_standins.processEvents()

    def lastArgs(self):
        return json.loads(self.record.read_text().splitlines()[-1])["argv"]

    def waitUntil(self, condition, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            qt_standins.processEvents(0.02)


@pytest.fixture
def harness(mrmlScene, tmp_path):
    h = PanelHarness(mrmlScene.scene, mrmlScene.appLogic, tmp_path)
    yield h
    h.panel.cleanup()
    h.top.close()
    h.top.deleteLater()


def uiParameterNames():
    tree = ElementTree.parse(paths.UI_FILE)
    names = {}
    for widget in tree.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                names[widget.get("name")] = prop.find("string").text
    return names


def test_ui_parameter_names_match_the_parameter_node_declaration(harness):
    names = uiParameterNames()
    assert sorted(names.values()) == sorted(GUI_BOUND_PARAMETERS)  # one widget per bound parameter
    assert len(set(names.values())) == len(names)
    assert sorted(harness.boundNames) == sorted(GUI_BOUND_PARAMETERS)  # every pair is connectable
    declared = set(harness.parameters.parameterNames())
    assert set(GUI_BOUND_PARAMETERS) <= declared
    assert {"segmentationNode", "segmentId", "model"} <= declared - set(GUI_BOUND_PARAMETERS)
    # Enum combo boxes are filled with the translated labels, in order
    assert [harness.ui.taskComboBox.itemText(i) for i in range(harness.ui.taskComboBox.count())] == [
        t.label() for t in Task]


def test_each_task_shows_only_its_options(harness):
    # steps and seed are under "Advanced", folded at first
    assert harness.ui.advancedCollapsibleButton.property("collapsed")
    assert harness.ui.stepsRow.isHidden() and harness.ui.seedRow.isHidden()
    harness.chooseTask(Task.ANOMALY)
    assert harness.ui.stepsRow.isHidden(), "a row the task shows stays folded under Advanced"
    harness.ui.advancedCollapsibleButton.setCollapsed(False)
    qt_standins.processEvents()
    for task in Task:
        harness.chooseTask(task)
        assert harness.parameters.task is task
        assert harness.visibleRows() == TASK_ROWS[task], task
        assert harness.ui.taskDescriptionLabel.text()


def test_input_defaults_to_the_first_ct_and_labels_follow_the_task(mrmlScene, tmp_path):
    volume, _ = addCtVolume()
    h = PanelHarness(mrmlScene.scene, mrmlScene.appLogic, tmp_path)
    try:
        assert h.parameters.inputVolume is volume
        assert h.ui.inputSelector.currentNode() is volume
        assert h.ui.outputSelector.itemText(0) == 'Create new volume "CT denoised"'
        h.chooseTask(Task.SYNTHESIZE)
        assert h.ui.inputVolumeLabel.text() == "Reference grid (optional):"
        assert h.ui.outputSelector.itemText(0) == 'Create new volume "CT synthesized"'
        h.ui.inputSelector.setCurrentNode(None)
        qt_standins.processEvents()
        assert h.parameters.inputVolume is None
        assert h.ui.outputSelector.itemText(0) == 'Create new volume "synthetic CT"'
        assert h.ui.applyButton.isEnabled()  # synthesis needs no input
        h.chooseTask(Task.DENOISE)
        assert h.ui.inputVolumeLabel.text() == "Input volume:"
        assert not h.ui.applyButton.isEnabled()
        assert h.ui.applyButton.toolTip() == "Select an input volume."
    finally:
        h.panel.cleanup()


def test_mask_tasks_need_a_segment_chosen_in_the_segment_selector(mrmlScene, harness):
    volume, _ = addCtVolume()
    segmentation, segmentId = addSegmentOnGrid(mrmlScene.scene, np.ones((2, 2, 2), np.uint8), volumeMatrix(volume))
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.chooseTask(Task.INPAINT)
    assert not harness.ui.applyButton.isEnabled()
    assert "Segment Editor" in harness.ui.applyButton.toolTip()
    harness.ui.segmentSelector.setCurrentNode(segmentation)
    harness.ui.segmentSelector.setCurrentSegmentID(segmentId)
    qt_standins.processEvents()
    assert harness.parameters.segmentationNode is segmentation
    assert harness.parameters.segmentId == segmentId
    assert harness.ui.applyButton.isEnabled()


def test_options_set_in_the_panel_are_the_arguments_sent(mrmlScene, harness):
    volume, array = addCtVolume()
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.chooseTask(Task.DENOISE)
    harness.ui.strengthSlider.setValue(0.3)
    harness.ui.stepsSpinBox.setValue(12)
    harness.ui.seedSpinBox.setValue(42)
    harness.ui.deviceComboBox.setCurrentIndex(list(Device).index(Device.CPU))
    qt_standins.processEvents()
    p = harness.parameters
    assert (p.strength, p.steps, p.seed, p.device) == (0.3, 12, 42, Device.CPU)
    harness.ui.applyButton.click()
    harness.waitUntil(lambda: not harness.panel.running)
    args = harness.lastArgs()
    assert args[0] == "denoise"
    assert args[3:] == ["--strength", "0.3", "--device", "cpu", "--steps", "12", "--seed", "42", "--progress", "json"]
    output = mrmlScene.scene.GetFirstNodeByName("CT denoised")
    assert output is not None and np.array_equal(slicer.util.arrayFromVolume(output), array)
    assert harness.ui.progressBar.format() == "Done" and harness.ui.progressBar.value() == 100
    assert "CT denoised" in harness.ui.statusLabel.text()
    assert harness.ui.applyButton.text() == "Apply"
    assert "fake meddifffm: starting denoise" in harness.ui.logTextEdit.toPlainText()
    assert harness.messages.errors == []


def test_anomaly_threshold_and_region_options(mrmlScene, harness):
    volume, _ = addCtVolume()
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.chooseTask(Task.ANOMALY)
    assert not harness.ui.thresholdSpinBox.isEnabled()
    harness.ui.thresholdCheckBox.setChecked(True)
    harness.ui.thresholdSpinBox.setValue(800)
    qt_standins.processEvents()
    assert harness.ui.thresholdSpinBox.isEnabled()
    harness.ui.applyButton.click()
    harness.waitUntil(lambda: not harness.panel.running)
    args = harness.lastArgs()
    assert args[args.index("--threshold") + 1] == "800" and "--mask-out" in args
    assert mrmlScene.scene.GetFirstNodeByName("CT anomalies") is not None
    harness.chooseTask(Task.SYNTHESIZE)
    harness.ui.regionComboBox.setCurrentIndex(2)
    harness.ui.applyButton.click()
    harness.waitUntil(lambda: not harness.panel.running)
    args = harness.lastArgs()
    assert args[args.index("--region") + 1] == "head_neck" and "--like" in args


def test_input_region_is_automatic_by_default_and_none_reaches_the_library(mrmlScene, harness):
    volume, _ = addCtVolume()
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.ui.advancedCollapsibleButton.setCollapsed(False)
    combo = harness.ui.inputRegionComboBox
    assert [combo.itemText(i) for i in range(combo.count())] == [r.label() for r in InputRegion]
    assert combo.currentText() == "Automatic (guessed from the image)" and combo.isVisible()
    harness.ui.applyButton.click()
    harness.waitUntil(lambda: not harness.panel.running)
    assert "--region" not in harness.lastArgs()  # the library guesses
    combo.setCurrentIndex(list(InputRegion).index(InputRegion.UNKNOWN))
    qt_standins.processEvents()
    assert harness.parameters.inputRegion is InputRegion.UNKNOWN
    for task in (Task.DENOISE, Task.ANOMALY):
        harness.chooseTask(task)
        harness.ui.applyButton.click()
        harness.waitUntil(lambda: not harness.panel.running)
        args = harness.lastArgs()
        assert args[0] == task.value and args[args.index("--region") + 1] == "unknown"
    harness.chooseTask(Task.SYNTHESIZE)  # synthesis has its own region row, the input's is hidden
    assert not combo.isVisible() and harness.ui.regionComboBox.isVisible()
    assert harness.messages.errors == []


def test_apply_becomes_cancel_gui_stays_responsive_and_cancel_changes_nothing(mrmlScene, harness):
    volume, _ = addCtVolume()
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.logic.extraEnv.update({"FAKE_MEDDIFFFM_DELAY": "0.3", "FAKE_MEDDIFFFM_STEPS": "40"})
    before = mrmlScene.nodeIds()
    start = time.monotonic()
    harness.ui.applyButton.click()
    assert time.monotonic() - start < 2.0  # Apply returns at once: the run is in another process
    assert harness.panel.running and harness.ui.applyButton.text() == "Cancel"
    harness.waitUntil(lambda: "Sampling: step 2 of 40" in harness.ui.progressBar.format()
                      or "Sampling: step 3 of 40" in harness.ui.progressBar.format())
    assert 0 < harness.ui.progressBar.value() < 100
    tick = time.monotonic()
    qt_standins.processEvents(0.05)  # the event loop keeps running while the process works
    assert time.monotonic() - tick < 1.0
    harness.ui.applyButton.click()  # Cancel
    assert not harness.panel.running
    assert harness.ui.applyButton.text() == "Apply"
    assert harness.ui.progressBar.format() == "Cancelled"
    assert "not changed" in harness.ui.statusLabel.text()
    assert mrmlScene.nodeIds() == before
    assert os.listdir(harness.logic.tempRoot) == []
    assert harness.messages.errors == []


def test_failure_shows_the_librarys_message(mrmlScene, harness):
    volume, _ = addCtVolume()
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.logic.extraEnv["FAKE_MEDDIFFFM_FAIL"] = "user"
    before = mrmlScene.nodeIds()
    harness.ui.applyButton.click()
    harness.waitUntil(lambda: not harness.panel.running)
    assert harness.messages.errors and harness.messages.errors[-1].startswith("The input is not a CT volume")
    assert harness.ui.progressBar.format() == "Failed"
    assert harness.ui.applyButton.text() == "Apply"
    assert mrmlScene.nodeIds() == before


def test_bad_selection_is_reported_before_any_run(mrmlScene, harness):
    volume, _ = addCtVolume()
    segmentation = mrmlScene.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    emptyId = segmentation.GetSegmentation().AddEmptySegment("", "empty")
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.chooseTask(Task.LESION)
    harness.ui.segmentSelector.setCurrentNode(segmentation)
    harness.ui.segmentSelector.setCurrentSegmentID(emptyId)
    qt_standins.processEvents()
    harness.ui.applyButton.click()
    assert not harness.panel.running
    assert harness.messages.errors == ["The segment 'empty' is empty: paint the region with Segment Editor first."]
    assert not harness.record.exists()


def test_models_listed_in_background_choice_and_device_persist(mrmlScene, harness, tmp_path):
    volume, _ = addCtVolume(shape=(20, 30, 30))
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.panel.refreshModels()
    assert harness.panel.infoJob is not None  # listing does not block
    harness.waitUntil(lambda: harness.panel.infoJob is None)
    combo = harness.ui.modelComboBox
    items = [combo.itemText(i) for i in range(combo.count())]
    assert items == ["Default model", "meddifffm-tiny", "meddifffm-paper (checksum mismatch)",
                     "meddifffm-anatomy"]  # no ControlNet
    combo.setCurrentIndex(2)
    qt_standins.processEvents()
    assert harness.parameters.model == "meddifffm-paper"
    assert "CHECKSUM MISMATCH" in harness.ui.modelCardLabel.text()
    combo.setCurrentIndex(1)
    harness.ui.deviceComboBox.setCurrentIndex(list(Device).index(Device.CPU))
    qt_standins.processEvents()
    assert "Tiny random model for tests." in harness.ui.modelCardLabel.text()
    assert "on CPU" in harness.ui.estimatedTimeLabel.text()
    harness.settings.sync()
    assert harness.settings.value(SETTINGS_MODEL) == "meddifffm-tiny"
    assert harness.settings.value(SETTINGS_DEVICE) == "cpu"
    # A new session (new panel, new parameter node) gets model and device back from the settings.
    (tmp_path / "again").mkdir()
    again = PanelHarness(mrmlScene.scene, mrmlScene.appLogic, tmp_path / "again", settingsFile=tmp_path / "settings.ini")
    try:
        assert again.parameters.model == "meddifffm-tiny"
        assert again.parameters.device is Device.CPU
        assert again.ui.deviceComboBox.currentText() == Device.CPU.label()
    finally:
        again.panel.cleanup()


def test_run_on_a_server_passes_the_url_and_the_token_by_environment(mrmlScene, harness, tmp_path):
    volume, array = addCtVolume()
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.chooseTask(Task.DENOISE)
    assert harness.ui.runOnComboBox.currentText() == RunOn.LOCAL.label()
    assert not harness.ui.serverUrlLineEdit.isEnabled() and harness.ui.deviceComboBox.isEnabled()
    harness.ui.runOnComboBox.setCurrentIndex(list(RunOn).index(RunOn.SERVER))
    harness.ui.serverUrlLineEdit.setText("http://gpu-server:8765")
    harness.ui.serverTokenLineEdit.setText("s3cret-token")
    qt_standins.processEvents()
    assert harness.ui.serverUrlLineEdit.isEnabled() and not harness.ui.deviceComboBox.isEnabled()
    harness.ui.applyButton.click()
    harness.waitUntil(lambda: not harness.panel.running)
    record = json.loads(harness.record.read_text().splitlines()[-1])
    args = record["argv"]
    assert args[0] == "denoise" and args[args.index("--server") + 1] == "http://gpu-server:8765"
    assert "--device" not in args and not any("s3cret" in a for a in args)  # argv is visible in ps
    assert record["server_token"] == "s3cret-token"
    assert mrmlScene.scene.GetFirstNodeByName("CT denoised") is not None and harness.messages.errors == []
    harness.settings.sync()
    assert harness.settings.value(SETTINGS_RUN_ON) == "server"
    assert harness.settings.value(SETTINGS_SERVER_URL) == "http://gpu-server:8765"
    assert harness.settings.value(SETTINGS_SERVER_TOKEN) == "s3cret-token"
    # A new session gets them back from the settings; this computer again sends --device, no token.
    (tmp_path / "again").mkdir()
    again = PanelHarness(mrmlScene.scene, mrmlScene.appLogic, tmp_path / "again", settingsFile=tmp_path / "settings.ini")
    try:
        assert again.ui.runOnComboBox.currentText() == RunOn.SERVER.label()
        assert again.ui.serverUrlLineEdit.text() == "http://gpu-server:8765"
        again.ui.runOnComboBox.setCurrentIndex(list(RunOn).index(RunOn.LOCAL))
        again.ui.inputSelector.setCurrentNode(volume)
        qt_standins.processEvents()
        again.ui.applyButton.click()
        again.waitUntil(lambda: not again.panel.running)
        record = json.loads(again.record.read_text().splitlines()[-1])
        assert "--device" in record["argv"] and "--server" not in record["argv"] and record["server_token"] is None
    finally:
        again.panel.cleanup()


def test_run_on_a_server_without_url_says_so(mrmlScene, harness):
    volume, _ = addCtVolume()
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.ui.runOnComboBox.setCurrentIndex(list(RunOn).index(RunOn.SERVER))
    harness.ui.serverUrlLineEdit.setText("")
    qt_standins.processEvents()
    harness.ui.applyButton.click()
    assert harness.panel.job is None and "Enter the server's URL" in harness.messages.errors[-1]


def test_import_weights_from_a_file(harness, tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    harness.messages.weightsPath = str(weights)
    harness.ui.importWeightsFileButton.click()
    assert harness.messages.infos == [f"Weights imported from {weights}."]
    assert "Imported weights" in harness.ui.logTextEdit.toPlainText()
    harness.waitUntil(lambda: harness.panel.infoJob is None)  # the model list is refreshed
    harness.messages.weightsPath = str(tmp_path / "missing")
    harness.ui.importWeightsFolderButton.click()
    assert "Weights not found" in harness.messages.errors[-1]


def test_panel_code_uses_portable_qt_calls_and_translations():
    """Slicer glue must run under PythonQt: no string-signal connect, no PythonQt-only property
    reads on widgets, and every user-visible literal passed through _()."""
    import re

    moduleDir = paths.MODULE_DIR
    sources = {name: open(os.path.join(moduleDir, *name.split("/")), encoding="utf-8").read()
               for name in ("MedDiffFM.py", "MedDiffFMModuleLib/Panel.py", "MedDiffFMModuleLib/Logic.py",
                            "MedDiffFMModuleLib/Job.py")}
    for name, text in sources.items():
        assert not re.search(r"\.connect\(\s*['\"]", text), f"{name}: PythonQt string-signal connect"
        for match in re.finditer(r"(?<!logging)\.(setText|setToolTip|setFormat|error|info|delayDisplay)\(\s*f?['\"][^'\"]", text):
            line = text[: match.start()].count("\n") + 1
            pytest.fail(f"{name}:{line}: literal shown to the user without _()")


def test_opening_the_module_never_asks_to_install_but_apply_does(mrmlScene, tmp_path):
    from MedDiffFMModuleLib.Dependencies import DependencyChecker

    volume, _ = addCtVolume()
    installed = []
    checker = DependencyChecker(packages={"torch": "torch", "monai": "monai"}, hasModule=lambda name: False,
                                installTorch=lambda: installed.append("torch"), pipInstall=installed.append)
    h = PanelHarness(mrmlScene.scene, mrmlScene.appLogic, tmp_path)
    try:
        h.panel.logic = h.logic = Logic(dependencyChecker=checker, applicationLogic=mrmlScene.appLogic,
                                        tempRoot=str(tmp_path / "temp"))
        h.logic.confirm = h.messages.confirm
        h.panel.refreshModels(automatic=True)  # what entering the module does
        assert h.panel.infoJob is None and h.messages.questions == []
        assert "torch, monai" in h.ui.modelCardLabel.text()
        h.messages.confirm = lambda text: h.messages.questions.append(text) or False  # the user declines
        h.logic.confirm = h.messages.confirm
        before = mrmlScene.nodeIds()
        h.ui.applyButton.click()
        assert len(h.messages.questions) == 1 and "torch, monai" in h.messages.questions[0]
        assert "cannot run without torch, monai" in h.messages.errors[-1]
        assert installed == [] and not h.panel.running and mrmlScene.nodeIds() == before
    finally:
        h.panel.cleanup()


def test_panel_reads_top_down_task_inputs_options_output_then_apply(mrmlScene, harness):
    volume, _ = addCtVolume()
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.ui.advancedCollapsibleButton.setCollapsed(False)
    ui = harness.ui
    for task, option in ((Task.DENOISE, ui.strengthSlider), (Task.LESION, ui.segmentSelector),
                         (Task.SYNTHESIZE, ui.regionComboBox)):
        harness.chooseTask(task)
        qt_standins.processEvents(0.2)  # the unfolded Advanced section's layout may take more than one pass
        order = [ui.researchNoticeLabel, ui.taskComboBox, ui.inputSelector, option, ui.stepsSpinBox,
                 ui.seedSpinBox, ui.outputSelector, ui.modelCollapsibleButton, ui.applyButton, ui.progressBar]
        assert all(w.isVisible() for w in order), task
        positions = [harness.top_y(w) for w in order]
        assert positions == sorted(positions) and len(set(positions)) == len(positions), (task, positions)
    # Apply is the main action: visible without scrolling past folded sections, taller and bold
    assert ui.applyButton.isVisible() and ui.applyButton.height() >= 32
    assert ui.applyButton.height() > ui.refreshModelsButton.sizeHint().height()
    assert "bold" in ui.applyButton.styleSheet()
    assert harness.top_y(ui.applyButton) + ui.applyButton.height() < 900


def test_research_notice_and_plain_output_names(mrmlScene, harness):
    volume, _ = addCtVolume()
    notice = harness.ui.researchNoticeLabel
    assert notice.isVisible()
    assert "synthetic or altered" in notice.text() and "research" in notice.text().lower()
    assert "diagnosis" in notice.text()
    harness.ui.inputSelector.setCurrentNode(volume)
    harness.chooseTask(Task.LESION)
    assert harness.ui.outputSelector.itemText(0) == 'Create new volume "CT with generated lesion"'
    harness.chooseTask(Task.INPAINT)
    assert harness.ui.outputSelector.itemText(0) == 'Create new volume "CT with generated tissue"'


def test_anatomy_input_only_for_a_model_with_anatomy_channels(mrmlScene, harness):
    """Synthesis shows the anatomy label map only for a model whose ``info --json`` config has
    anatomy channels; with such a model the chosen map is sent as --anatomy, with one without it the
    row is hidden and a map chosen earlier is not sent (the library would refuse it)."""
    labels, _ = addCtVolume(shape=(8, 12, 12), name="labels")
    labelMap = mrmlScene.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "organs")
    labelMap.SetAndObserveImageData(labels.GetImageData())
    harness.ui.advancedCollapsibleButton.setCollapsed(False)
    harness.chooseTask(Task.SYNTHESIZE)
    assert "anatomy" not in harness.visibleRows()  # models not listed yet: hidden
    harness.panel.refreshModels()
    harness.waitUntil(lambda: harness.panel.infoJob is None)
    combo = harness.ui.modelComboBox
    names = [combo.itemData(i) or "" for i in range(combo.count())]
    combo.setCurrentIndex(names.index("meddifffm-anatomy"))
    qt_standins.processEvents()
    assert harness.visibleRows() == {"region", "anatomy", "steps", "seed"}
    assert "anatomy label map (labels 1-4)" in harness.ui.modelCardLabel.text()
    harness.ui.anatomySelector.setCurrentNode(labelMap)
    qt_standins.processEvents()
    assert harness.parameters.anatomyVolume is not None
    harness.ui.applyButton.click()
    harness.waitUntil(lambda: not harness.panel.running)
    args = harness.lastArgs()
    assert args[0] == "synthesize" and "--anatomy" in args and "--like" not in args
    assert harness.messages.errors == []
    for name in ("meddifffm-tiny", ""):  # a model without anatomy channels; "Default model" = the first listed
        combo.setCurrentIndex(names.index(name))
        qt_standins.processEvents()
        assert "anatomy" not in harness.visibleRows() and harness.ui.anatomyRow.isHidden()
        assert "body region only" in harness.ui.modelCardLabel.text()
    harness.ui.applyButton.click()
    harness.waitUntil(lambda: not harness.panel.running)
    assert "--anatomy" not in harness.lastArgs()


def test_model_section_folds_when_a_usable_model_is_installed(harness):
    section = harness.ui.modelCollapsibleButton
    harness.panel.refreshModels()
    harness.waitUntil(lambda: harness.panel.infoJob is None)
    assert harness.panel.hasUsableModel() and section.property("collapsed")
    assert harness.ui.modelComboBox.isHidden() or not harness.ui.modelComboBox.isVisible()
    # the chosen model failed its checksum: the section opens at the next listing
    harness.parameters.model = "meddifffm-paper"
    harness.panel.refreshModels()
    harness.waitUntil(lambda: harness.panel.infoJob is None)
    assert not harness.panel.hasUsableModel() and not section.property("collapsed")
    assert "CHECKSUM MISMATCH" in harness.ui.modelCardLabel.text() and harness.ui.modelCardLabel.isVisible()
    # listing fails: open, with the reason
    section.setCollapsed(True)
    harness.logic.extraEnv["FAKE_MEDDIFFFM_FAIL"] = "user"
    harness.panel.refreshModels()
    harness.waitUntil(lambda: harness.panel.infoJob is None)
    assert not section.property("collapsed")
    assert "could not be listed" in harness.ui.modelCardLabel.text()


def test_segment_editor_button_for_inpaint_and_lesion(mrmlScene, harness):
    ui = harness.ui
    harness.chooseTask(Task.DENOISE)
    assert not ui.editSegmentsButton.isVisible()  # only the tasks that need a region show it
    harness.chooseTask(Task.LESION)
    assert ui.editSegmentsButton.isVisible() and not ui.editSegmentsButton.isEnabled()  # no input yet
    volume, _ = addCtVolume()
    ui.inputSelector.setCurrentNode(volume)
    qt_standins.processEvents()
    assert ui.editSegmentsButton.isEnabled()
    # No segmentation chosen: a new one on the input's grid, with an empty segment, chosen in the panel
    before = mrmlScene.nodeIds()
    ui.editSegmentsButton.click()
    qt_standins.processEvents()
    p = harness.parameters
    assert p.segmentationNode is not None and p.segmentationNode.GetName() == "CT lesion region"
    assert p.segmentationNode.GetSegmentation().GetSegment(p.segmentId).GetName() == "lesion region"
    assert ui.segmentSelector.currentNode() is p.segmentationNode
    assert ui.segmentSelector.currentSegmentID() == p.segmentId
    assert harness.segmentEditor.opened == [(p.segmentationNode, volume)]
    assert len(mrmlScene.nodeIds()) > len(before)
    # A segmentation chosen: Segment Editor opens on it, nothing new is added
    other, otherId = addSegmentOnGrid(mrmlScene.scene, np.ones((2, 2, 2), np.uint8), volumeMatrix(volume))
    ui.segmentSelector.setCurrentNode(other)
    ui.segmentSelector.setCurrentSegmentID(otherId)
    qt_standins.processEvents()
    count = len(mrmlScene.nodeIds())
    ui.editSegmentsButton.click()
    assert harness.segmentEditor.opened[-1] == (other, volume)
    assert len(mrmlScene.nodeIds()) == count
    assert harness.messages.errors == []

"""Behaviour of the module panel (``Resources/UI/MedDiffFM.ui``), apart from the Slicer widget base.

``MedDiffFMPanel`` gets the panel's child widgets (``ui``), the logic and the parameter node, and
handles: which options the chosen task shows, Apply/Cancel, polling the background run with a
``qt.QTimer``, the progress bar and log, the model list and card, the time estimate, the settings
(model, device) and weight import. Collaborators are injected (``messages`` for dialogs,
``settings``), so tests drive it offscreen under PySide6 with stand-ins for Slicer's widgets.

Only the calls common to PythonQt and PySide6 are used: methods (``setVisible``, ``setText``,
``property(name)``...) rather than PythonQt's property attributes, and ``signal.connect(slot)``.
"""

import dataclasses
import logging
from typing import Optional

import qt

from .I18n import _
from .Job import Job, MedDiffFMModuleError, RunCancelled
from .Logic import requestFromParameters, sameNode
from .Models import LibraryInfo, estimateSeconds, formatDuration
from .Progress import ProgressUpdate
from .Tasks import ALL_OPTIONS, Device, RunOn, Task, needsMask, outputName, taskSpec, visibleOptions

SETTINGS_MODEL = "MedDiffFM/Model"
SETTINGS_DEVICE = "MedDiffFM/Device"
SETTINGS_RUN_ON = "MedDiffFM/RunOn"
SETTINGS_SERVER_URL = "MedDiffFM/ServerURL"
SETTINGS_SERVER_TOKEN = "MedDiffFM/ServerToken"
POLL_INTERVAL_MS = 200


class SlicerMessages:
    """Dialogs of the Slicer application (tests inject their own object with the same methods)."""

    def error(self, text: str) -> None:
        import slicer

        slicer.util.errorDisplay(text, windowTitle=_("MedDiffFM"))

    def info(self, text: str) -> None:
        import slicer

        slicer.util.infoDisplay(text, windowTitle=_("MedDiffFM"))

    def confirm(self, text: str) -> bool:
        import slicer

        return bool(slicer.util.confirmOkCancelDisplay(text, windowTitle=_("MedDiffFM")))

    def askWeightsPath(self, folder: bool) -> str:
        if folder:
            path = qt.QFileDialog.getExistingDirectory(None, _("Import MedDiff-FM weights from a folder"))
        else:
            path = qt.QFileDialog.getOpenFileName(
                None, _("Import MedDiff-FM weights from a file"), "",
                _("Model manifest (manifest.json *.json);;All files (*)"))
        if isinstance(path, tuple):  # PySide returns (path, filter)
            path = path[0]
        return path or ""


class SlicerSegmentEditor:
    """Opens Slicer's Segment Editor on a segmentation (tests inject their own object)."""

    def open(self, segmentationNode, sourceVolumeNode) -> None:
        import slicer

        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(segmentationNode)
        if hasattr(editor, "setSourceVolumeNode"):  # Slicer 5.2 and later
            editor.setSourceVolumeNode(sourceVolumeNode)
        else:
            editor.setMasterVolumeNode(sourceVolumeNode)


class MedDiffFMPanel:
    """The panel reads top-down: task, the inputs it needs, its options (steps and seed under
    "Advanced"), the output, then "Model and device" (folded while a usable model is installed)
    and Apply.

    :param ui: object whose attributes are the panel's named child widgets.
    :param logic: a :class:`MedDiffFMModuleLib.Logic.Logic`.
    :param messages: ``error``, ``info``, ``confirm``, ``askWeightsPath`` (default: Slicer dialogs).
    :param settings: a ``qt.QSettings`` (default: Slicer's application settings).
    :param segmentEditor: ``open(segmentationNode, sourceVolumeNode)`` (default: Slicer's Segment Editor).
    """

    def __init__(self, ui, logic, messages=None, settings=None, scene=None, segmentEditor=None):
        self.ui = ui
        self.logic = logic
        self.messages = messages or SlicerMessages()
        self.segmentEditor = segmentEditor or SlicerSegmentEditor()
        if getattr(logic, "confirm", None) is None:
            logic.confirm = self.messages.confirm  # installation questions use the panel's dialogs
        self.settings = settings if settings is not None else qt.QSettings()
        self._scene = scene
        self._parameterNode = None
        self.job: Optional[Job] = None
        self.infoJob: Optional[Job] = None
        self.libraryInfo: Optional[LibraryInfo] = None
        self.lastResult = None
        self._updating = False
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.timeout.connect(self.onTimer)
        self.optionRows = {option: getattr(ui, f"{option}Row") for option in ALL_OPTIONS}

    # -- setup -----------------------------------------------------------------------------

    def setup(self) -> None:
        """Connect the widgets (the parameter-bound ones are connected by ``connectGui``)."""
        ui = self.ui
        ui.applyButton.clicked.connect(self.onApplyButton)
        ui.refreshModelsButton.clicked.connect(self.refreshModels)
        ui.importWeightsFileButton.clicked.connect(lambda *args: self.onImportWeights(folder=False))
        ui.importWeightsFolderButton.clicked.connect(lambda *args: self.onImportWeights(folder=True))
        ui.modelComboBox.currentIndexChanged.connect(self.onModelChanged)
        ui.segmentSelector.currentNodeChanged.connect(self.onSegmentSelectionChanged)
        ui.segmentSelector.currentSegmentChanged.connect(self.onSegmentSelectionChanged)
        ui.editSegmentsButton.clicked.connect(self.onEditSegments)
        self._fillModelComboBox()
        self._setupRunOn()
        self.setProgress(None)

    # -- run on: this computer or a server (URL and token in the settings) -------------------

    def _setupRunOn(self) -> None:
        ui = self.ui
        ui.runOnComboBox.clear()
        for place in RunOn:
            ui.runOnComboBox.addItem(place.label(), place.value)
        try:
            runOn = RunOn(str(self.settings.value(SETTINGS_RUN_ON, RunOn.LOCAL.value)))
        except ValueError:
            runOn = RunOn.LOCAL
        ui.runOnComboBox.setCurrentIndex(list(RunOn).index(runOn))
        ui.serverUrlLineEdit.setText(str(self.settings.value(SETTINGS_SERVER_URL, "") or ""))
        ui.serverTokenLineEdit.setText(str(self.settings.value(SETTINGS_SERVER_TOKEN, "") or ""))
        ui.runOnComboBox.currentIndexChanged.connect(self.onRunOnChanged)
        ui.serverUrlLineEdit.textChanged.connect(self.onRunOnChanged)
        ui.serverTokenLineEdit.textChanged.connect(self.onRunOnChanged)
        self._showRunOn()

    def runOn(self) -> RunOn:
        return list(RunOn)[max(0, int(self.ui.runOnComboBox.property("currentIndex")))]

    def onRunOnChanged(self, *args) -> None:
        """Keep the choice, URL and token in the settings (they persist across sessions)."""
        self.settings.setValue(SETTINGS_RUN_ON, self.runOn().value)
        self.settings.setValue(SETTINGS_SERVER_URL, self.ui.serverUrlLineEdit.text().strip())
        self.settings.setValue(SETTINGS_SERVER_TOKEN, self.ui.serverTokenLineEdit.text().strip())
        self._showRunOn()

    def _showRunOn(self) -> None:
        server = self.runOn() is RunOn.SERVER
        for widget in (self.ui.serverUrlLineEdit, self.ui.serverTokenLineEdit):
            widget.setEnabled(server)
        self.ui.deviceComboBox.setEnabled(not server)  # the server picks its own device

    @property
    def scene(self):
        return self._scene if self._scene is not None else self.logic.scene

    def setMRMLScene(self, scene) -> None:
        for selector in (self.ui.inputSelector, self.ui.anatomySelector, self.ui.outputSelector, self.ui.segmentSelector):
            selector.setMRMLScene(scene)

    # -- parameter node --------------------------------------------------------------------

    @property
    def parameterNode(self):
        return self._parameterNode

    def setParameterNode(self, parameterNode) -> None:
        """Use ``parameterNode`` (already connected to the GUI by ``connectGui``)."""
        self._parameterNode = parameterNode
        if parameterNode is None:
            return
        self.initializeParameterNode()
        self.updateGUIFromParameterNode()

    def initializeParameterNode(self) -> None:
        """Defaults: model and device from the settings; the first CT volume as input."""
        p = self._parameterNode
        self._updating = True  # no GUI update (and no settings write) half-way through
        try:
            savedModel = self.settings.value(SETTINGS_MODEL, "")
            if savedModel and not p.model:
                p.model = str(savedModel)
            savedDevice = self.settings.value(SETTINGS_DEVICE, "")
            if savedDevice:
                try:
                    p.device = Device(str(savedDevice))
                except ValueError:
                    pass
            if p.inputVolume is None and self.scene is not None:
                volumes = self.scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
                for index in range(volumes.GetNumberOfItems()):
                    node = volumes.GetItemAsObject(index)
                    if not node.IsA("vtkMRMLLabelMapVolumeNode") and node.GetImageData() is not None:
                        p.inputVolume = node
                        break
        finally:
            self._updating = False

    def onParameterNodeModified(self, *args) -> None:
        self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self) -> None:
        p = self._parameterNode
        if p is None or self._updating:
            return
        self._updating = True
        try:
            ui = self.ui
            task = Task(p.task)
            tasks = self.libraryInfo.tasks if self.libraryInfo is not None else None
            spec = taskSpec(task, tasks)
            for option, visible in visibleOptions(task, self.anatomyChannels(), tasks).items():
                self.optionRows[option].setVisible(visible)
            ui.inputVolumeLabel.setText(_("Input volume:") if spec.inputRequired else _("Reference grid (optional):"))
            ui.taskDescriptionLabel.setText(spec.description)
            ui.thresholdSpinBox.setEnabled(bool(p.useThreshold))
            inputName = p.inputVolume.GetName() if p.inputVolume is not None else None
            if inputName or not spec.inputRequired:
                ui.outputSelector.setProperty("noneDisplay", _("Create new volume \"{name}\"").format(
                    name=outputName(task, inputName)))
            else:
                ui.outputSelector.setProperty("noneDisplay", _("Create new volume"))
            if needsMask(task, tasks):
                self._syncSegmentSelectorFromParameters()
            ui.editSegmentsButton.setEnabled(p.inputVolume is not None)
            self._syncModelComboBoxFromParameters()
            self.settings.setValue(SETTINGS_DEVICE, Device(p.device).value)
            self.updateEstimate()
            self.updateApplyButton()
        finally:
            self._updating = False

    def missingSelection(self) -> Optional[str]:
        """Why Apply cannot run now (``None`` when it can)."""
        p = self._parameterNode
        if p is None:
            return _("No parameter node.")
        task = Task(p.task)
        tasks = self.libraryInfo.tasks if self.libraryInfo is not None else None
        if taskSpec(task, tasks).inputRequired and p.inputVolume is None:
            return _("Select an input volume.")
        if needsMask(task, tasks) and (p.segmentationNode is None or not p.segmentId):
            return _("Select a segmentation and a segment (draw the region with Segment Editor).")
        return None

    def updateApplyButton(self) -> None:
        ui = self.ui
        if self.job is not None:
            ui.applyButton.setText(_("Cancel"))
            ui.applyButton.setToolTip(_("Stop the run; the scene stays as it was."))
            ui.applyButton.setEnabled(True)
            return
        ui.applyButton.setText(_("Apply"))
        reason = self.missingSelection()
        ui.applyButton.setEnabled(reason is None)
        if reason is None:
            task = Task(self._parameterNode.task)
            ui.applyButton.setToolTip(_("Run \"{task}\".").format(task=task.label()))
        else:
            ui.applyButton.setToolTip(reason)

    # -- segment selector (no parameterNodeWrapper connector for it) ---------------------------

    def _syncSegmentSelectorFromParameters(self) -> None:
        p = self._parameterNode
        selector = self.ui.segmentSelector
        if not sameNode(selector.currentNode(), p.segmentationNode):
            selector.setCurrentNode(p.segmentationNode)
        if p.segmentId and selector.currentSegmentID() != p.segmentId:
            selector.setCurrentSegmentID(p.segmentId)

    def onSegmentSelectionChanged(self, *args) -> None:
        p = self._parameterNode
        if p is None or self._updating:
            return
        selector = self.ui.segmentSelector
        node = selector.currentNode()
        segmentId = selector.currentSegmentID() if node is not None else ""
        if not sameNode(p.segmentationNode, node):
            p.segmentationNode = node
        if (p.segmentId or "") != (segmentId or ""):
            p.segmentId = segmentId or ""
        self.updateGUIFromParameterNode()

    def onEditSegments(self, *args) -> None:
        """Open Segment Editor on the chosen segmentation (a new one with an empty segment, on the
        input's grid, when none is chosen), with the input volume as source."""
        p = self._parameterNode
        if p is None:
            return
        try:
            if p.segmentationNode is None:
                segmentation, segmentId = self.logic.createRegionSegmentation(p.inputVolume, Task(p.task))
                p.segmentationNode = segmentation
                p.segmentId = segmentId
            self.segmentEditor.open(p.segmentationNode, p.inputVolume)
        except MedDiffFMModuleError as error:
            self.messages.error(str(error))

    # -- models ----------------------------------------------------------------------------------

    def refreshModels(self, *args, automatic: bool = False) -> None:
        """List the models in the background (``meddifffm info --json``). ``automatic`` (module
        opened): never asks to install packages, only says what is missing."""
        if self.infoJob is not None:
            return
        if automatic:
            missing = self.logic.missingDependencies()
            if missing:
                self.ui.modelCardLabel.setText(_(
                    "Not installed yet: {names}. They are installed, after you confirm, on the first "
                    "Apply or Refresh.").format(names=", ".join(missing)))
                self.ui.modelCollapsibleButton.setCollapsed(False)
                return
        try:
            self.logic.ensureDependencies()
            self.infoJob = self.logic.startInfo()
        except MedDiffFMModuleError as error:
            self.ui.modelCardLabel.setText(str(error))
            self.ui.modelCollapsibleButton.setCollapsed(False)
            return
        self.ui.modelCardLabel.setText(_("Listing models and verifying checksums..."))
        self.ui.refreshModelsButton.setEnabled(False)
        self.timer.start()

    def _finishInfoJob(self) -> None:
        job, self.infoJob = self.infoJob, None
        self.ui.refreshModelsButton.setEnabled(True)
        try:
            self.libraryInfo = self.logic.parseInfo(job)
        except MedDiffFMModuleError as error:
            self.appendLog(_("Listing models failed: {error}").format(error=error))
            self.ui.modelCardLabel.setText(_("Models could not be listed: {error}").format(error=error))
            self.ui.modelCollapsibleButton.setCollapsed(False)
            return
        self._fillModelComboBox()
        self.updateGUIFromParameterNode()
        # Nothing to choose while a usable model is installed; open the section when there is a problem.
        self.ui.modelCollapsibleButton.setCollapsed(self.hasUsableModel())

    def hasUsableModel(self) -> bool:
        """Whether the chosen model (or, for "Default model", some base model) is installed and
        passed its checksum."""
        if self.libraryInfo is None:
            return False
        name = self._parameterNode.model if self._parameterNode is not None else ""
        candidates = [self.libraryInfo.model(name)] if name else self.libraryInfo.models
        return any(m is not None and m.kind == "unet" and m.sha256Ok is not False and not m.error
                   for m in candidates)

    def _fillModelComboBox(self) -> None:
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        try:
            combo.clear()
            combo.addItem(_("Default model"), "")
            for model in (self.libraryInfo.models if self.libraryInfo else []):
                if model.kind != "unet":
                    continue  # ControlNets are picked by the library for the tasks that need them
                suffix = "" if model.sha256Ok is not False else _(" (checksum mismatch)")
                combo.addItem(model.name + suffix, model.name)
            saved = self._parameterNode.model if self._parameterNode is not None else ""
            if saved and self._comboIndex(saved) < 0:
                combo.addItem(saved, saved)  # a model folder chosen earlier
        finally:
            combo.blockSignals(False)

    def _comboIndex(self, name: str) -> int:
        combo = self.ui.modelComboBox
        for index in range(combo.property("count")):
            if (combo.itemData(index) or "") == (name or ""):
                return index
        return -1

    def _syncModelComboBoxFromParameters(self) -> None:
        combo = self.ui.modelComboBox
        index = self._comboIndex(self._parameterNode.model or "")
        if index < 0:
            self._fillModelComboBox()
            index = self._comboIndex(self._parameterNode.model or "")
        if index >= 0 and index != combo.property("currentIndex"):
            combo.blockSignals(True)
            combo.setCurrentIndex(index)
            combo.blockSignals(False)
        self.ui.modelCardLabel.setText(self.modelCardText())

    def anatomyChannels(self) -> int:
        """Anatomy channels of the chosen model ("Default model": the first base model listed); 0
        when the models are not listed yet, so that the anatomy input stays hidden until known."""
        if self.libraryInfo is None or self._parameterNode is None:
            return 0
        model = self.libraryInfo.baseModel(self._parameterNode.model)
        return model.anatomyChannels if model is not None else 0

    def modelCardText(self) -> str:
        if self.libraryInfo is None:
            return _("Models not listed yet: click Refresh.")
        model = self.libraryInfo.model(self._parameterNode.model if self._parameterNode else None)
        if model is None:
            if not self.libraryInfo.models:
                return _("No model installed: import weights from a file or folder.")
            return _("Model '{name}' is not installed.").format(name=self._parameterNode.model)
        return model.summaryText()

    def onModelChanged(self, index) -> None:
        p = self._parameterNode
        if p is None or self._updating:
            return
        name = self.ui.modelComboBox.itemData(self.ui.modelComboBox.property("currentIndex")) or ""
        self.settings.setValue(SETTINGS_MODEL, name)
        if p.model != name:
            p.model = name
        self.updateGUIFromParameterNode()

    def onImportWeights(self, folder: bool) -> None:
        path = self.messages.askWeightsPath(folder)
        if not path:
            return
        try:
            report = self.logic.importWeights(path)
        except MedDiffFMModuleError as error:
            self.messages.error(_("Importing weights failed:\n{error}").format(error=error))
            return
        self.appendLog(report)
        self.messages.info(_("Weights imported from {path}.").format(path=path))
        self.refreshModels()

    # -- estimate --------------------------------------------------------------------------------

    def resolvedDevice(self) -> str:
        device = Device(self._parameterNode.device)
        if device is Device.CPU:
            return "cpu"
        if device is Device.GPU:
            return Device.GPU.cliValue()
        return "cuda" if (self.libraryInfo is not None and self.libraryInfo.hasGpu) else "cpu"

    def updateEstimate(self) -> None:
        p = self._parameterNode
        task = Task(p.task)
        volume = p.inputVolume
        if volume is not None and volume.GetImageData() is not None:
            dims = list(volume.GetImageData().GetDimensions())
            spacing = list(volume.GetSpacing())
            if task is Task.SUPERRES:
                factor = max(2, int(p.factorZ or 2))
                dims[2] *= factor
                spacing[2] /= factor
        elif task is Task.SYNTHESIZE:
            dims, spacing = None, None  # the library's default: one model patch
        else:
            self.ui.estimatedTimeLabel.setText(_("select an input volume"))
            return
        model = self.libraryInfo.model(p.model) if self.libraryInfo else None
        device = self.resolvedDevice()
        info = self.libraryInfo or LibraryInfo()
        seconds = estimateSeconds(dims, spacing, p.steps or None, device, model, task.value, info.cpuPrecision,
                                  info.overlap)
        deviceName = _("CPU") if device == "cpu" else _("GPU")
        self.ui.estimatedTimeLabel.setText(_("{duration} on {device} (rough estimate)").format(
            duration=formatDuration(seconds), device=deviceName))

    # -- run -------------------------------------------------------------------------------------

    def onApplyButton(self, *args) -> None:
        if self.job is not None:
            self.cancel()
        else:
            self.start()

    def start(self) -> Optional[Job]:
        if self.job is not None or self._parameterNode is None:
            return None
        request = requestFromParameters(self._parameterNode)
        if self.runOn() is RunOn.SERVER:
            # The CLI still runs here, with --server: progress, cancel and errors stay one path.
            request = dataclasses.replace(request, options=dataclasses.replace(
                request.options, server=self.ui.serverUrlLineEdit.text().strip() or None))
            self.logic.serverToken = self.ui.serverTokenLineEdit.text().strip() or None
            if request.options.server is None:
                message = _("Enter the server's URL (e.g. http://gpu-server:8765) under \"Model and device\", or "
                            "run on this computer.")
                self.ui.statusLabel.setText(message)
                self.messages.error(message)
                return None
        else:
            self.logic.serverToken = None
        if not self.anatomyChannels():  # the row is hidden: a map chosen for another model is not sent
            request = dataclasses.replace(request, anatomyVolume=None)
        self.ui.logTextEdit.clear()
        self.setProgress(ProgressUpdate("starting"))
        self.ui.statusLabel.setText("")
        try:
            self.job = self.logic.startTask(request, onProgress=self.setProgress, onLog=self.appendLog)
        except MedDiffFMModuleError as error:
            self.setProgress(None)
            self.ui.statusLabel.setText(str(error))
            self.messages.error(str(error))
            return None
        self.appendLog(" ".join(self.job.command))
        self.updateApplyButton()
        self.timer.start()
        return self.job

    def cancel(self) -> None:
        if self.job is None:
            return
        self.ui.statusLabel.setText(_("Cancelling..."))
        self.job.cancel()
        self._finishJob()

    def onTimer(self) -> None:
        if self.job is not None:
            self.job.poll()
            if self.job.isFinished():
                self._finishJob()
        if self.infoJob is not None:
            self.infoJob.poll()
            if self.infoJob.isFinished():
                self._finishInfoJob()
        if self.job is None and self.infoJob is None:
            self.timer.stop()

    def _finishJob(self) -> None:
        job, self.job = self.job, None
        try:
            result = self.logic.finishTask(job)
        except RunCancelled as cancelled:
            self.setProgress(None)
            self.ui.progressBar.setFormat(_("Cancelled"))
            self.ui.statusLabel.setText(str(cancelled))
            self.appendLog(str(cancelled))
        except MedDiffFMModuleError as error:
            self.ui.progressBar.setFormat(_("Failed"))
            self.ui.statusLabel.setText(str(error))
            self.messages.error(str(error))
        except Exception as error:  # an unexpected bug: show it, keep the panel usable
            logging.exception("MedDiffFM: importing the result failed")
            self.ui.progressBar.setFormat(_("Failed"))
            self.ui.statusLabel.setText(str(error))
            self.messages.error(_("Unexpected error: {error}").format(error=error))
        else:
            self.lastResult = result
            self.ui.progressBar.setMaximum(100)
            self.ui.progressBar.setValue(100)
            self.ui.progressBar.setFormat(_("Done"))
            names = ", ".join(node.GetName() for node in result.nodes)
            self.ui.statusLabel.setText(_("Done in {seconds:.0f} s (seed {seed}): {names}").format(
                seconds=result.seconds, seed=result.seed, names=names))
        finally:
            self.updateApplyButton()
            if self.infoJob is None:
                self.timer.stop()

    @property
    def running(self) -> bool:
        return self.job is not None

    # -- progress and log ------------------------------------------------------------------------

    def setProgress(self, update: Optional[ProgressUpdate]) -> None:
        bar = self.ui.progressBar
        if update is None:
            bar.setMaximum(100)
            bar.setValue(0)
            bar.setFormat(_("Ready"))
            return
        if update.total > 0:
            bar.setMaximum(100)
            bar.setValue(update.percent)
        elif update.stage == "done":
            bar.setMaximum(100)
            bar.setValue(100)
        else:
            bar.setMaximum(0)  # busy indicator while the step count is unknown
        bar.setFormat(update.text())

    def appendLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def cleanup(self) -> None:
        """The module is closed: stop any run (nothing is added to the scene)."""
        if self.job is not None:
            self.job.cancel()
            try:
                self.logic.finishTask(self.job)
            except MedDiffFMModuleError:
                pass
            self.job = None
        if self.infoJob is not None:
            self.infoJob.cancel()
            self.infoJob.cleanup()
            self.infoJob = None
        self.timer.stop()

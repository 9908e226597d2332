"""Load the module's real ``.ui`` file offscreen with PySide6.

Slicer's own custom widgets (``qMRMLWidget``, ``qMRMLNodeComboBox``, ``qMRMLSegmentSelectorWidget``,
``ctkCollapsibleButton``, ``ctkSliderWidget``) do not exist in PySide6: small stand-ins with the
same class names, properties, signals and the methods the module calls take their place. A
``qt`` module shim (PySide6's QtCore + QtGui + QtWidgets in one namespace, like PythonQt's ``qt``)
lets ``MedDiffFMModuleLib.Panel`` import and run unchanged.
"""

import os
import sys
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from PySide6.QtCore import Property, Signal  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402

from . import paths  # noqa: E402


def installQtShim() -> types.ModuleType:
    """Register a ``qt`` module made of PySide6 classes (PythonQt's flat namespace)."""
    if "qt" in sys.modules and getattr(sys.modules["qt"], "__medDiffFMShim__", False):
        return sys.modules["qt"]
    shim = types.ModuleType("qt")
    for module in (QtCore, QtGui, QtWidgets):
        for name in dir(module):
            if not name.startswith("_"):
                setattr(shim, name, getattr(module, name))
    shim.__medDiffFMShim__ = True
    sys.modules["qt"] = shim
    return shim


# PySide6 6.12 on CPython 3.11 drops one reference to None on every call of a C++ method that
# returns void (setText, setMaximum...): a long offscreen session (the screenshot script's real runs)
# ends in "Fatal Python error: none_dealloc". A reserve of references keeps None alive; from Python
# 3.12 on, None is immortal and this does nothing.
_NONE_RESERVE = [None] * 4_000_000 if sys.version_info < (3, 12) else []


def application() -> QtWidgets.QApplication:
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(["MedDiffFM-tests"])
    return app


class qMRMLWidget(QtWidgets.QWidget):
    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class ctkCollapsibleButton(QtWidgets.QGroupBox):
    """A group box whose title is the button text; collapsing hides the contents.

    Like ctkCollapsibleButton, a child's own visibility (``setVisible`` by the module) is remembered
    apart from the folding: a row shown while the section is folded stays hidden until it is
    unfolded, and a row hidden by the module stays hidden when it is unfolded.
    """

    contentsCollapsed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._text = ""
        self._collapsed = False
        self._forcing = False
        self.setStyleSheet("QGroupBox { font-weight: bold; }")

    def _getText(self):
        return self._text

    def _setText(self, text):
        self._text = text
        self._refreshTitle()

    def _isCollapsed(self):
        return self._collapsed

    def setCollapsed(self, collapsed):
        self._collapsed = bool(collapsed)
        self._applyCollapsed()
        self._refreshTitle()
        self.contentsCollapsed.emit(self._collapsed)

    def childEvent(self, event):
        super().childEvent(event)
        if event.type() == QtCore.QEvent.ChildAdded and isinstance(event.child(), QtWidgets.QWidget):
            event.child().installEventFilter(self)

    def eventFilter(self, child, event):
        if not self._forcing and isinstance(child, QtWidgets.QWidget) and child.parent() is self:
            if event.type() == QtCore.QEvent.ShowToParent:
                child.setProperty("visibilityToParent", True)
                if self._collapsed:
                    self._setChildVisibility(child)
            elif event.type() == QtCore.QEvent.HideToParent:
                child.setProperty("visibilityToParent", False)
        return False

    def _setChildVisibility(self, child):
        wanted = child.property("visibilityToParent")
        self._forcing = True
        try:
            child.setVisible(not self._collapsed and (wanted is None or bool(wanted)))
        finally:
            self._forcing = False

    def _applyCollapsed(self):
        for child in self.findChildren(QtWidgets.QWidget, options=QtCore.Qt.FindDirectChildrenOnly):
            self._setChildVisibility(child)
        if self._collapsed:
            self.setFlat(True)
            self.setMaximumHeight(self.fontMetrics().height() + 6)
        else:
            self.setFlat(False)
            self.setMaximumHeight(16777215)

    def showEvent(self, event):  # the .ui sets "collapsed" before the children exist
        if self._collapsed:
            self._applyCollapsed()
        super().showEvent(event)

    def _refreshTitle(self):
        self.setTitle(("\u25b6 " if self._collapsed else "\u25bc ") + self._text)

    text = Property(str, _getText, _setText)
    collapsed = Property(bool, _isCollapsed, setCollapsed)


class ctkSliderWidget(QtWidgets.QWidget):
    """A slider beside a spin box, with ctkSliderWidget's float API (value, minimum, maximum,
    singleStep, pageStep, decimals, valueChanged(double))."""

    valueChanged = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Horizontal, self)
        self.spinBox = QtWidgets.QDoubleSpinBox(self)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spinBox)
        self._pageStep = 0.1
        self._syncing = False
        self.spinBox.valueChanged.connect(self._fromSpinBox)
        self.slider.valueChanged.connect(self._fromSlider)
        self._updateSlider()

    def _scale(self):
        return 10 ** self.spinBox.decimals()

    def _updateSlider(self):
        self._syncing = True
        try:
            scale = self._scale()
            self.slider.setRange(int(round(self.spinBox.minimum() * scale)), int(round(self.spinBox.maximum() * scale)))
            self.slider.setSingleStep(max(1, int(round(self.spinBox.singleStep() * scale))))
            self.slider.setValue(int(round(self.spinBox.value() * scale)))
        finally:
            self._syncing = False

    def _fromSpinBox(self, value):
        self._updateSlider()
        self.valueChanged.emit(value)

    def _fromSlider(self, position):
        if not self._syncing:
            self.spinBox.setValue(position / self._scale())

    def value(self):
        return self.spinBox.value()

    def setValue(self, value):
        self.spinBox.setValue(value)

    def minimum(self):
        return self.spinBox.minimum()

    def setMinimum(self, value):
        self.spinBox.setMinimum(value)
        self._updateSlider()

    def maximum(self):
        return self.spinBox.maximum()

    def setMaximum(self, value):
        self.spinBox.setMaximum(value)
        self._updateSlider()

    def singleStep(self):
        return self.spinBox.singleStep()

    def setSingleStep(self, value):
        self.spinBox.setSingleStep(value)
        self._updateSlider()

    def decimals(self):
        return self.spinBox.decimals()

    def setDecimals(self, value):
        self.spinBox.setDecimals(value)
        self._updateSlider()

    def _getPageStep(self):
        return self._pageStep

    def _setPageStep(self, value):
        self._pageStep = value

    pageStep = Property(float, _getPageStep, _setPageStep)

    def applyUiProperty(self, name, value):
        """Properties of the .ui file (Qt properties named like these methods cannot be declared
        in PySide6 without hiding the methods): applied by :func:`loadUi`."""
        setter = {"value": self.setValue, "minimum": self.setMinimum, "maximum": self.setMaximum,
                  "singleStep": self.setSingleStep, "decimals": self.setDecimals}.get(name)
        if setter is not None:
            setter(value)


def _nodeMatches(node, nodeTypes, showChildNodeTypes):
    for nodeType in nodeTypes:
        if node.IsA(nodeType) and (showChildNodeTypes or node.GetClassName() == nodeType):
            return True
    return False


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    """Lists the scene's nodes of ``nodeTypes`` (plus "None" when ``noneEnabled``)."""

    currentNodeChanged = Signal(object)
    currentNodeIDChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self._nodes = []
        self._nodeTypes = []
        self._showChildNodeTypes = True
        self._noneEnabled = False
        self._noneDisplay = "None"
        self._flags = {"addEnabled": True, "removeEnabled": True, "renameEnabled": False}
        self._observerTags = []
        self._lastNode = None
        self.currentIndexChanged.connect(self._onIndexChanged)

    # properties set from the .ui file
    def _getNodeTypes(self):
        return list(self._nodeTypes)

    def _setNodeTypes(self, types_):
        self._nodeTypes = list(types_)
        self.refresh()

    def _getShowChild(self):
        return self._showChildNodeTypes

    def _setShowChild(self, value):
        self._showChildNodeTypes = bool(value)
        self.refresh()

    def _getNoneEnabled(self):
        return self._noneEnabled

    def _setNoneEnabled(self, value):
        self._noneEnabled = bool(value)
        self.refresh()

    def _getNoneDisplay(self):
        return self._noneDisplay

    def _setNoneDisplay(self, text):
        self._noneDisplay = text
        if self._noneEnabled and self.count() > 0:
            self.setItemText(0, text)

    def _flag(name):  # noqa: N805 - property factory
        return Property(bool, lambda self: self._flags[name], lambda self, v: self._flags.__setitem__(name, bool(v)))

    nodeTypes = Property("QStringList", _getNodeTypes, _setNodeTypes)
    showChildNodeTypes = Property(bool, _getShowChild, _setShowChild)
    noneEnabled = Property(bool, _getNoneEnabled, _setNoneEnabled)
    noneDisplay = Property(str, _getNoneDisplay, _setNoneDisplay)
    addEnabled = _flag("addEnabled")
    removeEnabled = _flag("removeEnabled")
    renameEnabled = _flag("renameEnabled")

    # qMRMLNodeComboBox API
    def setMRMLScene(self, scene):
        if self._scene is not None:
            for tag in self._observerTags:
                self._scene.RemoveObserver(tag)
        self._scene = scene
        self._observerTags = []
        if scene is not None:
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent):
                self._observerTags.append(scene.AddObserver(event, lambda *args: self.refresh()))
        self.refresh()

    def mrmlScene(self):
        return self._scene

    def refresh(self):
        current = self.currentNode()
        nodes = [None] if self._noneEnabled else []
        if self._scene is not None:
            for index in range(self._scene.GetNumberOfNodes()):
                node = self._scene.GetNthNode(index)
                if _nodeMatches(node, self._nodeTypes, self._showChildNodeTypes) and not node.GetHideFromEditors():
                    nodes.append(node)
        self.blockSignals(True)
        try:
            self.clear()
            self._nodes = nodes
            for node in nodes:
                self.addItem(self._noneDisplay if node is None else node.GetName())
            if current in nodes:
                self.setCurrentIndex(nodes.index(current))
            elif nodes:
                self.setCurrentIndex(0)
        finally:
            self.blockSignals(False)
        self._emitIfChanged()

    def currentNode(self):
        index = self.currentIndex()
        if 0 <= index < len(self._nodes):
            return self._nodes[index]
        return None

    def currentNodeID(self):
        node = self.currentNode()
        return node.GetID() if node is not None else ""

    def setCurrentNode(self, node):
        if node is not None and node not in self._nodes:
            self.refresh()
        if node in self._nodes:
            self.setCurrentIndex(self._nodes.index(node))

    def nodes(self):
        return [n for n in self._nodes if n is not None]

    def _onIndexChanged(self, index):
        self._emitIfChanged()

    def _emitIfChanged(self):
        node = self.currentNode()
        if node is not self._lastNode:
            self._lastNode = node
            self.currentNodeChanged.emit(node)
            self.currentNodeIDChanged.emit(node.GetID() if node is not None else "")


class qMRMLSegmentSelectorWidget(qMRMLWidget):
    """A segmentation combo box and a segment combo box."""

    currentNodeChanged = Signal(object)
    currentSegmentChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.nodeComboBox = qMRMLNodeComboBox(self)
        self.nodeComboBox.setObjectName("")  # not a panel widget
        self.nodeComboBox.nodeTypes = ["vtkMRMLSegmentationNode"]
        self.segmentComboBox = QtWidgets.QComboBox(self)
        layout.addWidget(self.nodeComboBox)
        layout.addWidget(self.segmentComboBox)
        self._segmentIds = []
        self.nodeComboBox.currentNodeChanged.connect(self._onNodeChanged)
        self.segmentComboBox.currentIndexChanged.connect(self._onSegmentIndexChanged)

    def _getNoneEnabled(self):
        return self.nodeComboBox.noneEnabled

    def _setNoneEnabled(self, value):
        self.nodeComboBox.noneEnabled = value

    noneEnabled = Property(bool, _getNoneEnabled, _setNoneEnabled)

    def setMRMLScene(self, scene):
        super().setMRMLScene(scene)
        self.nodeComboBox.setMRMLScene(scene)

    def currentNode(self):
        return self.nodeComboBox.currentNode()

    def currentNodeID(self):
        return self.nodeComboBox.currentNodeID()

    def setCurrentNode(self, node):
        self.nodeComboBox.setCurrentNode(node)
        if node is None and self.nodeComboBox.noneEnabled:
            self.nodeComboBox.setCurrentIndex(0)

    def currentSegmentID(self):
        index = self.segmentComboBox.currentIndex()
        return self._segmentIds[index] if 0 <= index < len(self._segmentIds) else ""

    def setCurrentSegmentID(self, segmentId):
        self.populateSegments()
        if segmentId in self._segmentIds:
            self.segmentComboBox.setCurrentIndex(self._segmentIds.index(segmentId))

    def populateSegments(self):
        node = self.currentNode()
        current = self.currentSegmentID()
        self.segmentComboBox.blockSignals(True)
        try:
            self.segmentComboBox.clear()
            self._segmentIds = []
            if node is not None:
                segmentation = node.GetSegmentation()
                for index in range(segmentation.GetNumberOfSegments()):
                    self._segmentIds.append(segmentation.GetNthSegmentID(index))
                    self.segmentComboBox.addItem(segmentation.GetNthSegment(index).GetName())
            if current in self._segmentIds:
                self.segmentComboBox.setCurrentIndex(self._segmentIds.index(current))
        finally:
            self.segmentComboBox.blockSignals(False)

    def _onNodeChanged(self, node):
        self.populateSegments()
        self.currentNodeChanged.emit(node)
        self.currentSegmentChanged.emit(self.currentSegmentID())

    def _onSegmentIndexChanged(self, index):
        self.currentSegmentChanged.emit(self.currentSegmentID())


STANDINS = (qMRMLWidget, qMRMLNodeComboBox, qMRMLSegmentSelectorWidget, ctkCollapsibleButton, ctkSliderWidget)


def loadUi(path: str = paths.UI_FILE):
    """Load the ``.ui`` file; return ``(topWidget, ui)`` where ``ui`` has each named child as an
    attribute (like ``slicer.util.childWidgetVariables``)."""
    application()
    loader = QUiLoader()
    for cls in STANDINS:
        loader.registerCustomWidget(cls)
    widget = loader.load(path)
    if widget is None:
        raise RuntimeError(f"QUiLoader could not load {path}: {loader.errorString()}")
    ui = childWidgetVariables(widget)
    _applyStandInProperties(path, ui)
    return widget, ui


def _uiValue(element):
    child = list(element)[0]
    if child.tag in ("double",):
        return float(child.text)
    if child.tag == "number":
        return int(child.text)
    if child.tag == "bool":
        return child.text == "true"
    return child.text or ""


def _applyStandInProperties(path, ui):
    """Decimals first so that a value such as 0.05 is not rounded away; order: decimals, range, step, value."""
    import xml.etree.ElementTree as ElementTree

    order = {"decimals": 0, "minimum": 1, "maximum": 2, "singleStep": 3, "value": 4}
    for element in ElementTree.parse(path).iter("widget"):
        widget = getattr(ui, element.get("name"), None)
        if widget is None or not hasattr(widget, "applyUiProperty"):
            continue
        properties = [(p.get("name"), _uiValue(p)) for p in element.findall("property")]
        for name, value in sorted(properties, key=lambda item: order.get(item[0], 9)):
            widget.applyUiProperty(name, value)


def childWidgetVariables(widget):
    ui = types.SimpleNamespace()
    for child in widget.findChildren(QtCore.QObject):
        name = child.objectName()
        if name and not name.startswith("qt_"):
            setattr(ui, name, child)
    return ui


def processEvents(seconds: float = 0.0) -> None:
    """Run the Qt event loop for ``seconds`` (timers fire)."""
    import time

    app = application()
    deadline = time.monotonic() + seconds
    while True:
        app.processEvents(QtCore.QEventLoop.AllEvents, 50)
        if time.monotonic() >= deadline:
            return
        time.sleep(0.01)

"""A parameter object with the declaration of ``MedDiffFMParameterNode`` and a ``connectGui``
that binds widgets by their ``SlicerParameterName`` property, following the rules of Slicer's
``parameterNodeWrapper`` GUI connectors (exact widget class -> datatype):

  QCheckBox <-> bool              QSpinBox <-> int (WithinRange sets the range)
  QDoubleSpinBox / ctkSliderWidget <-> float     QComboBox <-> Enum (items = Enum.label())
  QLineEdit <-> str               qMRMLNodeComboBox <-> MRML node

A widget/parameter pair that Slicer could not connect raises ``RuntimeError`` here too, so a
wrong name or type in the ``.ui`` file fails the tests as it would fail in Slicer.
"""

import enum
import typing

from PySide6 import QtWidgets

from . import paths  # noqa: F401
from .qt_standins import ctkSliderWidget, qMRMLNodeComboBox

PROPERTY = "SlicerParameterName"


def declaration(cls):
    """``{name: (type, annotations, default)}`` of a parameterNodeWrapper class."""
    hints = typing.get_type_hints(cls, include_extras=True)
    result = {}
    for name, hint in hints.items():
        annotations = ()
        if typing.get_origin(hint) is typing.Annotated:
            base, *annotations = typing.get_args(hint)
        else:
            base = hint
        result[name] = (base, tuple(annotations), getattr(cls, name, None))
    return result


def _range(annotations):
    for annotation in annotations:
        if hasattr(annotation, "minimum") and hasattr(annotation, "maximum"):
            return annotation.minimum, annotation.maximum
    return None


def _isNodeType(datatype):
    return isinstance(datatype, type) and hasattr(datatype, "GetClassName") and hasattr(datatype, "IsA")


class FakeParameterNode:
    def __init__(self, cls):
        object.__setattr__(self, "_declaration", declaration(cls))
        object.__setattr__(self, "_values", {n: d for n, (_t, _a, d) in self._declaration.items()})
        object.__setattr__(self, "_observers", [])
        object.__setattr__(self, "_connectors", {})
        object.__setattr__(self, "_writing", False)

    # attribute access like the wrapper
    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name not in self._values:
            raise AttributeError(f"no parameter '{name}'")
        datatype = self._declaration[name][0]
        if isinstance(datatype, type) and issubclass(datatype, enum.Enum) and value is not None:
            value = datatype(value)
        if self._values[name] is value or (self._values[name] == value and not _isNodeType(datatype)):
            return
        self._values[name] = value
        connector = self._connectors.get(name)
        if connector is not None:
            object.__setattr__(self, "_writing", True)
            try:
                connector.write(value)
            finally:
                object.__setattr__(self, "_writing", False)
        for callback in list(self._observers):
            callback()

    def addObserver(self, callback):
        self._observers.append(callback)

    def parameterNames(self):
        return list(self._declaration)

    # GUI binding
    def connectGui(self, ui):
        widgets = [w for w in vars(ui).values() if isinstance(w, QtWidgets.QWidget) and w.property(PROPERTY)]
        for widget in widgets:
            name = widget.property(PROPERTY)
            if name not in self._declaration:
                raise RuntimeError(f"widget '{widget.objectName()}' names unknown parameter '{name}'")
            datatype, annotations, _default = self._declaration[name]
            connector = _createConnector(widget, datatype, annotations)
            self._connectors[name] = connector
            connector.write(self._values[name])
            connector.onChanged(lambda name=name, connector=connector: self._fromWidget(name, connector))
        return list(self._connectors)

    def _fromWidget(self, name, connector):
        if self._writing:
            return
        setattr(self, name, connector.read())

    def widgetFor(self, name):
        return self._connectors[name].widget


class _Connector:
    def __init__(self, widget, read, write, signal):
        self.widget = widget
        self.read = read
        self.write = write
        self.signal = signal

    def onChanged(self, callback):
        self.signal.connect(lambda *args: callback())


def _createConnector(widget, datatype, annotations):
    cls = type(widget)
    bounds = _range(annotations)
    if datatype is bool and cls is QtWidgets.QCheckBox:
        return _Connector(widget, widget.isChecked, widget.setChecked, widget.stateChanged)
    if datatype is int and cls in (QtWidgets.QSpinBox, QtWidgets.QSlider):
        if bounds:
            widget.setRange(int(bounds[0]), int(bounds[1]))
        return _Connector(widget, widget.value, widget.setValue, widget.valueChanged)
    if datatype is float and cls in (QtWidgets.QDoubleSpinBox, ctkSliderWidget):
        if cls is ctkSliderWidget and not bounds:
            raise RuntimeError("Cannot have a connection to ctkSliderWidget where the float type is unbounded.")
        if bounds:
            widget.setMinimum(float(bounds[0]))
            widget.setMaximum(float(bounds[1]))
        return _Connector(widget, widget.value, widget.setValue, widget.valueChanged)
    if isinstance(datatype, type) and issubclass(datatype, enum.Enum) and cls is QtWidgets.QComboBox:
        labelFunc = getattr(datatype, "label", lambda e: e.name)
        members = list(datatype)
        widget.clear()
        for member in members:
            widget.addItem(labelFunc(member))
        return _Connector(widget, lambda: members[widget.currentIndex()],
                          lambda value: widget.setCurrentIndex(members.index(datatype(value))),
                          widget.currentIndexChanged)
    if datatype is str and cls is QtWidgets.QLineEdit:
        return _Connector(widget, widget.text, widget.setText, widget.textChanged)
    if _isNodeType(datatype) and cls is qMRMLNodeComboBox:
        widget.nodeTypes = [datatype.__name__]
        return _Connector(widget, widget.currentNode, widget.setCurrentNode, widget.currentNodeChanged)
    raise RuntimeError(f"Unable to create GUI connector from datatype '{datatype}' to widget type '{cls.__name__}'"
                       f" ({widget.objectName()})")

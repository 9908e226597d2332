"""Minimal stand-ins for the parts of the Slicer *application* that ``MedDiffFM.py`` imports
(``slicer.ScriptedLoadableModule``, ``slicer.i18n``, ``slicer.parameterNodeWrapper``,
``slicer.util.loadUI``/``childWidgetVariables``), so that the thin module file itself can be
imported and exercised on slicer-core + PySide6. They mimic only what the module uses; the real
classes are checked inside Slicer only (see docs/SLICER.md).
"""

import importlib
import os
import sys
import types
import unittest

from . import paths, qt_standins
from .fake_parameter_node import FakeParameterNode


def _scriptedLoadableModule(slicer):
    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent
            self.moduleName = type(self).__name__[: -len("Widget")]

        def resourcePath(self, filename):
            return os.path.join(paths.MODULE_DIR, "Resources", filename)

        def setup(self):
            qt_standins.application()
            self.widget = qt_standins.QtWidgets.QWidget()
            self.layout = qt_standins.QtWidgets.QVBoxLayout(self.widget)

        def onReload(self):
            pass

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.moduleName = type(self).__name__[: -len("Logic")]

        def getParameterNode(self):
            scene = slicer.mrmlScene
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.vtkMRMLScriptedModuleNode()
                node.SetSingletonTag(self.moduleName)
                node.SetModuleName(self.moduleName)
                node.SetName(scene.GenerateUniqueName(self.moduleName))
                scene.AddNode(node)
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=1000):
            pass

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    return module


def _parameterNodeWrapperModule(realDecl):
    module = types.ModuleType("slicer.parameterNodeWrapper")

    def parameterNodeWrapper(cls):
        class Wrapped(cls):
            """Wraps a vtkMRMLScriptedModuleNode; values live in a FakeParameterNode."""

            _wrappers = {}

            def __new__(klass, parameterNode):
                # one wrapper state per MRML node, like values stored in the node
                key = parameterNode.GetID()
                if key not in klass._wrappers:
                    instance = object.__new__(klass)
                    object.__setattr__(instance, "parameterNode", parameterNode)
                    object.__setattr__(instance, "_fake", FakeParameterNode(cls))
                    object.__setattr__(instance, "_observers", {})
                    object.__setattr__(instance, "_fakeObserver", False)
                    klass._wrappers[key] = instance
                return klass._wrappers[key]

            def __init__(self, parameterNode):
                pass

            def __getattribute__(self, name):
                fake = object.__getattribute__(self, "_fake")
                if name in object.__getattribute__(fake, "_declaration"):
                    return getattr(fake, name)
                return object.__getattribute__(self, name)

            def __setattr__(self, name, value):
                setattr(self._fake, name, value)

            def connectGui(self, ui):
                self._fake._connectors.clear()
                self._fake.connectGui(ui)
                return "gui-tag"

            def disconnectGui(self, tag):
                self._fake._connectors.clear()

            def AddObserver(self, event, callback, priority=0.0):
                if not self._fakeObserver:
                    self._fake.addObserver(self._notify)
                    object.__setattr__(self, "_fakeObserver", True)
                tag = len(self._observers) + 1
                self._observers[tag] = callback
                return tag

            def RemoveObserver(self, tag):
                self._observers.pop(tag, None)

            def _notify(self):
                for callback in list(self._observers.values()):
                    callback(self.parameterNode, "ModifiedEvent")

        Wrapped.__name__ = cls.__name__
        Wrapped.__qualname__ = cls.__qualname__
        return Wrapped

    module.parameterNodeWrapper = parameterNodeWrapper
    for name in ("WithinRange", "Minimum", "Maximum"):
        setattr(module, name, getattr(realDecl, name))
    return module


def install(monkeypatch):
    """Install the stubs (undone by ``monkeypatch``) and return the freshly imported MedDiffFM module."""
    import slicer

    from MedDiffFMModuleLib import ParameterNode

    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    slm = _scriptedLoadableModule(slicer)
    pnw = _parameterNodeWrapperModule(ParameterNode)
    for name, module in (("slicer.i18n", i18n), ("slicer.ScriptedLoadableModule", slm),
                         ("slicer.parameterNodeWrapper", pnw)):
        monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(slicer, name.split(".")[1], module, raising=False)
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: qt_standins.loadUi(path)[0], raising=False)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", qt_standins.childWidgetVariables, raising=False)
    importlib.reload(ParameterNode)
    monkeypatch.delitem(sys.modules, "MedDiffFM", raising=False)
    return importlib.import_module("MedDiffFM")


def uninstall():
    """Reload the modules that saw the stubs so later tests get the plain declaration again."""
    from MedDiffFMModuleLib import ParameterNode

    importlib.reload(ParameterNode)
    sys.modules.pop("MedDiffFM", None)

"""Helpers for testing the MedDiffFM Slicer module outside the Slicer application.

- ``paths``: puts the module package (``MedDiffFM/``) and the repository root on ``sys.path``.
- ``scene``: a real MRML scene from the ``slicer-core`` wheel with the module logics registered.
- ``qt_standins``: PySide6 stand-ins for Slicer's custom widgets, a ``qt`` module shim and a
  loader for the module's ``.ui`` file.
- ``fake_parameter_node``: binds ``SlicerParameterName`` widgets to a parameter object the way
  Slicer's ``parameterNodeWrapper`` does.
- ``fake_meddifffm.py``: a model-free stand-in for the ``meddifffm`` command.
"""

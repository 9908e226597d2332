"""Helpers of the MedDiffFM Slicer module (glue between the scene/GUI and the MedDiffFMLib CLI).

Submodules: ``Tasks`` (task table, CLI arguments), ``Progress`` (``--progress json`` parsing),
``Process`` (background process runner), ``Models`` (model list, time estimate), ``Dependencies``
(torch/monai check and consented install), ``SceneIO`` (scene <-> files), ``Logic`` (the module
logic and console API), ``ParameterNode`` (parameterNodeWrapper declaration), ``Panel`` (GUI
behaviour), ``BundledData`` (the sample CT and its Sample Data entry). Nothing is imported here so
that the Qt-free parts load without Slicer.
"""

HOMEPAGE = "https://github.com/meddifffm/SlicerMedDiffFM"
"""The extension's repository, as set by ``EXTENSION_HOMEPAGE`` in the top-level CMakeLists.txt (the
one place to change it; Testing/test_slicer_extension_files.py checks this copy and MedDiffFM.json)."""

"""Helpers of the MedDiffFM Slicer module (glue between the scene/GUI and the MedDiffFMLib CLI).

Submodules: ``Tasks`` (task table, CLI arguments), ``Progress`` (``--progress json`` parsing),
``Process`` (background process runner), ``Models`` (model list, time estimate), ``Dependencies``
(torch/monai check and consented install), ``SceneIO`` (scene <-> files), ``Logic`` (the module
logic and console API), ``ParameterNode`` (parameterNodeWrapper declaration), ``Panel`` (GUI
behaviour). Nothing is imported here so that the Qt-free parts load without Slicer.
"""

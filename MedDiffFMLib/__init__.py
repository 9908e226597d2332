"""MedDiffFMLib: the MedDiff-FM 3D CT diffusion foundation model and its tasks."""

__version__ = "0.1.0"

"""Developer tools that live beside the library: run from the repository root (``python -m tools.NAME``),
never shipped in the pip package or the Slicer extension, and never imported by ``MedDiffFMLib``."""

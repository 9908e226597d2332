"""MedDiffFM benchmarks: image quality against classical baselines and speed against a naive sampler.

Run each script from the repository root, e.g. ``python -m benchmarks.denoise_quality --quick``
(or ``python benchmarks/denoise_quality.py``); the training and sampler studies run as
``python -m benchmarks.studies.<name>``. Shared code is in :mod:`benchmarks.common`; see
``benchmarks/README.md``.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

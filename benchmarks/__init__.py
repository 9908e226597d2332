"""MedDiffFM benchmarks: image quality against classical baselines and speed against a naive sampler.

Run each script from the repository root, e.g. ``python -m benchmarks.denoise_quality --quick``
(or ``python benchmarks/denoise_quality.py``); see ``benchmarks/README.md``.
"""

"""What the benchmarks share, one module per concern:

- :mod:`~benchmarks.common.ct_cases`: the real CT cases and the boxes cut from them;
- :mod:`~benchmarks.common.model_setup`: the model under test (named, the registry's, or random) and its engine;
- :mod:`~benchmarks.common.cli_options`: the command-line options every script shares;
- :mod:`~benchmarks.common.timing`: wall-clock timing and peak memory;
- :mod:`~benchmarks.common.reporting`: the machine description, tables and result files;
- :mod:`~benchmarks.common.metrics`: image-quality scores;
- :mod:`~benchmarks.common.baselines`: the classical denoisers the denoising figures stand beside;
- :mod:`~benchmarks.common.lowdose`: the low-dose CT simulator.
"""

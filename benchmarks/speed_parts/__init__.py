"""The pieces of :mod:`benchmarks.speed`, one concern each:

- :mod:`.paths`: the code paths it times (naive, fast, tuned, legacy), one table entry per path;
- :mod:`.inputs`: the CT volumes and task input files;
- :mod:`.runs`: one end-to-end task call, each in a fresh process;
- :mod:`.network`: section 1, one network evaluation per variant;
- :mod:`.end_to_end`: sections 2 (end to end per task) and 3 (memory against size);
- :mod:`.large_volume`: sections 4 (the 512x512x300 volume) and 6 (every task's peak memory);
- :mod:`.targets`: section 5, the targets and where each path stands.
"""

"""Training MedDiff-FM in short GPU leases ("chunks"): what the device machine's limits ask of a run.

A chunk resumes the library's trainer from the committed compact state, trains one cache shard for a
few minutes, exports the model, writes the new state and packs everything to come back through the
device's limits (at most 8 files of at most 16 MiB; at most 64 MiB travels with the checkout).

- :mod:`.commands`: stage / run / apply / promote / size (``python -m tools.gpu_chunk ...``)
- :mod:`.chunk`: one chunk on the device, its records and the packing of what comes back
- :mod:`.shards`: a prepared cache split into shards that each fit the travelling budget
- :mod:`.quality`: the chunk's quick denoising check against NLM
- :mod:`.train_speed`: the training-throughput probe (``--speed-probe``)
- ``train_chunk.sh``: the device call's entry (``bash tools/gpu_chunk/train_chunk.sh MINUTES``)
- ``budget/``: the travelling budget that ``stage`` recorded for each model

README.md beside this file gives the routine step by step.
"""

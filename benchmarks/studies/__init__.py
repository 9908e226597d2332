"""Training and sampler studies: the measurements behind a default (model design, training recipe,
sampler and steps, ControlNet time steps, the compact resume state, the CPU profile), kept so that a
decision can be re-measured. Run each as ``python -m benchmarks.studies.<name>``; the user-facing task
benchmarks are one folder up."""

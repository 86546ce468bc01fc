"""The engine: tasks and their datasets, recurrent cells, normalization, initialization, mitigation strategies,
the sequence model, gradient probes and the one training loop. It knows nothing of studies or reports: its input
is one :class:`~rnn_gradients.engine.run_spec.RunSpec`, its output one run directory
(:mod:`rnn_gradients.engine.run_files`)."""

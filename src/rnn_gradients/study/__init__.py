"""The study: a validated config (:mod:`~rnn_gradients.study.config`), the grid of runs and the file layout it
implies (:mod:`~rnn_gradients.study.grid`), and the tables collected from the runs (:mod:`~rnn_gradients.study.tables`,
with the derived quantities of :mod:`~rnn_gradients.study.analysis`)."""

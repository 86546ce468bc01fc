"""``python -m rnn_gradients``: the command line of the study (see :mod:`rnn_gradients.cli`)."""

from rnn_gradients.cli import main

raise SystemExit(main())

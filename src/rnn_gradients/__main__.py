"""``python -m rnn_gradients``: the command line of the study (see :mod:`rnn_gradients.cli`)."""

import signal

from rnn_gradients.cli import main

status = main()
# The command is done (its outputs written, or its interruption reported): a Ctrl-C while the interpreter shuts
# down would only turn this status into "killed by SIGINT".
signal.signal(signal.SIGINT, signal.SIG_IGN)
raise SystemExit(status)

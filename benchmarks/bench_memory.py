"""Memory of real jobs against the estimate of the study's size limits (rnn_gradients.study.limits).

Runs ``python -m rnn_gradients generate`` and ``train`` under ``/usr/bin/time -v`` for configs that each stress
one part of the memory model (data, training and probe activations, test-set evaluation) and prints the peak
resident set size next to :func:`~rnn_gradients.study.limits.training_memory`. The estimate must stay above every
measurement (ratio > 1). Each case takes seconds to a minute on one CPU core; the whole set about 8 minutes.

    python benchmarks/bench_memory.py [CASE ...]
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from rnn_gradients.study.config import load_study
from rnn_gradients.study.grid import RunKey, run_spec
from rnn_gradients.study.limits import MB, training_memory

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
# name: task, T, cell, strategy bundle, train size, test size, hidden size, batch, probe batch
CASES = {
    "base": ("adding", 10, "rnn_tanh", {}, 256, 128, 8, 32, 32),
    "data_temporal_order": ("temporal_order", 200, "rnn_tanh", {}, 20000, 1000, 8, 32, 32),
    "data_copy": ("copy", 200, "rnn_tanh", {}, 10000, 1000, 8, 32, 32),
    "data_adding": ("adding", 200, "rnn_tanh", {}, 20000, 1000, 8, 32, 32),
    "activations_lstm_bn": ("adding", 400, "lstm", {"norm": "batch"}, 512, 256, 256, 256, 256),
    "activations_lstm": ("adding", 400, "lstm", {}, 512, 256, 256, 256, 256),
    "activations_gru_ln": ("adding", 400, "gru", {"norm": "layer"}, 512, 256, 256, 256, 256),
    "activations_gru_bn": ("adding", 400, "gru", {"norm": "batch"}, 512, 256, 256, 256, 256),
    "activations_tanh_bn": ("adding", 400, "rnn_tanh", {"norm": "batch"}, 512, 256, 256, 256, 256),
    "eval_lstm": ("adding", 300, "lstm", {}, 256, 4000, 256, 32, 32),
    "eval_gru_bn": ("adding", 300, "gru", {"norm": "batch"}, 256, 4000, 256, 32, 32),
    "eval_tanh_bn": ("adding", 300, "rnn_tanh", {"norm": "batch"}, 256, 4000, 256, 32, 32),
    "eval_lstm_bn": ("adding", 300, "lstm", {"norm": "batch"}, 256, 2000, 256, 32, 32),
    "copy_lstm": ("copy", 300, "lstm", {}, 2000, 1000, 128, 128, 128),
    "default_like": ("temporal_order", 65, "lstm", {"norm": "batch"}, 10000, 1000, 64, 64, 128),
}


def peak_mb(command: list[str]) -> float:
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=True)
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1)) / 1024


def measure(name: str) -> None:
    task, seq_len, cell, bundle, train, test, hidden, batch, probe_batch = CASES[name]
    config = {
        "tasks": {task: [seq_len]},
        "cells": [cell],
        "strategies": {"s": bundle},
        "data": {"train_size": train, "test_size": test},
        "training": {"steps": 3, "batch_size": batch, "hidden_size": hidden, "eval_every": 1000,
                     "probe_every": 1000, "probe_batch": probe_batch, "early_stop": False, "device": "cpu"},
        "limits": {"max_job_memory_mb": 10**6},
    }  # fmt: skip
    study = load_study(config, SCHEMA)
    spec = run_spec(study, RunKey(task, seq_len, cell, "s", 0))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        peak_mb([sys.executable, "-m", "rnn_gradients", "generate", "--task", task, "--seq-len", str(seq_len),
                 "--seed", "0", "--train-size", str(train), "--val-size", str(spec["val_size"]),
                 "--test-size", str(test), "--out", str(data)])  # fmt: skip
        measured = peak_mb([sys.executable, "-m", "rnn_gradients", "train", "--specs", json.dumps(spec),
                            "--data", str(data), "--out-dir", str(Path(tmp) / "run")])  # fmt: skip
    estimate = sum(training_memory(study, task, seq_len).values()) / MB
    print(f"{name:22s} measured {measured:7.0f} MB   estimate {estimate:7.0f} MB   ratio {estimate / measured:.2f}")


if __name__ == "__main__":
    for case in sys.argv[1:] or CASES:
        measure(case)

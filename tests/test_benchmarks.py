"""The benchmarks' own machinery on the real engine (their timings are not asserted: speed lives in their output)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rnn_gradients.engine import extension

ROOT = Path(__file__).resolve().parents[1]
LOOP_CALLS = {
    ("rnn_tanh", "none"): {"vanilla_forward", "vanilla_backward"},
    ("rnn_tanh", "layer"): {"layer_norm_forward", "layer_norm_backward", "layer_norm_gain_terms"},
    ("rnn_tanh", "batch"): {"batch_norm_fused_forward", "batch_norm_fused_backward"},  # one thread: the fused path
    ("gru", "none"): {"gru_forward", "gru_backward"},
    ("gru", "layer"): {"gru_norm_forward", "gru_norm_backward"},
    ("gru", "batch"): {"gru_norm_forward", "gru_norm_backward"},
}


@pytest.mark.skipif(extension.kernels() is None, reason=f"the extension is not in use: {extension.status()}")
def test_bench_engine_parts_times_every_compiled_loop_it_runs() -> None:
    """``--parts`` sees the compiled calls each path makes, and what it times inside them is less than the step."""
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_engine.py", "--parts", "--cells", "rnn_tanh", "gru", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = {}
    for line in result.stdout.splitlines():
        fields = line.split(maxsplit=7)
        if len(fields) == 8 and (fields[0], fields[1]) in LOOP_CALLS:
            rows[fields[0], fields[1]] = fields
    assert set(rows) == set(LOOP_CALLS), result.stdout
    for key, (_, _, path, step, loops, update, rest, calls) in rows.items():
        assert path == "bptt", key
        names = {call.rsplit(" ", 1)[0] for call in calls.split(", ")}
        assert names == LOOP_CALLS[key], (key, calls)
        assert float(loops) > 0 and float(update) > 0, key
        assert float(rest) > 0 and float(step) > float(loops) + float(update), key


def test_bench_engine_memory_times_every_large_gemm_cached_and_cold() -> None:
    """``--memory`` prints the four GEMMs of each gate count (1, 3, 4) with a cached and a cold time each, and their
    ratio as printed is the ratio of the two (to the rounding of the printed microseconds)."""
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_engine.py", "--memory", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [line.rsplit(maxsplit=3) for line in result.stdout.splitlines() if line.endswith(tuple("0123456789"))]
    names = {"input", "∂L/∂W_ih", "∂L/∂W_hh", "recurrent"}
    rows = [row for row in rows if len(row) == 4 and row[0].split()[0] in names]
    assert len(rows) == 12, result.stdout
    for features in (64, 192, 256):
        assert sum(f"×{features}" in row[0] for row in rows) >= 3, (features, result.stdout)
    for name, cached, cold, ratio in rows:
        assert float(cached) > 0 and float(cold) > 0, name
        assert float(ratio) == pytest.approx(float(cold) / float(cached), rel=0.1), name

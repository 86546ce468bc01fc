"""Probe overhead: what the gradient probes add to a run, measured in one process.

For each cell at (B=64, H=64, T=60, adding), prints the median time of one training step, of one probe (an
unrolled forward and ``autograd.grad`` through every h_t on the probe batch, plus ρ and σ_max of W_hh), and the
overhead of the default schedule (a probe every ``probe_every`` steps, plus one at the start and the end) relative
to the training steps of a ``steps``-long run. Goal: ≤ 10 %.

    python benchmarks/bench_probes.py [--steps 2500] [--probe-every 500]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnn_gradients.engine.cells import CELLS
from rnn_gradients.engine.datasets import make_dataset
from rnn_gradients.engine.probes import probe
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.engine.training import GradientMeter, build_model, optimization_step


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--probe-every", type=int, default=500)
    parser.add_argument("--seq-len", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)

    task = get_task("adding")
    data = make_dataset("adding", args.seq_len, seed=0, train_size=256, test_size=128)
    x, y = task.to_tensors(data.train)
    x_probe, y_probe = task.to_tensors(data.test)
    strategy = Strategy.from_dict("none", {})
    n_probes = args.steps // args.probe_every + 2
    print(f"torch {torch.__version__}, 1 thread, adding T={args.seq_len}, B=64, H=64, probe batch 128")
    print(f"schedule: {args.steps} steps, a probe every {args.probe_every} steps -> {n_probes} probes")
    print(f"{'cell':12s} {'step ms':>8s} {'probe ms':>9s} {'overhead':>9s}")
    for cell in CELLS:
        spec = RunSpec(task="adding", seq_len=args.seq_len, cell=cell, strategy="none", strategy_params={}, seed=0)
        model = build_model(spec, task, strategy)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        meter = GradientMeter(model)
        step_ms = median_ms(
            lambda: optimization_step(0, model, optimizer, meter, strategy, task, x[:64], y[:64]),  # noqa: B023
            args.repeats,
        )
        probe_ms = median_ms(lambda: probe(model, task, x_probe, y_probe, 0), args.repeats)  # noqa: B023
        overhead = n_probes * probe_ms / (args.steps * step_ms)
        print(f"{cell:12s} {step_ms:8.2f} {probe_ms:9.2f} {overhead:9.1%}")


if __name__ == "__main__":
    main()

"""Size and cost of a study: its run count and core-hours, from a cost model measured on this machine.

    python benchmarks/estimate_study_cost.py config/extended.yaml [--lengths 40 160] [--repeats 5]

The config is read with the project's own loader (defaults filled in, checked against the schema), and its grid
with the project's own expansion, so the run count is the one Snakemake will plan. The cost model is measured
here, in this process, with one torch thread (as the train rule runs):

- for every (task, cell, normalization) of the grid, at the config's hidden size, batch size and probe batch and
  at two lengths: the median time of a training step, of an evaluation of 1,000 sequences and of a gradient probe;
  each is fitted as ``a + b·L`` (L = the task's input length), i.e. a fixed part plus ms per time step;
- a per-job fixed cost: the wall time of ``python -m rnn_gradients train`` for a one-step run (interpreter and
  torch start-up, loading the data, writing the run directory), plus ``--job-overhead-s`` for Snakemake's job
  step on a cluster (measured by benchmarks/bench_cluster_jobs.py); the config's ``jobs.training`` says what one
  job trains (rnn_gradients.study.grid.training_jobs: one task, T and cell, or one combination);
- a per-dataset cost: generating and writing one dataset at the config's sizes, fitted the same way.

A run then costs ``steps·step(L) + evals·val(L) + probes·probe(L) + test(L) + train(L)`` (the validation set at every
evaluation, plus a batch-norm population pass for normalized models; the test set and the training sample once),
and a training job its runs plus the fixed cost. The estimate assumes that every run uses its whole step
budget: early stopping ends solved runs sooner and a diverged run stops at once, so the figure is an upper bound.
Timings on a shared machine vary (read them ±30 %); a cluster core may be faster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml

# The project's modules: the only imports that follow the package's layout.
from rnn_gradients.engine.datasets import make_dataset, save_dataset
from rnn_gradients.engine.probes import probe
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.engine.training import GradientMeter, build_model, evaluate, make_optimizer, optimization_step
from rnn_gradients.study.config import load_study
from rnn_gradients.study.grid import expand_runs, run_spec, strategies, training_jobs

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
# Snakemake's job step inside a grouped cluster job (an srun and a Snakemake start per run), measured on the
# one-node test cluster by benchmarks/bench_cluster_jobs.py.
JOB_OVERHEAD_S = 4.5
PARTS = ("step", "eval", "probe")


def median_s(fn, repeats: int) -> float:
    fn()  # warm-up: the first call allocates
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fit_line(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float]:
    """(intercept, slope) of the line through two timings; never negative.

    Timing noise can tilt the line below zero at short lengths: then the line through the origin and the
    costlier point (per time step) is taken instead, which over-estimates rather than under-estimates.
    """
    slope = (y2 - y1) / (x2 - x1)
    intercept = y1 - slope * x1
    if slope < 0 or intercept < 0:
        return 0.0, max(y1 / x1, y2 / x2)
    return intercept, slope


def cost_classes(study: dict) -> dict[tuple[str, str, str], Strategy]:
    """One timing per (task, cell, normalization): the only strategy settings that change the cost of a step.

    Clipping adds one more norm computation: the class is timed with clipping if any of its strategies clips.
    """
    classes: dict[tuple[str, str, str], Strategy] = {}
    for task in study["tasks"]:
        for cell in study["cells"]:
            for strategy in strategies(study).values():
                key = (task, cell, strategy.norm)
                clips = strategy.clipped
                if key not in classes or (clips and classes[key].clip_norm is None):
                    classes[key] = Strategy(name="timing", norm=strategy.norm, clip_norm=1.0 if clips else None)
    return classes


def time_class(study: dict, task_name: str, cell: str, strategy: Strategy, seq_len: int, repeats: int) -> dict:
    """Seconds per training step, per evaluation of 1,000 sequences and per probe, at one length."""
    training = study["training"]
    task = get_task(task_name)
    batch = training["batch_size"]
    n = 256
    data = make_dataset(task_name, seq_len, seed=0, train_size=batch, val_size=n, test_size=1)
    x, y = task.to_tensors(data.train)
    x_val, y_val = task.to_tensors(data.val)
    probe_n = min(training["probe_batch"], n)
    spec = RunSpec(
        task=task_name,
        seq_len=seq_len,
        cell=cell,
        strategy=strategy.name,
        strategy_params=strategy.params(),
        seed=0,
        hidden_size=training["hidden_size"],
        batch_size=batch,
        learning_rate=0.001,
        device="cpu",
    )
    model = build_model(spec, task, strategy)
    optimizer = make_optimizer(spec, list(model.parameters()))
    meter = GradientMeter(model)
    step = median_s(lambda: optimization_step(0, model, optimizer, meter, strategy, task, x, y), repeats)
    # an evaluation is one forward pass over its sequences (for batch norm, two: population statistics first)
    evaluation = (1000 / n) * median_s(lambda: evaluate(model, task, x_val, y_val, population=x_val), repeats // 2 or 1)
    probing = median_s(lambda: probe(model, task, x_val[:probe_n], y_val[:probe_n], 0), max(repeats // 2, 1))
    return {"step": step, "eval": evaluation, "probe": probing}


def time_dataset(study: dict, task_name: str, seq_len: int, directory: Path) -> float:
    """Seconds to generate and write one dataset at the config's sizes."""
    start = time.perf_counter()
    sizes = study["data"]
    data = make_dataset(task_name, seq_len, 0, sizes["train_size"], sizes["val_size"], sizes["test_size"])
    save_dataset(data, directory / f"{task_name}_{seq_len}.npz")
    return time.perf_counter() - start


def time_process(directory: Path) -> float:
    """Wall seconds of ``python -m rnn_gradients train`` for a one-step run: the fixed cost of a run's process."""
    data = make_dataset("adding", 10, seed=0, train_size=64, val_size=64, test_size=64)
    save_dataset(data, directory / "fixed.npz")
    spec = RunSpec(
        task="adding", seq_len=10, cell="lstm", strategy="none", strategy_params={}, seed=0, train_size=64,
        val_size=64, test_size=64, steps=1,
    )  # fmt: skip
    command = [sys.executable, "-m", "rnn_gradients", "train", "--specs", json.dumps(spec.to_dict())]
    command += ["--data", str(directory / "fixed.npz"), "--out-dir", str(directory / "run"), "--threads", "1"]
    times = []
    for i in range(3):
        command[-3] = str(directory / f"run{i}")
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a study config, e.g. config/extended.yaml")
    parser.add_argument("--lengths", type=int, nargs=2, default=(40, 160), help="the two T to time (default 40 160)")
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps per class and length")
    parser.add_argument(
        "--job-overhead-s",
        type=float,
        default=JOB_OVERHEAD_S,
        help=f"Snakemake's per-run job step on a cluster, added to every run (default {JOB_OVERHEAD_S})",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as training does

    study = load_study(yaml.safe_load(args.config.read_text()), SCHEMA)
    runs = expand_runs(study)
    datasets = sorted({(key.task, key.seq_len, key.seed) for key in runs})
    training = study["training"]
    print(f"study: {args.config}")
    lengths = ", ".join(f"{task} {lens}" for task, lens in study["tasks"].items())
    print(
        f"runs: {len(runs)} = (T: {lengths}) × {len(study['cells'])} cells × {len(study['strategies'])} strategies"
        f" × {len(study['seeds'])} seeds; datasets: {len(datasets)}"
    )
    print(
        f"per run: up to {training['steps']} steps, batch {training['batch_size']}, hidden {training['hidden_size']},"
        f" a validation every {training['eval_every']} steps on {study['data']['val_size']} sequences,"
        f" a probe every {training['probe_every']}"
    )

    t1, t2 = args.lengths
    print(f"\ncost model, measured here (torch {torch.__version__}, 1 thread) at T = {t1} and {t2}:")
    header = "".join(f" {part + ' ms':>9s} {'+ms/t':>7s}" for part in PARTS)
    print(f"{'task':15s} {'cell':12s} {'norm':6s}{header}")
    models = {}
    for (task, cell, norm), strategy in cost_classes(study).items():
        length = get_task(task).input_length
        low = time_class(study, task, cell, strategy, t1, args.repeats)
        high = time_class(study, task, cell, strategy, t2, args.repeats)
        model = {part: fit_line(length(t1), low[part], length(t2), high[part]) for part in PARTS}
        models[task, cell, norm] = model
        row = "".join(f" {1000 * model[part][0]:9.2f} {1000 * model[part][1]:7.3f}" for part in PARTS)
        print(f"{task:15s} {cell:12s} {norm:6s}{row}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        fixed = time_process(Path(tmp))
        data_cost = {}
        for task in study["tasks"]:
            length = get_task(task).input_length
            d1, d2 = time_dataset(study, task, t1, Path(tmp)), time_dataset(study, task, t2, Path(tmp))
            data_cost[task] = fit_line(length(t1), d1, length(t2), d2)
    print(
        f"per-job fixed cost ({len(training_jobs(study))} training jobs, one per {study['jobs']['training']}):"
        f" {fixed:.1f} s (python -m rnn_gradients train, one step, measured)"
        f" + {args.job_overhead_s:.1f} s (Snakemake job step, --job-overhead-s)"
    )

    steps = training["steps"]
    n_evals = steps // training["eval_every"] + 2
    n_probes = steps // training["probe_every"] + 2
    val_share = study["data"]["val_size"] / 1000  # the cost model's evaluation is of 1,000 sequences
    final_share = 2 * study["data"]["test_size"] / 1000  # the test set and as many training sequences, once
    slowest = (0.0, "")
    seconds: dict[tuple[str, int], float] = defaultdict(float)
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for key in runs:
        spec = run_spec(study, key)
        norm = Strategy.from_dict(key.strategy, spec["strategy_params"]).norm
        m = models[key.task, key.cell, norm]
        length = get_task(key.task).input_length(key.seq_len)
        per = {part: m[part][0] + m[part][1] * length for part in m}
        evaluations = (n_evals * val_share + final_share) * per["eval"]
        run_seconds = steps * per["step"] + evaluations + n_probes * per["probe"]
        seconds[key.task, key.seq_len] += run_seconds
        slowest = max(slowest, (run_seconds, f"{key.task} T={key.seq_len} {key.cell} {key.strategy}"))
        counts[key.task, key.seq_len] += 1
    for job in training_jobs(study):  # one process and one job step per training job
        task, seq_len = job.combinations[0][:2]  # a job's combinations share their task and T
        seconds[task, seq_len] += fixed + args.job_overhead_s
    data_seconds = 0.0
    for task, seq_len, _ in datasets:
        a, b = data_cost[task]
        data_seconds += fixed + a + b * get_task(task).input_length(seq_len)

    print(f"\nestimate: every run trains its whole budget of {steps} steps (an upper bound)")
    print(f"{'task':15s} {'T':>5s} {'runs':>6s} {'core-h':>8s} {'min/run':>8s}")
    for (task, seq_len), total in seconds.items():
        n = counts[task, seq_len]
        print(f"{task:15s} {seq_len:5d} {n:6d} {total / 3600:8.2f} {total / n / 60:8.2f}")
    total_h = (sum(seconds.values()) + data_seconds) / 3600
    print(f"slowest run: {slowest[1]}, {slowest[0] / 60:.1f} min")
    print(f"datasets: {len(datasets)}, {data_seconds / 3600:.2f} core-h")
    print(f"total: {len(runs)} runs, {total_h:.1f} core-hours (one core per run)")
    print(f"on a 2-core machine: {total_h / 2:.1f} h of wall time; on 100 cores: {total_h / 100 * 60:.0f} min")


if __name__ == "__main__":
    main()

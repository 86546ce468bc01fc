"""Size limits of a study, checked before any job runs: run count, data on disk, memory of one job.

A config can be valid key by key and still describe a study no machine finishes: ``T: [1000000]`` writes a
dataset of gigabytes and a training job that outgrows the memory, ``seeds`` with 10,000 entries keeps Snakemake
planning jobs for many minutes. :func:`limit_problems` estimates, from the config alone and in microseconds,

- the number of runs (checked first, by arithmetic, before anything is expanded);
- the size of each dataset file and of everything the study writes under ``results/`` (datasets, run
  directories, tables);
- the peak memory of a training job at each task and T, and of the ``collect`` job;
- the length of the largest training job's command line, which holds its runs' specs (milliseconds: it writes
  them);

and refuses a study beyond its ``limits`` (``config/README.md``, the schema's ``limits`` section), naming the
limit, the estimate and what drives it. The defaults let through every study this project plans (the default
study: 160 runs, jobs of about 0.5 GB; a cluster study of about 5,000 runs at T up to 1,000: jobs below 3 GB)
and stop a typo (an extra zero or three) before it costs hours or a full disk. A user who means it raises the
limit in the config.

Memory model of a training job (:func:`training_memory`), in bytes, calibrated against the peak resident set size
(``/usr/bin/time -v``, "Maximum resident set size") of real ``python -m rnn_gradients generate`` and ``train``
runs on CPU (torch 2.13, 3 steps, a probe at the start and the end): ``python benchmarks/bench_memory.py`` repeats
the measurements and prints them next to the estimate, which was 1.11-1.83 times the measured peak in every case.

    base + data + parameters + max(training and probe activations, test-set evaluation)

- base: the interpreter with torch imported, 314 MB measured (tiny run); :data:`BASE_MB` rounds it up.
- data: the stored arrays plus the one-hot float32 inputs and their int64 intermediate, ``stored + 8 · input
  size`` bytes per sequence step. Measured (21,000 sequences of T = 200, H = 8): 46 B/step for temporal order
  (estimate 49), 70 for copy (82), 15 for adding (20).
- activations: the autograd graph of the unrolled or fused recurrence over a batch (or the probe batch, always
  unrolled), :data:`ACTIVATION_FLOATS_PER_GATE` · G floats per sequence, step and hidden unit (G gates: 1 vanilla,
  3 GRU, 4 LSTM). Measured at B = 256, T = 400, H = 256: 6.7 floats for rnn_tanh with batch norm (estimate 10),
  26 for the LSTM with batch norm (40), 22 for the fused LSTM (40), 26 for the GRU with layer norm (30), 25 with
  batch norm (30).
- evaluation: the whole test set in one forward pass without a graph (:func:`eval_floats` per sequence, step and
  hidden unit). Measured (2,000-4,000 test sequences, T = 300, H = 256): 2.0 for the fused LSTM (estimate 4), 3.2
  for rnn_tanh with batch norm (4), 7.2 for the GRU with batch norm (8), 7.9 for the LSTM with batch norm (10).
- parameters: weights, gradients and two optimizer moments, plus batch-norm statistics per time step.

The ``collect`` job holds the step and probe rows of every run as 8-byte cells, about :data:`COLLECT_COPIES`
times over while it reads, concatenates, sorts and writes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from rnn_gradients.engine.cells import FUSED_CELLS, make_cell
from rnn_gradients.engine.run_files import PROBE_COLUMNS, EvalRecord, StepRecord
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.study.config_files import where

if TYPE_CHECKING:
    from rnn_gradients.study.grid import TrainingJob

MB = 2**20
BASE_MB = 400
"""Interpreter, torch, numpy and pandas imported: 314 MB measured for a tiny training run, rounded up."""
ACTIVATION_FLOATS_PER_GATE = 13
"""Floats per batch sequence, time step, hidden unit and gate that one training step or probe keeps: 10-11 at
the peak measured by ``benchmarks/bench_memory.py`` (the tanh RNN and the GRU under batch or layer norm at
T = 400, H = 256, B = 256, whose hand-written BPTT keeps the states, the normalization's inputs and the bulk
backward factors of every step; the peak resident set of one case varied by 10 % from run to run), with a
margin."""


def eval_floats(cell: str, norm: str) -> int:
    """Floats per test sequence, time step and hidden unit of the no-graph evaluation pass: G for a fused torch
    kernel, 2·G + 2 for the unrolled loop (input projections, their normalized copy, the states and their stack)."""
    gates = _gates(cell)
    return gates if norm == "none" and cell in FUSED_CELLS else 2 * gates + 2


CSV_BYTES_PER_VALUE = 20
"""A float written in full precision (``repr``) and its comma."""
COLLECT_COPIES = 4
"""How many 8-byte copies of every table cell ``collect`` holds at its peak. Measured 3.1: 568 MB against 345 MB
peak resident set size for 200 against 50 synthetic (valid) run directories of 2,500 steps at T = 200, i.e.
1.5 MB per run of 60,717 cells."""
RUN_KEY_COLUMNS = 5


def _gates(cell: str) -> int:
    return make_cell(cell, 1, 1).gates


@cache
def _stored_bytes(task: str, seq_len: int) -> int:
    """Bytes of one stored sequence (the compact arrays of a dataset file, before compression)."""
    arrays = get_task(task).generate(seq_len, 1, np.random.default_rng(0))
    return sum(array.nbytes for array in arrays.values())


def stored_bytes_per_sequence(task: str, seq_len: int) -> int:
    """Bytes one sequence of delay ``seq_len`` takes in a dataset file (uncompressed: an upper bound).

    Linear in T for every task, so it is measured at the task's two shortest lengths and extrapolated: the
    estimate costs nothing even for an absurd T.
    """
    low = get_task(task).min_seq_len
    first, second = _stored_bytes(task, low), _stored_bytes(task, low + 1)
    return first + (second - first) * (seq_len - low)


def dataset_bytes(task: str, seq_len: int, data: Mapping[str, Any]) -> int:
    return (data["train_size"] + data["test_size"]) * stored_bytes_per_sequence(task, seq_len)


def training_memory(study: Mapping[str, Any], task: str, seq_len: int) -> dict[str, float]:
    """Estimated peak memory of the study's most demanding training job at (task, T), in bytes, by part."""
    task_obj = get_task(task)
    length = task_obj.input_length(seq_len)
    data, training = study["data"], study["training"]
    hidden = training["hidden_size"]
    gates = max(_gates(cell) for cell in study["cells"])
    norms = {bundle.get("norm") or "none" for bundle in study["strategies"].values()}
    evaluation = max(eval_floats(cell, norm) for cell in study["cells"] for norm in norms)
    sequences = data["train_size"] + data["test_size"]
    batch = max(min(training["batch_size"], data["train_size"]), min(training["probe_batch"], data["test_size"]))
    weights = gates * hidden * (hidden + task_obj.input_size + 2) + (hidden + 1) * task_obj.output_size
    # running mean and variance per time step, on the input and the hidden path
    batch_norm_stats = 4 * gates * hidden * length if "batch" in norms else 0
    return {
        "base": BASE_MB * MB,
        "data": sequences * (stored_bytes_per_sequence(task, seq_len) + 8 * length * task_obj.input_size),
        "parameters": 4 * (4 * weights + batch_norm_stats),
        "activations": 4
        * max(
            batch * length * hidden * gates * ACTIVATION_FLOATS_PER_GATE,
            data["test_size"] * length * hidden * evaluation,
        ),
    }


def _run_rows(study: Mapping[str, Any], task: str, seq_len: int) -> tuple[int, int, int]:
    """At most how many rows one run writes to steps.csv, evals.csv and probes.csv."""
    training = study["training"]
    steps = training["steps"]
    length = get_task(task).input_length(seq_len)
    evals = steps // training["eval_every"] + 2
    probes = steps // training["probe_every"] + 2
    return steps + 1, evals, probes * length


def _run_size(study: Mapping[str, Any], task: str, seq_len: int) -> tuple[float, int]:
    """(bytes of one run's CSV files, cells ``collect`` holds for it) at (task, T), at most."""
    steps, evals, probes = _run_rows(study, task, seq_len)
    step_cells = steps * len(StepRecord.COLUMNS)
    probe_cells = probes * (len(PROBE_COLUMNS) + 1)
    files = CSV_BYTES_PER_VALUE * (step_cells + evals * len(EvalRecord.COLUMNS) + probe_cells)
    return files, step_cells + probe_cells + (steps + probes) * RUN_KEY_COLUMNS


def _lengths(study: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    return [(task, i, seq_len) for task, values in study["tasks"].items() for i, seq_len in enumerate(values)]


def collect_memory(study: Mapping[str, Any]) -> float:
    """Estimated peak memory of the ``collect`` job, in bytes."""
    runs_per_length = len(study["strategies"]) * len(study["cells"]) * len(study["seeds"])
    cells = sum(runs_per_length * _run_size(study, task, seq_len)[1] for task, _, seq_len in _lengths(study))
    return BASE_MB * MB + COLLECT_COPIES * 8 * cells


def training_memory_mb(study: Mapping[str, Any], task: str, seq_len: int) -> int:
    """Estimated peak memory of a training job at (task, T) in MB, e.g. for a rule's ``mem_mb`` resource."""
    return math.ceil(sum(training_memory(study, task, seq_len).values()) / MB)


def collect_memory_mb(study: Mapping[str, Any]) -> int:
    """Estimated peak memory of the ``collect`` job in MB, e.g. for its rule's ``mem_mb`` resource."""
    return math.ceil(collect_memory(study) / MB)


def _fmt_mb(size: float) -> str:
    return f"{size / MB:,.0f} MB"


MAX_COMMAND_BYTES = 120_000
"""The longest training command a job may have. A shell command reaches the shell as one argument, which Linux
caps at 128 KiB (MAX_ARG_STRLEN); a training job's command holds every run's spec (about 560 bytes), dataset and
directory."""


def training_command_bytes(study: Mapping[str, Any], job: TrainingJob) -> int:
    """The length of a training job's command (workflow/rules/train.smk): its runs' specs, datasets and
    directories, and a generous 1,000 bytes for the rest."""
    from rnn_gradients.study.grid import DATA_FILE, job_runs, run_dir, specs_json

    keys = job_runs(study, job)
    paths = sum(len(DATA_FILE.format(**key._asdict())) + len(run_dir(key)) + 6 for key in keys)  # quoted, spaced
    return len(specs_json(study, keys)) + paths + 1000


def command_problem(study: Mapping[str, Any]) -> tuple[tuple[Any, ...], str] | None:
    """The largest training job's command past :data:`MAX_COMMAND_BYTES`, as a (key path, readable line) pair."""
    from rnn_gradients.study.grid import job_runs, training_jobs

    largest = max(training_jobs(study), key=lambda job: len(job_runs(study, job)))
    size = training_command_bytes(study, largest)
    if size <= MAX_COMMAND_BYTES:
        return None
    per_cell = study["jobs"]["training"] == "cell"
    path = ("jobs", "training") if per_cell else ("seeds",)
    advice = (
        "set jobs.training: combination (one job per combination; allowed: cell, combination), or list fewer seeds"
        if per_cell
        else "list fewer seeds"
    )
    runs = len(job_runs(study, largest))
    return (
        path,
        f"{where(path)}: the training job {largest.name} would pass its {runs:,} runs to one command of about "
        f"{size / 1024:,.0f} KiB, more than the {MAX_COMMAND_BYTES / 1024:,.0f} KiB a command may have (Linux "
        f"takes at most 128 KiB): {advice}",
    )


def limit_problems(study: Mapping[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Every way the (schema-valid) study exceeds its ``limits``, as (key path, readable line) pairs."""
    limits = study["limits"]
    lengths = _lengths(study)
    grid = {
        "task lengths": len(lengths),
        "cells": len(study["cells"]),
        "strategies": len(study["strategies"]),
        "seeds": len(study["seeds"]),
    }
    runs = math.prod(grid.values())
    if runs > limits["max_runs"]:
        factors = " × ".join(f"{count:,} {name}" for name, count in grid.items())
        biggest = max(grid, key=lambda name: grid[name])
        return [
            (
                ("tasks" if biggest == "task lengths" else biggest,),
                f"the study has {runs:,} runs ({factors}), more than limits.max_runs = {limits['max_runs']:,}: "
                "Snakemake plans every job before the first one starts, which takes minutes and gigabytes at this "
                f"scale. Shrink the grid (most of it comes from the {biggest}), or raise limits.max_runs if you "
                "mean it",
            )
        ]

    problems: list[tuple[tuple[Any, ...], str]] = []
    if command := command_problem(study):
        problems.append(command)
    per_run = len(study["strategies"]) * len(study["cells"])
    data_total = run_files_total = 0.0
    hidden = study["training"]["hidden_size"]
    for task, index, seq_len in lengths:
        here = ("tasks", task, index)
        size = dataset_bytes(task, seq_len, study["data"])
        data_total += size * most_seeds(study)
        if size > limits["max_dataset_mb"] * MB:
            problems.append(
                (
                    here,
                    f"{where(here)}: T = {seq_len:,} makes each {task} dataset about {_fmt_mb(size)} "
                    f"({study['data']['train_size'] + study['data']['test_size']:,} sequences), more than "
                    f"limits.max_dataset_mb = {limits['max_dataset_mb']:,}: shorten T or data.train_size, or raise "
                    "limits.max_dataset_mb if you mean it",
                )
            )
        memory = training_memory(study, task, seq_len)
        if memory["parameters"] > limits["max_job_memory_mb"] * MB:
            problems.append(
                (
                    ("training", "hidden_size"),
                    f"training.hidden_size: {hidden:,} hidden units need about {_fmt_mb(memory['parameters'])} for "
                    f"the weights, their gradients and optimizer state alone, more than limits.max_job_memory_mb = "
                    f"{limits['max_job_memory_mb']:,}: choose a smaller hidden_size (the default is 64)",
                )
            )
            break
        total = sum(memory.values())
        if total > limits["max_job_memory_mb"] * MB:
            parts = ", ".join(f"{name} {_fmt_mb(value)}" for name, value in memory.items())
            problems.append(
                (
                    here,
                    f"{where(here)}: a training job at {task} T = {seq_len:,} needs about {_fmt_mb(total)} of "
                    f"memory ({parts}), more than limits.max_job_memory_mb = {limits['max_job_memory_mb']:,}: "
                    "shorten T, or lower data.train_size / data.test_size / training.batch_size / "
                    "training.probe_batch / training.hidden_size, or raise limits.max_job_memory_mb if the "
                    "machine has the memory",
                )
            )
        run_files_total += per_run * most_seeds(study) * _run_size(study, task, seq_len)[0]

    # run directories once, the tables (the same rows with their run keys) once more
    disk = data_total + 2 * run_files_total
    if disk > limits["max_disk_mb"] * MB:
        problems.append(
            (
                (),
                f"the study would write about {_fmt_mb(disk)} under results/ (datasets {_fmt_mb(data_total)}, run "
                f"directories and tables {_fmt_mb(2 * run_files_total)}), more than limits.max_disk_mb = "
                f"{limits['max_disk_mb']:,}: fewer runs, shorter T or fewer training.steps, or raise "
                "limits.max_disk_mb if the disk has the room",
            )
        )
    collect = collect_memory(study)
    if collect > limits["max_job_memory_mb"] * MB:
        problems.append(
            (
                (),
                f"collecting the study's {runs:,} runs into its tables needs about {_fmt_mb(collect)} of memory "
                f"(every training step and probe row of every run), more than limits.max_job_memory_mb = "
                f"{limits['max_job_memory_mb']:,}: fewer runs, shorter T or fewer training.steps, or raise "
                "limits.max_job_memory_mb (and the collect rule's mem_mb) if the machine has the memory",
            )
        )
    return problems


def most_seeds(study: Mapping[str, Any]) -> int:
    """The most seeds a combination may train: its listed seeds, or ``verdicts.max_seeds`` if that is more (the
    disk estimate counts every seed an uncertain combination may add)."""
    return max(len(study["seeds"]), study["verdicts"]["max_seeds"])

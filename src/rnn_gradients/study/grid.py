"""The grid of a study: its runs, where each run's files live, and the resolved spec of every run.

One run is one point :class:`RunKey` of ``tasks × T × cells × strategies × seeds``. Every path of the study's
file layout is defined here once, as a pattern with the run keys as fields; the package, the Snakemake rules
and the tests format these patterns, nothing else spells them out.

:func:`run_spec` gives the resolved :class:`~rnn_gradients.engine.training.RunSpec` fields of one run: a
deterministic, JSON-serialisable function of the config that holds only what that run depends on, so that
Snakemake reruns exactly the runs whose spec changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any, NamedTuple

from rnn_gradients.engine.cells import GRUCell, LSTMCell, VanillaCell
from rnn_gradients.engine.run_spec import engine_fingerprint
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.study.config import strategy_bundle, strategy_cells, strategy_lengths
from rnn_gradients.study.limits import most_seeds


class RunKey(NamedTuple):
    """One point of the grid: it names a run and its directory."""

    task: str
    seq_len: int
    cell: str
    strategy: str
    seed: int


class Combination(NamedTuple):
    """A run without its seed: the seeds of one combination train one after another in one process."""

    task: str
    seq_len: int
    cell: str
    strategy: str


RUN_KEYS: tuple[str, ...] = RunKey._fields
"""The columns that name a run, leading every per-run table."""
GRID_KEYS: tuple[str, ...] = Combination._fields
"""The columns that name a combination of the grid (a run without its seed)."""

DATA_FILE = "results/data/{task}/T{seq_len}/seed{seed}.npz"
"""One dataset per task, T and seed, shared by every cell and strategy of that grid point."""
CELL_DIR = "results/runs/{task}/T{seq_len}/{cell}"
"""The runs of one cell at one task and T; a training job of all their strategies is named after it."""
COMBINATION_DIR = CELL_DIR + "/{strategy}"
"""The directory of a combination's runs; a training job of that combination alone is named after it."""
RUN_DIR = COMBINATION_DIR + "/seed{seed}"
"""One directory per run (its files: :data:`rnn_gradients.engine.run_files.RUN_FILES`)."""
TABLES_DIR = "results/tables"
REPORT_FILE = "results/report/report.html"


def expand_runs(study: Mapping[str, Any]) -> list[RunKey]:
    """Every run of the study, in config order: tasks, their T, cells, strategies, seeds (innermost).

    The grid is partial where a strategy names the ``cells`` it trains (:func:`strategy_cells`) or trains only each
    task's longest T (``lengths: longest``, :func:`strategy_lengths`): the other cells or lengths do
    not run it. Each task has its own ladder of lengths.
    """
    scopes = {name: set(strategy_cells(study, name)) for name in study["strategies"]}
    return [
        RunKey(task, seq_len, cell, strategy, seed)
        for task, lengths in study["tasks"].items()
        for seq_len, cell, strategy, seed in product(lengths, study["cells"], study["strategies"], study["seeds"])
        if cell in scopes[strategy] and seq_len in strategy_lengths(study, strategy, task)
    ]


def expand_combinations(study: Mapping[str, Any]) -> list[Combination]:
    """Every combination of the study, in config order (the runs of :func:`expand_runs` without their seeds)."""
    return list(dict.fromkeys(Combination(*key[:-1]) for key in expand_runs(study)))


class TrainingJob(NamedTuple):
    """The combinations one training process trains, one after another (one Snakemake job).

    ``jobs.training: cell`` (the default) gives one job per task, T and cell, with all the cell's strategies: a
    process pays about 1-2 s of start and imports (mostly torch's), so fewer of them make a study faster on a few
    cores. ``combination`` gives one job per combination: more, shorter jobs, for a cluster's many cores. A run is
    the same run either way (docs/architecture.md).
    """

    name: str
    """The Snakemake rule's name, e.g. ``train_adding_T60_lstm``."""
    path: str
    """The job's place in the file layout (:data:`CELL_DIR` or :data:`COMBINATION_DIR`): its log and benchmark
    files are named after it."""
    combinations: tuple[Combination, ...]


def training_jobs(study: Mapping[str, Any]) -> list[TrainingJob]:
    """The study's training jobs in config order, each with its combinations in config order (``jobs.training``)."""
    per_cell = study["jobs"]["training"] == "cell"
    groups: dict[tuple[Any, ...], list[Combination]] = {}
    for combination in expand_combinations(study):
        groups.setdefault(combination[:3] if per_cell else combination, []).append(combination)
    jobs = []
    for key, combinations in groups.items():
        fields = dict(zip(Combination._fields, key, strict=False))
        name = "_".join(["train", fields["task"], f"T{fields['seq_len']}", *map(str, key[2:])])
        path = (CELL_DIR if per_cell else COMBINATION_DIR).format(**fields)
        jobs.append(TrainingJob(name, path, tuple(combinations)))
    return jobs


def combination_runs(study: Mapping[str, Any], combination: Combination) -> list[RunKey]:
    """The runs of one combination, one per seed, in config order."""
    return [RunKey(*combination, seed) for seed in study["seeds"]]


def job_runs(study: Mapping[str, Any], job: TrainingJob) -> list[RunKey]:
    """The runs of a training job's combinations, one per listed seed, in config order."""
    return [key for combination in job.combinations for key in combination_runs(study, combination)]


def specs_json(study: Mapping[str, Any], keys: Sequence[RunKey]) -> str:
    """The runs' resolved specs as one compact JSON list: a training job's ``--specs``, and its Snakemake
    parameter (a deterministic function of the config, so only jobs with a changed run rerun)."""
    return json.dumps([run_spec(study, key) for key in keys], sort_keys=True, separators=(",", ":"))


def run_dir(key: RunKey) -> str:
    """The run's directory (:data:`RUN_DIR`), relative to the working directory."""
    return RUN_DIR.format(**key._asdict())


def learning_rate(study: Mapping[str, Any], cell: str) -> float:
    """The cell's override if it has one, else ``training.learning_rate.default``."""
    rates = study["training"]["learning_rate"]
    return float(rates.get(cell, rates["default"]))


def strategies(study: Mapping[str, Any]) -> dict[str, Strategy]:
    """The study's strategies, name -> validated :class:`Strategy`, in config order."""
    return {name: Strategy.from_dict(name, strategy_bundle(study, name)) for name in study["strategies"]}


def run_spec(study: Mapping[str, Any], key: RunKey) -> dict[str, Any]:
    """The resolved RunSpec fields of one run (docs/architecture.md), as plain JSON values.

    ``strategy_params`` is the strategy's canonical bundle (:meth:`Strategy.params`: only the interventions that
    differ from the control), so ``{}`` and ``{norm: none}`` give the same spec and the same run.
    """
    training = study["training"]
    strategy = Strategy.from_dict(key.strategy, strategy_bundle(study, key.strategy))
    return {
        "task": key.task,
        "seq_len": int(key.seq_len),
        "cell": key.cell,
        "strategy": key.strategy,
        "strategy_params": strategy.params(),
        "seed": int(key.seed),
        **{f"{split}_size": study["data"][f"{split}_size"] for split in ("train", "val", "test")},
        "hidden_size": training["hidden_size"],
        "batch_size": training["batch_size"],
        "steps": training["steps"],
        "optimizer": training["optimizer"],
        "learning_rate": learning_rate(study, key.cell),
        "eval_every": training["eval_every"],
        "probe_every": training["probe_every"],
        "probe_batch": training["probe_batch"],
        "solved_fraction": float(training["solved_fraction"]),
        "stop_fraction": float(training["stop_fraction"]),
        "early_stop": training["early_stop"],
        "device": training["device"],
        "engine": engine_fingerprint(),
    }


MS_PER_STEP_AND_TIME_STEP = 0.5
"""A generous cost of one training step per time step at H = 64 on one CPU core, for the scheduler's time limits
(the slowest step measured, the LSTM with batch normalization, costs 0.77 ms per time step at H = 128, twice the
width: benchmarks/README.md)."""


def relative_cost(combinations: Sequence[Combination]) -> int:
    """A training job's cost relative to the others, for the scheduler to start the longest jobs first: every
    combination's time steps per sequence times its cell's gate blocks G (a step's FLOPs are G times a vanilla
    cell's)."""
    gates = {"lstm": LSTMCell.gates, "gru": GRUCell.gates}
    return sum(gates.get(c.cell, VanillaCell.gates) * get_task(c.task).input_length(c.seq_len) for c in combinations)


def estimated_minutes(study: Mapping[str, Any], combinations: Sequence[Combination]) -> int:
    """A time limit for a training job: every seed of each of its combinations (up to ``verdicts.max_seeds``)
    using its whole step budget, at a generous cost per step (:data:`MS_PER_STEP_AND_TIME_STEP`, scaled by H²
    beyond H = 64), plus ten minutes of slack."""
    training = study["training"]
    scale = max(1.0, (training["hidden_size"] / 64) ** 2) * max(1.0, training["batch_size"] / 64)
    seconds_per_time_step = most_seeds(study) * training["steps"] * MS_PER_STEP_AND_TIME_STEP * scale / 1000
    length = sum(get_task(combination.task).input_length(combination.seq_len) for combination in combinations)
    return 10 + int(seconds_per_time_step * length / 60 + 0.5)

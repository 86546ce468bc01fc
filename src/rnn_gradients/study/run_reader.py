"""Reading run directories strictly: every file of every run is read once and checked before it reaches a table.

``collect`` turns run directories into the study tables and the report. A run file that is cut off, edited,
left over from another study or written by hand must stop it with a message naming the file, not reach the
tables as a cut-off number, a row of empty cells or a run that is not the one its directory names. For each run
directory (the parent of a ``summary.json``) :func:`read_runs` checks:

- the directory is the directory of a run of the study (:data:`~rnn_gradients.study.grid.RUN_DIR`, the grid
  of the ``--study-config``), and every run of the grid is given exactly once; the extra seeds that the
  sequential seed rule asks of an uncertain combination (:mod:`rnn_gradients.study.verdicts`) are read from
  beside its listed seeds, and one that is missing is named;
- ``config.json`` is the run's resolved spec (:func:`~rnn_gradients.study.grid.run_spec`): the run was trained
  as the study asks, not under an older config;
- ``summary.json`` and ``runtime.json``: strict JSON objects (no duplicate keys, no NaN), exactly the fields of
  :class:`~rnn_gradients.engine.run_files.RunSummary` and ``RunRuntime`` with the types declared there; the run
  keys inside equal the ones the directory names; no number is negative (``threads`` at least 1); the outcome
  fields agree with each other and with the task (the chance levels are the task's, ``solve_threshold`` is
  ``solved_fraction`` × the chance error, ``value`` is the metric of ``error``, a share of sequences is at most
  1, ``solved`` is the final test error's verdict, ``steps_to_solve`` an evaluation step of the run,
  ``diverged`` and ``diverged_step`` agree, a diverged run is not solved); free text (device, versions) is
  plain;
- ``steps.csv``, ``evals.csv``, ``probes.csv``: UTF-8, ending with a newline (a cut-off last line is caught),
  the header exactly the package's columns (``StepRecord.COLUMNS``, ``EvalRecord.COLUMNS``, ``PROBE_COLUMNS``),
  every row complete, every cell of the column's type (integers, finite-or-empty numbers, ``True``/``False``);
- the rows agree with ``summary.json`` as the training loop (:func:`rnn_gradients.engine.training.train_run`)
  writes them: ``steps.csv`` holds steps 0, 1, ... — ``steps_run`` of them, plus the non-finite step of a
  diverged run, which is its last and only non-finite one; ``evals.csv`` starts at step 0 and ends at
  ``steps_run``, its final test columns are the summary's ``value``, ``error`` and ``loss``, and no evaluation
  whose validation error is above the threshold is flagged solved (the numbers of every file are at least 0,
  shares of sequences at most 1); ``probes.csv`` holds probes from step 0 to ``steps_run``, each with
  t = 1..L (the task's input length).

Problems raise one :class:`RunFileError`: one line per damaged run directory (the first problem found in it),
then what to do. File names, columns and fields all come from :mod:`rnn_gradients.engine.run_files`; nothing
here lists them again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnn_gradients.engine.run_files import (
    RUN_FILES,
    RUNTIME_FIELDS,
    SUMMARY_FIELDS,
    EvalRecord,
    RunRuntime,
    RunSummary,
    StepRecord,
)
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.study.grid import RUN_DIR, RUN_KEYS, Combination, RunKey, expand_runs, run_dir, run_spec
from rnn_gradients.study.strict_files import (
    FileProblem,
    check_fields,
    field_kinds,
    probe_kinds,
    read_csv_strict,
    read_json_object,
    record_kinds,
)
from rnn_gradients.study.verdicts import sequential_seeds, verdict_settings

SUMMARY_FILE, CONFIG_FILE, RUNTIME_FILE = "summary.json", "config.json", "runtime.json"
STEPS_FILE, EVALS_FILE, PROBES_FILE = "steps.csv", "evals.csv", "probes.csv"
assert {SUMMARY_FILE, CONFIG_FILE, RUNTIME_FILE, STEPS_FILE, EVALS_FILE, PROBES_FILE} <= set(RUN_FILES)
STEP, FINITE, SOLVED, PROBE_STEP, T = "step", "finite", "solved", "probe_step", "t"
"""The columns whose values the checks follow (the rest are checked by type only)."""
MACHINE_TEXT = ("cpu_model", "libraries", "numerics_settings", "compiled_kernels")
"""The runtime.json fields that describe the machine in words (a CPU model has spaces and parentheses)."""
DESCRIPTION_TEXT = re.compile(r"[A-Za-z0-9_.:+\-()@,=/ ]{0,200}")
VAL_ERROR = "val_error"
FINAL_TEST = {"test_metric": "value", "test_error": "error", "test_loss": "loss"}
"""evals.csv's test columns, measured once at the final evaluation -> the summary.json fields that report them."""
ACCURACY_FIELDS = ("value", "error", "train_error")
"""The summary fields that are shares of sequences (at most 1) on a task whose metric is an accuracy."""
ACCURACY_COLUMNS = ("val_metric", "val_error", "test_metric", "test_error")
"""The same in evals.csv (every number of a run file is at least 0: rnn_gradients.study.strict_files)."""
METRIC = "metric"
"""The summary field that must name the task's metric."""


class RunFileError(ValueError):
    """Run files that are missing, malformed or inconsistent; ``problems`` holds one line per damaged run."""

    def __init__(self, problems: Sequence[str], advice: str = "") -> None:
        self.problems = list(problems)
        self.advice = advice
        super().__init__("\n".join([*self.problems, *([advice] if advice else [])]))


@dataclass(frozen=True)
class RunFiles:
    """One run directory, read and checked: its key, its JSON files as dicts and its CSV files as typed frames."""

    key: RunKey
    directory: Path
    spec: dict[str, Any]
    summary: dict[str, Any]
    runtime: dict[str, Any]
    steps: pd.DataFrame
    evals: pd.DataFrame
    probes: pd.DataFrame


def read_runs(summaries: Sequence[Path], study: Mapping[str, Any]) -> list[RunFiles]:
    """Read and check the run directories of the given ``summary.json`` files against the ``study`` grid.

    Raises :class:`RunFileError` listing every damaged run (one line each), runs given twice and runs of the
    grid that are missing, then what to do.
    """
    try:
        grid = {run_dir(key): key for key in expand_runs(study)}
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"--study-config is not a validated study config (no {err})") from None
    depth = len(Path(RUN_DIR).parts)
    problems: list[str] = []
    damaged: list[Path] = []
    runs: list[RunFiles] = []
    seen: dict[RunKey, Path] = {}
    for summary in map(Path, summaries):
        directory = summary.parent
        key = grid.get("/".join(directory.parts[-depth:])) if summary.name == SUMMARY_FILE else None
        if key is None:
            problems.append(
                f"{summary}: not the {SUMMARY_FILE} of a run of this study; a run's files lie in {RUN_DIR}/ for a "
                "task, T, cell, strategy and seed of the study config"
            )
            continue
        if key in seen:
            problems.append(
                f"{summary}: the same run as {seen[key]} ({'/'.join(map(str, key))}): "
                f"more than one {SUMMARY_FILE} for the run"
            )
            continue
        seen[key] = summary
        try:
            runs.append(_read_run(directory, key, study))
        except FileProblem as bad:
            problems.append(str(bad))
            damaged.append(directory)
    missing = [run_dir(key) for key in grid.values() if key not in seen]
    if missing and not problems:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        problems.append(f"{len(missing)} run(s) of the study are not among the files to collect: {shown}")
    if problems:
        advice = ""
        if damaged:
            advice = (
                f"{len(damaged)} run director{'y is' if len(damaged) == 1 else 'ies are'} damaged: delete "
                f"{'it' if len(damaged) == 1 else 'them'} and rerun snakemake, which trains exactly those runs "
                f"again: rm -r {' '.join(map(str, damaged))}"
            )
        raise RunFileError(problems, advice)
    return runs + _extra_seed_runs(runs, study)


def _extra_seed_runs(listed: Sequence[RunFiles], study: Mapping[str, Any]) -> list[RunFiles]:
    """The runs of the extra seeds that the sequential seed rule (:func:`~rnn_gradients.study.verdicts.
    sequential_seeds`) asks of each combination, read and checked like the listed ones; they lie beside them."""
    max_seeds, confidence = verdict_settings(study)
    by_combination: dict[Combination, dict[int, RunFiles]] = {}
    for run in listed:
        by_combination.setdefault(Combination(*run.key[:-1]), {})[run.key.seed] = run
    problems: list[str] = []
    damaged: list[Path] = []
    extra: list[RunFiles] = []
    for combination, runs in by_combination.items():
        first = next(iter(runs.values()))

        def solved(
            seed: int,
            combination: Combination = combination,
            runs: dict[int, RunFiles] = runs,
            home: Path = first.directory.parent,
        ) -> bool:
            if seed not in runs:
                key = RunKey(*combination, seed)
                directory = home / Path(run_dir(key)).name
                if not (directory / SUMMARY_FILE).is_file():
                    raise _MissingRun(directory)
                try:
                    runs[seed] = _read_run(directory, key, study)
                except FileProblem as bad:
                    if not isinstance(bad, _MissingRun):
                        damaged.append(directory)
                    raise
                extra.append(runs[seed])
            return bool(runs[seed].summary["solved"])

        try:
            sequential_seeds([seed for seed in study["seeds"] if seed in runs], max_seeds, confidence, solved)
        except _MissingRun as missing:
            problems.append(
                f"{missing.directory}: missing, but the sequential seed rule asks for this seed (its combination's "
                f"verdict is uncertain without it); rerun the combination's training job, which trains only the "
                f"missing runs: snakemake --forcerun {first.directory / SUMMARY_FILE}"
            )
        except FileProblem as bad:
            problems.append(str(bad))
    if problems:
        advice = f"rm -r {' '.join(map(str, damaged))} and rerun snakemake to train them again" if damaged else ""
        raise RunFileError(problems, advice)
    return extra


class _MissingRun(FileProblem):
    """An extra seed's run directory that is not there."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        super().__init__(f"{directory}: missing")


# ---- one run -----------------------------------------------------------------------------------------------------


def _read_run(directory: Path, key: RunKey, study: Mapping[str, Any]) -> RunFiles:
    expected_spec = run_spec(study, key)
    spec = read_json_object(directory / CONFIG_FILE)
    _check_spec(directory / CONFIG_FILE, spec, expected_spec)
    summary = read_json_object(directory / SUMMARY_FILE)
    check_fields(directory / SUMMARY_FILE, summary, field_kinds(RunSummary, SUMMARY_FIELDS), (*RUN_KEYS, METRIC))
    _check_summary(directory / SUMMARY_FILE, summary, key, spec)
    runtime = read_json_object(directory / RUNTIME_FILE)
    check_fields(
        directory / RUNTIME_FILE,
        runtime,
        field_kinds(RunRuntime, RUNTIME_FIELDS),
        MACHINE_TEXT,
        minimums={"threads": 1},
    )
    for field in MACHINE_TEXT:
        if not DESCRIPTION_TEXT.fullmatch(runtime[field]):
            raise FileProblem(
                f"{directory / RUNTIME_FILE}: {field} = {runtime[field]!r} is not a description (letters, digits, "
                "spaces and _ . : + - ( ) @ , = / only, at most 200 characters)"
            )

    steps_run, diverged = summary["steps_run"], summary["diverged"]
    n_steps = steps_run + (1 if diverged else 0)
    max_evals = steps_run // spec["eval_every"] + 2
    length = get_task(key.task).input_length(key.seq_len)
    max_probes = (steps_run // spec["probe_every"] + 2) * length
    steps = read_csv_strict(directory / STEPS_FILE, record_kinds(StepRecord), max_rows=n_steps)
    evals = read_csv_strict(directory / EVALS_FILE, record_kinds(EvalRecord), max_rows=max_evals)
    probes = read_csv_strict(directory / PROBES_FILE, probe_kinds(), max_rows=max_probes)
    _check_steps(directory / STEPS_FILE, steps, summary, n_steps)
    _check_evals(directory / EVALS_FILE, evals, summary, key.task)
    _check_probes(directory / PROBES_FILE, probes, steps_run, length)
    return RunFiles(key, directory, spec, summary, runtime, steps, evals, probes)


def _check_spec(path: Path, spec: dict[str, Any], expected: Mapping[str, Any]) -> None:
    if spec == expected and all(type(spec[k]) is type(expected[k]) for k in expected):
        return
    differing = [
        k for k in expected if k not in spec or spec[k] != expected[k] or type(spec[k]) is not type(expected[k])
    ]
    extra = [k for k in spec if k not in expected]
    what = "; ".join(
        [
            f"{k} is {spec[k]!r}, the study asks {expected[k]!r}" if k in spec else f"{k} is missing"
            for k in differing[:3]
        ]
        + ([f"unexpected field(s) {', '.join(map(repr, extra[:3]))}"] if extra else [])
    )
    raise FileProblem(f"{path}: the run was not trained as the study config asks ({what}); it is stale or edited")


def _check_summary(path: Path, summary: dict[str, Any], key: RunKey, spec: Mapping[str, Any]) -> None:
    named = {field: summary[field] for field in RUN_KEYS}
    if named != key._asdict():
        wrong = ", ".join(f"{field} {named[field]!r}" for field in RUN_KEYS if named[field] != getattr(key, field))
        raise FileProblem(
            f"{path}: names {wrong}, but lies in the directory of run {'/'.join(map(str, key))}: the file does "
            "not belong to this run"
        )
    if summary[METRIC] != get_task(key.task).metric_name:
        raise FileProblem(f"{path}: {METRIC} {summary[METRIC]!r} is not the metric of task {key.task!r}")
    if not 0 <= summary["steps_run"] <= spec["steps"]:
        raise FileProblem(f"{path}: steps_run = {summary['steps_run']} is outside 0..{spec['steps']} (training.steps)")
    if summary["diverged"] != (summary["diverged_step"] is not None):
        raise FileProblem(
            f"{path}: diverged = {summary['diverged']} contradicts diverged_step = {summary['diverged_step']}"
        )
    if summary["diverged"] and summary["diverged_step"] != summary["steps_run"]:
        raise FileProblem(
            f"{path}: a run that diverged at step {summary['diverged_step']} ran {summary['steps_run']} steps"
        )
    # solved is the test set's verdict on the final model, steps_to_solve the first evaluation at which the
    # validation error was within the threshold: either may hold without the other, but a diverged run is not solved
    if summary["solved"] and summary["diverged"]:
        raise FileProblem(f"{path}: solved = True and diverged = True contradict each other")
    _check_outcome(path, summary, key, spec)


def _close(found: float | None, expected: float | None) -> bool:
    """Two numbers of the run files equal (as written, both in full precision), or both missing."""
    if found is None or expected is None:
        return found is None and expected is None
    return math.isclose(found, expected, rel_tol=1e-9, abs_tol=1e-12)


def _check_outcome(path: Path, summary: Mapping[str, Any], key: RunKey, spec: Mapping[str, Any]) -> None:
    """The test outcome agrees with the task and with itself, as :func:`~rnn_gradients.engine.training.train_run`
    computes it."""
    task = get_task(key.task)
    chance_error = task.chance_error(key.seq_len)
    expected = {
        "chance": task.chance_metric(key.seq_len),
        "chance_error": chance_error,
        "chance_loss": task.chance_loss(key.seq_len),
        "solve_threshold": spec["solved_fraction"] * chance_error,
    }
    for field, value in expected.items():
        if not _close(summary[field], value):
            raise FileProblem(
                f"{path}: {field} is {summary[field]!r}, but task {key.task!r} at T = {key.seq_len} with "
                f"solved_fraction {spec['solved_fraction']} gives {value!r}"
            )
    if task.metric_name == "accuracy":
        for field in ACCURACY_FIELDS:
            if summary[field] is not None and summary[field] > 1:
                raise FileProblem(f"{path}: {field} is {summary[field]!r}, but a share of sequences is at most 1")
    error, value = summary["error"], summary["value"]
    if not _close(value, None if error is None else task.metric_of(error)):
        raise FileProblem(f"{path}: value {value!r} is not the {task.metric_name} of error {error!r}")
    verdict = not summary["diverged"] and error is not None and error <= summary["solve_threshold"]
    if summary["solved"] != verdict:
        raise FileProblem(
            f"{path}: solved is {summary['solved']}, but the test error {error!r} is "
            f"{'within' if verdict else 'not within'} solve_threshold {summary['solve_threshold']!r}"
            + (" (the run diverged)" if summary["diverged"] else "")
        )
    at = summary["steps_to_solve"]
    if at is not None and at > summary["steps_run"]:
        raise FileProblem(
            f"{path}: steps_to_solve = {at} is after the run's last step, steps_run = {summary['steps_run']}"
        )


def _check_steps(path: Path, steps: pd.DataFrame, summary: Mapping[str, Any], n_steps: int) -> None:
    if len(steps) != n_steps:
        detail = f"steps_run = {summary['steps_run']}" + (
            " plus the step it diverged at" if summary["diverged"] else ""
        )
        raise FileProblem(f"{path}: {len(steps)} steps, but {SUMMARY_FILE} says {n_steps} ({detail})")
    if not np.array_equal(steps[STEP].to_numpy(), np.arange(n_steps)):
        line = _first_mismatch(steps[STEP].to_numpy(), np.arange(n_steps))
        raise FileProblem(f"{path}: line {line + 2}: steps must run 0, 1, 2, ... in order")
    finite = steps[FINITE].to_numpy(dtype=bool)
    expected = np.ones(n_steps, dtype=bool)
    if summary["diverged"]:
        expected[-1] = False
    if not np.array_equal(finite, expected):
        line = _first_mismatch(finite, expected)
        raise FileProblem(
            f"{path}: line {line + 2}: {FINITE} is {finite[line]}, but only a diverged run's last step is "
            f"non-finite ({SUMMARY_FILE}: diverged = {summary['diverged']})"
        )


def _check_evals(path: Path, evals: pd.DataFrame, summary: Mapping[str, Any], task: str) -> None:
    at = evals[STEP].to_numpy()
    if len(at) == 0 or at[0] != 0 or at[-1] != summary["steps_run"] or np.any(np.diff(at) <= 0):
        raise FileProblem(
            f"{path}: evaluations must run from step 0 to steps_run = {summary['steps_run']} in increasing order; "
            f"found {len(at)} evaluation(s){f' from step {at[0]} to {at[-1]}' if len(at) else ''}"
        )
    final = evals.iloc[-1]
    for column, field in FINAL_TEST.items():
        found = None if math.isnan(final[column]) else float(final[column])
        if not _close(found, summary[field]):
            raise FileProblem(
                f"{path}: line {len(evals) + 1}: the final {column} is {found!r}, but {SUMMARY_FILE} says "
                f"{field} = {summary[field]!r}"
            )
    if get_task(task).metric_name == "accuracy":
        for column in ACCURACY_COLUMNS:
            above = (evals[column] > 1).to_numpy()
            if above.any():
                index = int(np.flatnonzero(above)[0])
                raise FileProblem(
                    f"{path}: line {index + 2}, column {column}: {evals[column].iloc[index].item()!r} is more than 1, "
                    "but a share of sequences is at most 1"
                )
    flagged = evals[SOLVED].to_numpy(dtype=bool) & ~(evals[VAL_ERROR] <= summary["solve_threshold"]).to_numpy()
    if flagged.any():
        line = int(np.flatnonzero(flagged)[0]) + 2
        raise FileProblem(
            f"{path}: line {line}: solved is True, but {VAL_ERROR} {evals[VAL_ERROR].iloc[line - 2].item()!r} is above "
            f"solve_threshold {summary['solve_threshold']!r}"
        )
    # steps_to_solve is the first evaluation marked solved (validation error within the threshold), whatever the
    # test set said at the end: validation and test may disagree in either direction, and both are results
    solved_at = at[evals[SOLVED].to_numpy(dtype=bool)]
    first = int(solved_at[0]) if len(solved_at) else None
    if summary["steps_to_solve"] != first:
        raise FileProblem(
            f"{path}: {SUMMARY_FILE} says steps_to_solve = {summary['steps_to_solve']}, the evaluations' first "
            f"solved step is {first if first is not None else 'none (never solved)'}"
        )


def _check_probes(path: Path, probes: pd.DataFrame, steps_run: int, length: int) -> None:
    n = len(probes)
    at, t = probes[PROBE_STEP].to_numpy(), probes[T].to_numpy()
    if n == 0 or n % length:
        raise FileProblem(f"{path}: {n} rows, but every probe has one row per time step t = 1..{length}")
    at, t = at.reshape(-1, length), t.reshape(-1, length)
    steps = at[:, 0]
    if np.any(at != steps[:, None]) or not np.array_equal(t, np.broadcast_to(np.arange(1, length + 1), t.shape)):
        raise FileProblem(f"{path}: every probe must hold t = 1..{length} in order, under one {PROBE_STEP}")
    if steps[0] != 0 or steps[-1] != steps_run or np.any(np.diff(steps) <= 0):
        raise FileProblem(
            f"{path}: probes must run from step 0 to steps_run = {steps_run} in increasing order; found "
            f"{PROBE_STEP} {', '.join(map(str, steps[:5]))}{' ...' if len(steps) > 5 else ''}"
        )


def _first_mismatch(found: np.ndarray, expected: np.ndarray) -> int:
    return int(np.flatnonzero(found != expected)[0])

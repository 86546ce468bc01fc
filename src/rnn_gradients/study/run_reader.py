"""Reading run directories strictly: every file of every run is read once and checked before it reaches a table.

``collect`` turns run directories into the study tables and the report. A run file that is cut off, edited,
left over from another study or written by hand must stop it with a message naming the file, not reach the
tables as a cut-off number, a row of empty cells or a run that is not the one its directory names. For each run
directory (the parent of a ``summary.json``) :func:`read_runs` checks:

- the directory is the directory of a run of the study (:data:`~rnn_gradients.study.grid.RUN_DIR`, the grid
  of the ``--study-config``), and every run of the grid is given exactly once;
- ``config.json`` is the run's resolved spec (:func:`~rnn_gradients.study.grid.run_spec`): the run was trained
  as the study asks, not under an older config;
- ``summary.json`` and ``runtime.json``: strict JSON objects (no duplicate keys, no NaN), exactly the fields of
  :class:`~rnn_gradients.engine.run_files.RunSummary` and ``RunRuntime`` with the types declared there; the run
  keys inside equal the ones the directory names; the outcome fields agree with each other (``diverged`` and
  ``diverged_step``, ``solved`` and ``steps_to_solve``); free text (device, versions) is plain;
- ``steps.csv``, ``evals.csv``, ``probes.csv``: UTF-8, ending with a newline (a cut-off last line is caught),
  the header exactly the package's columns (``StepRecord.COLUMNS``, ``EvalRecord.COLUMNS``, ``PROBE_COLUMNS``),
  every row complete, every cell of the column's type (integers, finite-or-empty numbers, ``True``/``False``);
- the rows agree with ``summary.json`` as the training loop (:func:`rnn_gradients.engine.training.train_run`)
  writes them: ``steps.csv`` holds steps 0, 1, ... — ``steps_run`` of them, plus the non-finite step of a
  diverged run, which is its last and only non-finite one; ``evals.csv`` starts at step 0 and ends at
  ``steps_run``; ``probes.csv`` holds probes from step 0 to ``steps_run``, each with t = 1..L (the task's input
  length).

Problems raise one :class:`RunFileError`: one line per damaged run directory (the first problem found in it),
then what to do. File names, columns and fields all come from :mod:`rnn_gradients.engine.run_files`; nothing
here lists them again.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnn_gradients.engine.probes import ProbeResult
from rnn_gradients.engine.run_files import (
    PROBE_COLUMNS,
    RUN_FILES,
    RUNTIME_FIELDS,
    SUMMARY_FIELDS,
    EvalRecord,
    RunRuntime,
    RunSummary,
    StepRecord,
    probe_rows,
)
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.study.grid import RUN_DIR, RUN_KEYS, RunKey, expand_runs, run_dir, run_spec

MAX_JSON_BYTES = 2**20
"""A run's JSON files are a few hundred bytes; anything past this is not one of them."""
MAX_BYTES_PER_CELL = 64
"""Bound on a CSV cell (a float in full precision is at most 24 characters) used to refuse oversized files."""
PLAIN_TEXT = re.compile(r"[A-Za-z0-9_.:+\-]{1,100}")
"""What a free-text field (device, versions) may hold: it ends up in the tables and the report."""
SUMMARY_FILE, CONFIG_FILE, RUNTIME_FILE = "summary.json", "config.json", "runtime.json"
STEPS_FILE, EVALS_FILE, PROBES_FILE = "steps.csv", "evals.csv", "probes.csv"
assert {SUMMARY_FILE, CONFIG_FILE, RUNTIME_FILE, STEPS_FILE, EVALS_FILE, PROBES_FILE} <= set(RUN_FILES)
STEP, FINITE, SOLVED, PROBE_STEP, T = "step", "finite", "solved", "probe_step", "t"
"""The columns whose values the checks follow (the rest are checked by type only)."""
METRIC = "metric"
"""The summary field that must name the task's metric."""


class RunFileError(ValueError):
    """Run files that are missing, malformed or inconsistent; ``problems`` holds one line per damaged run."""

    def __init__(self, problems: Sequence[str], advice: str = "") -> None:
        self.problems = list(problems)
        self.advice = advice
        super().__init__("\n".join([*self.problems, *([advice] if advice else [])]))


class _Bad(Exception):
    """One problem of one file (internal: becomes a line of RunFileError)."""


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
        except _Bad as bad:
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
    return runs


# ---- one run -----------------------------------------------------------------------------------------------------


def _read_run(directory: Path, key: RunKey, study: Mapping[str, Any]) -> RunFiles:
    expected_spec = run_spec(study, key)
    spec = _read_json(directory / CONFIG_FILE)
    _check_spec(directory / CONFIG_FILE, spec, expected_spec)
    summary = _read_json(directory / SUMMARY_FILE)
    _check_fields(directory / SUMMARY_FILE, summary, _field_kinds(RunSummary, SUMMARY_FIELDS), (*RUN_KEYS, METRIC))
    _check_summary(directory / SUMMARY_FILE, summary, key, spec)
    runtime = _read_json(directory / RUNTIME_FILE)
    _check_fields(directory / RUNTIME_FILE, runtime, _field_kinds(RunRuntime, RUNTIME_FIELDS))

    steps_run, diverged = summary["steps_run"], summary["diverged"]
    n_steps = steps_run + (1 if diverged else 0)
    max_evals = steps_run // spec["eval_every"] + 2
    length = get_task(key.task).input_length(key.seq_len)
    max_probes = (steps_run // spec["probe_every"] + 2) * length
    steps = _read_csv(directory / STEPS_FILE, _record_kinds(StepRecord), max_rows=n_steps)
    evals = _read_csv(directory / EVALS_FILE, _record_kinds(EvalRecord), max_rows=max_evals)
    probes = _read_csv(directory / PROBES_FILE, _probe_kinds(), max_rows=max_probes)
    _check_steps(directory / STEPS_FILE, steps, summary, n_steps)
    _check_evals(directory / EVALS_FILE, evals, summary)
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
    raise _Bad(f"{path}: the run was not trained as the study config asks ({what}); it is stale or edited")


def _check_summary(path: Path, summary: dict[str, Any], key: RunKey, spec: Mapping[str, Any]) -> None:
    named = {field: summary[field] for field in RUN_KEYS}
    if named != key._asdict():
        wrong = ", ".join(f"{field} {named[field]!r}" for field in RUN_KEYS if named[field] != getattr(key, field))
        raise _Bad(
            f"{path}: names {wrong}, but lies in the directory of run {'/'.join(map(str, key))}: the file does "
            "not belong to this run"
        )
    if summary[METRIC] != get_task(key.task).metric_name:
        raise _Bad(f"{path}: {METRIC} {summary[METRIC]!r} is not the metric of task {key.task!r}")
    if not 0 <= summary["steps_run"] <= spec["steps"]:
        raise _Bad(f"{path}: steps_run = {summary['steps_run']} is outside 0..{spec['steps']} (training.steps)")
    if summary["diverged"] != (summary["diverged_step"] is not None):
        raise _Bad(f"{path}: diverged = {summary['diverged']} contradicts diverged_step = {summary['diverged_step']}")
    if summary["diverged"] and summary["diverged_step"] != summary["steps_run"]:
        raise _Bad(f"{path}: a run that diverged at step {summary['diverged_step']} ran {summary['steps_run']} steps")
    if summary["solved"] != (summary["steps_to_solve"] is not None) or (summary["solved"] and summary["diverged"]):
        raise _Bad(
            f"{path}: solved = {summary['solved']}, steps_to_solve = {summary['steps_to_solve']} and diverged = "
            f"{summary['diverged']} contradict each other"
        )


def _check_steps(path: Path, steps: pd.DataFrame, summary: Mapping[str, Any], n_steps: int) -> None:
    if len(steps) != n_steps:
        detail = f"steps_run = {summary['steps_run']}" + (
            " plus the step it diverged at" if summary["diverged"] else ""
        )
        raise _Bad(f"{path}: {len(steps)} steps, but {SUMMARY_FILE} says {n_steps} ({detail})")
    if not np.array_equal(steps[STEP].to_numpy(), np.arange(n_steps)):
        line = _first_mismatch(steps[STEP].to_numpy(), np.arange(n_steps))
        raise _Bad(f"{path}: line {line + 2}: steps must run 0, 1, 2, ... in order")
    finite = steps[FINITE].to_numpy(dtype=bool)
    expected = np.ones(n_steps, dtype=bool)
    if summary["diverged"]:
        expected[-1] = False
    if not np.array_equal(finite, expected):
        line = _first_mismatch(finite, expected)
        raise _Bad(
            f"{path}: line {line + 2}: {FINITE} is {finite[line]}, but only a diverged run's last step is "
            f"non-finite ({SUMMARY_FILE}: diverged = {summary['diverged']})"
        )


def _check_evals(path: Path, evals: pd.DataFrame, summary: Mapping[str, Any]) -> None:
    at = evals[STEP].to_numpy()
    if len(at) == 0 or at[0] != 0 or at[-1] != summary["steps_run"] or np.any(np.diff(at) <= 0):
        raise _Bad(
            f"{path}: evaluations must run from step 0 to steps_run = {summary['steps_run']} in increasing order; "
            f"found {len(at)} evaluation(s){f' from step {at[0]} to {at[-1]}' if len(at) else ''}"
        )
    solved_at = at[evals[SOLVED].to_numpy(dtype=bool)]
    if summary["solved"] and (len(solved_at) == 0 or solved_at[0] != summary["steps_to_solve"]):
        raise _Bad(
            f"{path}: {SUMMARY_FILE} says solved at step {summary['steps_to_solve']}, the evaluations say "
            f"{solved_at[0] if len(solved_at) else 'never'}"
        )


def _check_probes(path: Path, probes: pd.DataFrame, steps_run: int, length: int) -> None:
    n = len(probes)
    at, t = probes[PROBE_STEP].to_numpy(), probes[T].to_numpy()
    if n == 0 or n % length:
        raise _Bad(f"{path}: {n} rows, but every probe has one row per time step t = 1..{length}")
    at, t = at.reshape(-1, length), t.reshape(-1, length)
    steps = at[:, 0]
    if np.any(at != steps[:, None]) or not np.array_equal(t, np.broadcast_to(np.arange(1, length + 1), t.shape)):
        raise _Bad(f"{path}: every probe must hold t = 1..{length} in order, under one {PROBE_STEP}")
    if steps[0] != 0 or steps[-1] != steps_run or np.any(np.diff(steps) <= 0):
        raise _Bad(
            f"{path}: probes must run from step 0 to steps_run = {steps_run} in increasing order; found "
            f"{PROBE_STEP} {', '.join(map(str, steps[:5]))}{' ...' if len(steps) > 5 else ''}"
        )


def _first_mismatch(found: np.ndarray, expected: np.ndarray) -> int:
    return int(np.flatnonzero(found != expected)[0])


# ---- JSON --------------------------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise _Bad(f"the key(s) {', '.join(map(repr, repeated))} appear more than once")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise _Bad(f"{name} is not strict JSON (the run files write non-finite numbers as null)")


def _read_json(path: Path) -> dict[str, Any]:
    raw = _read_bytes(path, MAX_JSON_BYTES)
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Bad as bad:
        raise _Bad(f"{path}: {bad}") from None
    except UnicodeDecodeError as err:
        raise _Bad(f"{path}: byte {err.start} is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        cut = " (the file is cut off)" if err.pos >= len(raw.rstrip()) else ""
        raise _Bad(f"{path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}{cut}") from None
    except RecursionError:
        raise _Bad(f"{path}: nested too deeply to be a run file") from None
    if not isinstance(data, dict):
        raise _Bad(f"{path}: holds {type(data).__name__}, not a JSON object")
    return data


def _read_bytes(path: Path, limit: int) -> bytes:
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file"
        raise _Bad(f"{path}: {what}")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as err:
        raise _Bad(f"{path}: cannot be read: {err.strerror or err}") from None
    if len(raw) > limit:
        raise _Bad(f"{path}: larger than {limit:,} bytes, more than the run can have written")
    return raw


def _kind(annotation: Any) -> str:
    """``str``, ``int``, ``int?`` (int or null), ``float`` (number or null: NaN is written as null), ``bool``."""
    args = set(typing.get_args(annotation))
    if type(None) in args and len(args) == 2:
        return _kind(next(arg for arg in args if arg is not type(None))) + "?"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is str:
        return "str"
    return "any"


@cache
def _field_kinds(record: type, names: tuple[str, ...]) -> dict[str, str]:
    """Field -> kind of a run-file JSON (``names``: SUMMARY_FIELDS, RUNTIME_FIELDS), from the annotations of the
    dataclass that writes it (RunSummary, RunRuntime)."""
    hints = typing.get_type_hints(record)
    return {name: _kind(hints[name]) if name in hints else "any" for name in names}


def _json_type_ok(kind: str, value: Any) -> bool:
    if value is None:
        return kind.endswith("?") or kind in ("float", "any")
    kind = kind.rstrip("?")
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "str":
        return isinstance(value, str)
    return isinstance(value, str | int | float | bool)


_KIND_NAMES = {"bool": "true or false", "int": "an integer", "float": "a finite number or null", "str": "text"}


def _check_fields(path: Path, data: dict[str, Any], kinds: Mapping[str, str], exact: Sequence[str] = ()) -> None:
    """Exactly the fields of ``kinds``, each of its kind; text fields plain, except those in ``exact`` (which the
    caller compares with what they must be)."""
    missing = [field for field in kinds if field not in data]
    extra = [field for field in data if field not in kinds]
    if missing or extra:
        parts = [f"lacks the field(s) {', '.join(missing)}"] if missing else []
        parts += [f"has unexpected field(s) {', '.join(map(repr, extra))}"] if extra else []
        raise _Bad(f"{path}: {' and '.join(parts)} (written by another version of the code?)")
    for field, kind in kinds.items():
        value = data[field]
        if not _json_type_ok(kind, value):
            allowed = _KIND_NAMES.get(kind.rstrip("?"), "a plain value") + (" or null" if kind.endswith("?") else "")
            raise _Bad(f"{path}: {field} is {value!r}, expected {allowed}")
        if kind == "str" and field not in exact and not PLAIN_TEXT.fullmatch(value):
            raise _Bad(f"{path}: {field} = {value!r} is not plain text (letters, digits and _ . : + -)")


# ---- CSV ---------------------------------------------------------------------------------------------------------


@cache
def _record_kinds(record: type) -> tuple[tuple[str, str], ...]:
    """(column, kind) of a CSV record (StepRecord, EvalRecord): a column is a field of the record, or an element
    of its tuple-valued field (StepRecord.group_norms -> grad_norm_*)."""
    hints = typing.get_type_hints(record)
    kinds, element = {}, "float"
    for field in dataclasses.fields(record):
        hint = hints[field.name]
        if typing.get_origin(hint) is tuple:
            element = _kind(typing.get_args(hint)[0])
        else:
            kinds[field.name] = _kind(hint)
    return tuple((column, kinds.get(column, element)) for column in record.COLUMNS)


@cache
def _probe_kinds() -> tuple[tuple[str, str], ...]:
    """(column, kind) of probes.csv, from the types of the values :func:`probe_rows` writes for a probe."""
    hints = typing.get_type_hints(ProbeResult)
    samples = {int: 1, float: 0.5, bool: True, np.ndarray: np.array([0.5])}
    dummy = ProbeResult(
        **{field.name: samples.get(hints[field.name], 0.5) for field in dataclasses.fields(ProbeResult)}
    )
    row = next(iter(probe_rows([dummy])))

    def kind(value: Any) -> str:
        if isinstance(value, bool | np.bool_):
            return "bool"
        return "int" if isinstance(value, int | np.integer) else "float"

    return tuple((column, kind(value)) for column, value in zip(PROBE_COLUMNS, row, strict=True))


_INTEGER = re.compile(r"-?\d{1,18}")


def _read_csv(path: Path, kinds: Sequence[tuple[str, str]], max_rows: int) -> pd.DataFrame:
    """A run CSV file as a typed frame: exact header, complete rows, typed cells, a final newline."""
    columns = [column for column, _ in kinds]
    raw = _read_bytes(path, (max_rows + 1) * (len(columns) * MAX_BYTES_PER_CELL + 1))
    if not raw:
        raise _Bad(f"{path}: the file is empty (not even the header)")
    newline = b"\n"
    if not raw.endswith(newline):
        line = raw.count(newline) + 1
        raise _Bad(f"{path}: line {line} is cut off (no newline at the end of the file): the file is truncated")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Bad(f"{path}: line {raw.count(newline, 0, err.start) + 1} is not UTF-8 text") from None
    lines = text.split("\n")[:-1]
    header = ",".join(columns)
    if lines[0] != header:
        raise _Bad(f"{path}: the header is {lines[0]!r}, expected {header!r}")
    # The files are written without quoting (numbers and True/False only), so a row is complete when it has one
    # comma fewer than it has columns; a blank line, a cut-off row or an extra field is caught here.
    commas = len(columns) - 1
    for number, line in enumerate(lines[1:], start=2):
        if line.count(",") != commas:
            raise _Bad(f"{path}: line {number} has {line.count(',') + 1} field(s), expected {len(columns)}")
    try:
        frame = _typed_frame(text, kinds)
    except (ValueError, OverflowError):  # some cell is not of its column's type: find it, slowly, to name it
        body = [line.split(",") for line in lines[1:]]
        values = list(zip(*body, strict=True)) if body else [() for _ in columns]
        for (column, kind), cells in zip(kinds, values, strict=True):
            _parse_column(path, column, kind, cells)
        raise _Bad(f"{path}: a value is not of its column's type") from None
    for column, kind in kinds:
        if kind == "bool":
            cells = frame[column]
            ok = cells.isin(["True", "False"]).to_numpy()
            if not ok.all():
                index = int(np.flatnonzero(~ok)[0])
                raise _Bad(f"{path}: line {index + 2}, column {column}: {cells.iloc[index]!r} is not True or False")
            frame[column] = (cells == "True").to_numpy()
    return frame


def _typed_frame(text: str, kinds: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The rows parsed by pandas' C reader with each column's type; ValueError (or OverflowError) when a cell does
    not parse. Booleans stay text here and are checked by the caller. Floats come back exactly as written (checked
    against Python's float() on 600,000 values of every magnitude)."""
    dtypes = {column: {"int": "int64", "bool": "object"}.get(kind, "float64") for column, kind in kinds}
    return pd.read_csv(
        io.StringIO(text),
        dtype=dtypes,
        na_values={column: [""] for column, kind in kinds if kind not in ("int", "bool")},
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
        skip_blank_lines=False,
        engine="c",
    )


def _parse_column(path: Path, column: str, kind: str, cells: Sequence[str]) -> np.ndarray:
    def bad(index: int, what: str) -> _Bad:
        return _Bad(f"{path}: line {index + 2}, column {column}: {cells[index]!r} is not {what}")

    if kind == "bool":
        array = np.asarray(cells, dtype=object)
        ok = (array == "True") | (array == "False")
        if not ok.all():
            raise bad(int(np.flatnonzero(~ok)[0]), "True or False")
        return array == "True"
    if kind == "int":
        for index, cell in enumerate(cells):
            if not _INTEGER.fullmatch(cell):
                raise bad(index, "an integer")
        return np.asarray([int(cell) for cell in cells], dtype=np.int64)
    for index, cell in enumerate(cells):
        if cell:  # empty is a missing value (NaN); anything else is a number, written out
            try:
                number = float(cell)
            except ValueError:
                raise bad(index, "a number (a missing value is an empty cell)") from None
            if math.isnan(number):
                raise bad(index, "a number (a missing value is an empty cell)")
    return np.asarray([float(cell) if cell else math.nan for cell in cells], dtype=np.float64)

"""Collecting run directories into the study tables (docs/architecture.md, "Study tables").

Each run directory (the parent of its ``summary.json``) contributes one row to ``accuracy.csv``, its training
steps to ``gradient_norms.csv`` and its gradient probes to ``gradient_flow.csv``; ``accuracy_summary.csv`` and
``decay_rates.csv`` are derived by :mod:`rnn_gradients.study.analysis`. The run keys ``task, seq_len, cell, strategy,
seed`` lead every per-run table, rows are sorted by them (then by step, probe step and t), booleans are written
``True``/``False`` and missing values as empty cells. Every file is written to a temporary file and renamed into
place, so a reader never sees half a table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rnn_gradients.engine.run_files import PROBE_COLUMNS, SUMMARY_FIELDS, EvalRecord, StepRecord
from rnn_gradients.files import atomic_open, atomic_write_text
from rnn_gradients.study.analysis import DECAY_COLUMNS, SUMMARY_COLUMNS, decay_rates, summarize_accuracy
from rnn_gradients.study.grid import GRID_KEYS, RUN_KEYS
from rnn_gradients.study.grid import strategies as grid_strategies
from rnn_gradients.study.run_reader import RunFiles, read_runs
from rnn_gradients.study.verdicts import verdict_settings

RESULT_FIELDS: tuple[str, ...] = tuple(field for field in SUMMARY_FIELDS if field not in RUN_KEYS)
"""The outcome fields of ``summary.json`` that ``accuracy.csv`` holds after the run keys."""
RUNTIME_COLUMNS: tuple[str, ...] = (
    "wall_time_s", "ms_per_step", "threads", "device", "torch_version", "cpu_model", "cpu_capability",
)  # fmt: skip
"""The ``runtime.json`` fields that ``accuracy.csv`` holds (the only columns that differ between reruns)."""
STEP_COLUMNS = StepRecord.COLUMNS
EVAL_COLUMNS: tuple[str, ...] = tuple(c for c in EvalRecord.COLUMNS if not c.startswith("test_"))
"""``evaluations.csv`` after the run keys: the validation set at every evaluation of ``evals.csv`` (the test set,
measured once, is in ``accuracy.csv``)."""
FLOW_COLUMNS: tuple[str, ...] = (*PROBE_COLUMNS[:2], "distance", *PROBE_COLUMNS[2:])
"""``gradient_flow.csv`` after the run keys: ``probes.csv`` with the distance L − t from the last input."""
# integer columns that may be missing (never solved, never diverged): nullable, so they print as 12, not 12.0
NULLABLE_INTEGERS: tuple[str, ...] = ("steps_to_solve", "diverged_step")
TABLE_FILES: tuple[str, ...] = (
    "accuracy.csv",
    "accuracy_summary.csv",
    "gradient_norms.csv",
    "gradient_flow.csv",
    "decay_rates.csv",
    "study_config.json",
    "evaluations.csv",
)

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "accuracy.csv": (*RUN_KEYS, *RESULT_FIELDS, *RUNTIME_COLUMNS),
    "accuracy_summary.csv": (*GRID_KEYS, *SUMMARY_COLUMNS),
    "gradient_norms.csv": (*RUN_KEYS, *STEP_COLUMNS),
    "gradient_flow.csv": (*RUN_KEYS, *FLOW_COLUMNS),
    "decay_rates.csv": (*RUN_KEYS, "probe_step", *DECAY_COLUMNS),
}
"""The header of every CSV table, as :func:`collect_tables` writes it (the report checks the tables it reads)."""


def collect_tables(summaries: Sequence[Path], out_dir: Path, study_config: str) -> None:
    """Write the study tables of the runs whose ``summary.json`` files are given into ``out_dir``.

    ``study_config`` is the validated study config as JSON text; it is written to ``study_config.json``.
    Every run file is read and checked first (:func:`rnn_gradients.study.run_reader.read_runs`): a damaged,
    stale or misplaced run file, two summaries of the same run or a run of the grid left out raise
    :class:`~rnn_gradients.study.run_reader.RunFileError` naming the files, before any table is written.
    """
    if not summaries:
        raise ValueError("no runs to collect: give at least one summary.json")
    try:
        config = json.loads(study_config)
    except json.JSONDecodeError as err:
        raise ValueError(f"--study-config is not valid JSON: {err}") from err
    checked = read_runs([Path(path) for path in summaries], config)
    runs = [_read_run(files) for files in checked]

    accuracy = _sorted(pd.DataFrame([row for row, _, _ in runs]), RUN_KEYS)
    repeated = accuracy.duplicated(list(RUN_KEYS), keep=False)
    if repeated.any():
        names = sorted({"/".join(map(str, key)) for key in accuracy.loc[repeated, list(RUN_KEYS)].itertuples(False)})
        raise ValueError(f"more than one summary.json for the run(s): {', '.join(names)}")
    for column in NULLABLE_INTEGERS:
        accuracy[column] = accuracy[column].astype("Int64")
    steps = _sorted(pd.concat([frame for _, frame, _ in runs], ignore_index=True), (*RUN_KEYS, "step"))
    flow = _sorted(pd.concat([frame for _, _, frame in runs], ignore_index=True), (*RUN_KEYS, "probe_step", "t"))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(accuracy, out_dir / "accuracy.csv")
    _write_csv(summarize_accuracy(accuracy, verdict_settings(config)[1]), out_dir / "accuracy_summary.csv")
    _write_csv(steps, out_dir / "gradient_norms.csv")
    _write_csv(flow, out_dir / "gradient_flow.csv")
    normalized = [name for name, strategy in grid_strategies(config).items() if strategy.norm != "none"]
    _write_csv(decay_rates(flow, normalized), out_dir / "decay_rates.csv")
    _write_csv(_evaluations(checked), out_dir / "evaluations.csv")
    atomic_write_text(out_dir / "study_config.json", json.dumps(config, indent=2) + "\n")  # config order kept
    listed = int(accuracy["seed"].isin(config["seeds"]).sum())
    extra = accuracy.loc[~accuracy["seed"].isin(config["seeds"]), list(RUN_KEYS[:-1])].drop_duplicates()
    print(
        f"collected {len(accuracy)} runs into {out_dir}: {', '.join(TABLE_FILES)}; {listed} of the listed seeds, "
        f"{len(accuracy) - listed} extra seed(s) in {len(extra)} combination(s) the listed seeds left uncertain"
    )


def _read_run(files: RunFiles) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """(accuracy row, steps with run keys, probes with run keys and ``distance``) of one checked run directory."""
    summary, runtime = files.summary, files.runtime
    keys = {key: summary[key] for key in RUN_KEYS}
    row = {**keys, **{f: summary[f] for f in RESULT_FIELDS}, **{f: runtime[f] for f in RUNTIME_COLUMNS}}

    steps = files.steps[list(STEP_COLUMNS)]
    probes = files.probes[list(PROBE_COLUMNS)]
    # t runs 1..L within a probe; distance L − t counts the steps back from the last input
    probes.insert(2, "distance", probes.groupby("probe_step")["t"].transform("max") - probes["t"])
    return row, _with_keys(steps, keys), _with_keys(probes[list(FLOW_COLUMNS)], keys)


def _evaluations(runs: Sequence[RunFiles]) -> pd.DataFrame:
    """``evaluations.csv``: every run's validation measurements with its run keys, sorted by run and step."""
    frames = [_with_keys(files.evals[list(EVAL_COLUMNS)], {k: files.summary[k] for k in RUN_KEYS}) for files in runs]
    return _sorted(pd.concat(frames, ignore_index=True), (*RUN_KEYS, "step"))


def _with_keys(frame: pd.DataFrame, keys: dict[str, Any]) -> pd.DataFrame:
    keyed = frame.copy()
    for position, (name, value) in enumerate(keys.items()):
        keyed.insert(position, name, value)
    return keyed


def _sorted(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    return frame.sort_values(list(by), kind="mergesort").reset_index(drop=True)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV written atomically (:func:`rnn_gradients.files.atomic_open`); floats in full precision."""
    with atomic_open(path, "w", newline="") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")

"""Study tables from small hand-made run directories (real files with the documented columns)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnn_gradients.cli import main
from rnn_gradients.engine.run_files import EvalRecord
from rnn_gradients.study.analysis import DECAY_COLUMNS, SUMMARY_COLUMNS
from rnn_gradients.study.config import load_study
from rnn_gradients.study.grid import GRID_KEYS, RUN_KEYS, RunKey, run_dir, run_spec
from rnn_gradients.study.run_reader import RunFileError
from rnn_gradients.study.tables import (
    EVAL_COLUMNS,
    FLOW_COLUMNS,
    PROBE_COLUMNS,
    RESULT_FIELDS,
    RUNTIME_COLUMNS,
    STEP_COLUMNS,
    TABLE_FILES,
    collect_tables,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
STUDY = load_study(
    {
        "tasks": {"adding": [4]},
        "cells": ["lstm", "rnn_tanh"],
        "strategies": {"none": {}},
        "seeds": [0, 1],
        "verdicts": {"max_seeds": 2},  # hand-written runs: no extra seeds
        "training": {"steps": 2, "eval_every": 2, "probe_every": 2, "solved_fraction": 0.15},
    },
    SCHEMA,
)


def _write_csv(path: Path, columns, rows) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def make_run(root: Path, cell: str, seed: int, *, rate: float, solved_at: int | None, diverged_at: int | None) -> Path:
    """A run directory as training.py writes it: adding, T = 4, two training steps (or fewer when it diverges),
    evaluations and probes at step 0 and at the last step."""
    key = RunKey("adding", 4, cell, "none", seed)
    run = root / run_dir(key)
    run.mkdir(parents=True)
    steps_run = 2 if diverged_at is None else diverged_at
    # consistent as training writes it: a solved run's test error is within the threshold 0.15 / 6 = 0.025
    value = (0.01 if solved_at is not None else 0.1) * (seed + 1)
    summary = {
        **key._asdict(),
        "metric": "mse",
        "value": value,
        "chance": 1 / 6,
        "error": value,
        "error_se": 0.001,
        "chance_error": 1 / 6,
        "loss": value,
        "chance_loss": 1 / 6,
        "train_error": 0.01,
        "train_error_se": 0.001,
        "solved": solved_at is not None,
        "solve_threshold": 0.15 / 6,
        "steps_to_solve": solved_at,
        "diverged": diverged_at is not None,
        "diverged_step": diverged_at,
        "steps_run": steps_run,
    }
    runtime = {
        "wall_time_s": 3.5,
        "setup_s": 0.5,
        "eval_s": 1.0,
        "probe_s": 0.5,
        "ms_per_step": 1.25,
        "threads": 1,
        "device": "cpu",
        "torch_version": "2.13.0+cpu",
        "python_version": "3.11.7",
        "cpu_model": "Intel(R) Xeon(R) Platinum 8488C",
        "cpu_capability": "AVX512",
        "libraries": "MKL 2024.2-Product, oneDNN v3.12.0",
        "numerics_settings": "",
        "compiled_kernels": "compiled (AVX512)",
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "runtime.json").write_text(json.dumps(runtime))
    (run / "config.json").write_text(json.dumps(run_spec(STUDY, key)))
    evals = [  # validation at every evaluation, the test set at the last one only
        [
            step,
            *([0.01] * 3 if step == solved_at else [0.1] * 3),
            *([value] * 3 if step == steps_run else [""] * 3),
            str(step == solved_at),
        ]
        for step in sorted({0, steps_run})
    ]
    _write_csv(run / "evals.csv", EvalRecord.COLUMNS, evals)
    steps = [
        [0, 0.40, 0.5, 0.5, "False", "True", 0.1, 0.2, 0.3, 0.3, 0.4, ""],
        [1, 0.30, 2.0, 1.0, "True", "True", 0.1, 0.2, 0.3, 0.3, 1.5, ""],
    ]
    if diverged_at is not None:
        steps[diverged_at] = [diverged_at, "inf", "", "", "False", "False", "", "", "", "", "", ""]
    _write_csv(run / "steps.csv", STEP_COLUMNS, steps[: steps_run + (diverged_at is not None)])
    probes = [
        [probe_step, t, 3.0 * math.exp(rate * (4 - t)), 0.2, 0.8, 1.1, 0.7, 0.6]
        for probe_step in sorted({0, steps_run})
        for t in range(1, 5)
    ]
    _write_csv(run / "probes.csv", PROBE_COLUMNS, probes)
    return run / "summary.json"


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    return [
        make_run(tmp_path, "rnn_tanh", 1, rate=-0.7, solved_at=None, diverged_at=None),
        make_run(tmp_path, "rnn_tanh", 0, rate=-0.7, solved_at=None, diverged_at=1),
        make_run(tmp_path, "lstm", 0, rate=-0.1, solved_at=2, diverged_at=None),
        make_run(tmp_path, "lstm", 1, rate=-0.1, solved_at=2, diverged_at=None),
    ]


def _read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name, keep_default_na=False, dtype=str)


def test_tables_have_the_documented_columns_and_one_row_per_run(runs, tmp_path):
    out = tmp_path / "results" / "tables"
    collect_tables(runs, out, json.dumps(STUDY))
    assert sorted(p.name for p in out.iterdir()) == sorted(TABLE_FILES)  # no temporary files left

    accuracy = _read(out, "accuracy.csv")
    assert list(accuracy.columns) == [*RUN_KEYS, *RESULT_FIELDS, *RUNTIME_COLUMNS]
    assert list(zip(accuracy["cell"], accuracy["seed"], strict=True)) == [
        ("lstm", "0"),
        ("lstm", "1"),
        ("rnn_tanh", "0"),
        ("rnn_tanh", "1"),
    ]
    assert list(accuracy["solved"]) == ["True", "True", "False", "False"]
    assert list(accuracy["steps_to_solve"]) == ["2", "2", "", ""]
    assert list(accuracy["diverged_step"]) == ["", "", "1", ""]
    assert list(accuracy["threads"]) == ["1"] * 4

    summary = _read(out, "accuracy_summary.csv")
    assert list(summary.columns) == [*GRID_KEYS, *SUMMARY_COLUMNS]
    assert list(summary["cell"]) == ["lstm", "rnn_tanh"]
    lstm, tanh = summary.iloc[0], summary.iloc[1]
    assert float(lstm["mean"]) == pytest.approx(0.015)
    assert float(lstm["std"]) == pytest.approx(np.std([0.01, 0.02], ddof=1))
    assert (tanh["n_seeds"], tanh["n_valued"], tanh["n_diverged"], tanh["diverged_rate"]) == ("2", "1", "1", "0.5")
    # seed 0 diverged: its metric is not a value of the strategy; seed 1's 0.2 is the only one
    assert float(tanh["mean"]) == pytest.approx(0.2)
    assert tanh["std"] == ""

    norms = _read(out, "gradient_norms.csv")
    assert list(norms.columns) == [*RUN_KEYS, *STEP_COLUMNS]
    assert len(norms) == 4 * 2  # the diverged run: one finite step, then the step it diverged at
    assert list(norms["step"][:2]) == ["0", "1"]
    assert list(norms.loc[norms["seed"].eq("0") & norms["cell"].eq("rnn_tanh"), "finite"]) == ["True", "False"]
    assert list(norms["clipped"][:2]) == ["False", "True"]
    assert list(norms["grad_norm_norm"][:2]) == ["", ""]

    flow = _read(out, "gradient_flow.csv")
    assert list(flow.columns) == [*RUN_KEYS, *FLOW_COLUMNS]
    assert len(flow) == 4 * 2 * 4
    first = flow.iloc[:4]
    assert list(first["probe_step"]) == ["0"] * 4
    assert list(first["t"]) == ["1", "2", "3", "4"]
    assert list(first["distance"]) == ["3", "2", "1", "0"]

    decay = pd.read_csv(out / "decay_rates.csv")
    assert list(decay.columns) == [*RUN_KEYS, "probe_step", *DECAY_COLUMNS]
    assert len(decay) == 4 * 2
    by_cell = decay.groupby("cell")
    assert by_cell["decay_per_step"].mean().to_dict() == pytest.approx({"lstm": -0.1, "rnn_tanh": -0.7})
    tanh, lstm = decay[decay["cell"] == "rnn_tanh"], decay[decay["cell"] == "lstm"]
    assert tanh["bound_decay"].to_numpy() == pytest.approx(math.log(1.0 * 1.1))  # γ = 1 for tanh
    assert tanh["meanfield_decay"].to_numpy() == pytest.approx(math.log(0.7 * 0.6))
    assert lstm["bound_decay"].isna().all() and lstm["meanfield_decay"].isna().all()
    assert (decay["n_points"] == 4).all()

    assert json.loads((out / "study_config.json").read_text()) == STUDY


def test_collect_through_the_command_line_is_deterministic(runs, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    config = json.dumps(STUDY)
    assert main(["collect", "--out-dir", str(first), "--study-config", config, *map(str, runs)]) == 0
    assert main(["collect", "--out-dir", str(second), "--study-config", config, *map(str, reversed(runs))]) == 0
    for name in TABLE_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_the_same_run_twice_is_an_error(runs, tmp_path):
    with pytest.raises(RunFileError, match=r"adding/4/lstm/none/0\): more than one summary.json for the run"):
        collect_tables([*runs, runs[2]], tmp_path / "out", json.dumps(STUDY))


def test_a_run_without_a_documented_column_is_named(runs, tmp_path):
    probes = runs[0].parent / "probes.csv"
    frame = pd.read_csv(probes).drop(columns="rms_dphi")
    frame.to_csv(probes, index=False)
    with pytest.raises(RunFileError, match=rf"{probes}: the header is .*, expected '{','.join(PROBE_COLUMNS)}'"):
        collect_tables(runs, tmp_path / "out", json.dumps(STUDY))
    assert not (tmp_path / "out").exists()


def test_a_bad_study_config_is_refused(runs, tmp_path):
    with pytest.raises(ValueError, match="--study-config is not valid JSON"):
        collect_tables(runs, tmp_path / "out", "{tasks: adding}")
    with pytest.raises(ValueError, match="--study-config is not a validated study config"):
        collect_tables(runs, tmp_path / "out", "{}")


def test_evaluations_hold_every_runs_validation_curve(runs, tmp_path):
    out = tmp_path / "tables"
    collect_tables(runs, out, json.dumps(STUDY))
    evaluations = _read(out, "evaluations.csv")
    assert list(evaluations.columns) == [*RUN_KEYS, *EVAL_COLUMNS]
    assert EVAL_COLUMNS == ("step", "val_loss", "val_metric", "val_error", "solved")
    for summary in runs:
        run = summary.parent
        evals = _read(run, "evals.csv")
        mine = evaluations[(evaluations["cell"] == run.parts[-3]) & (evaluations["seed"] == run.name[4:])]
        assert list(mine["step"]) == list(evals["step"]) and list(mine["val_error"]) == list(evals["val_error"])

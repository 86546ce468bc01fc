"""Hostile but fair input, round 2 (issue 19): outcomes edited by hand, datasets out of range, damaged tables,
files where run directories belong, interrupted commands, a control limited to some cells.

As in round 1 (tests/test_hostile_input.py): every case goes through the real command line (a subprocess, or its
entry point in this process where the case only reads files) or the real ``snakemake``, on run directories,
datasets and tables the real pipeline wrote. Each checks that the failure is one line naming the file, key or
value and what to do, without a traceback, and that nothing is left half-written.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_hostile_input import cli, collect, error_lines, refused, small_spec, tiny
from workflow_runner import ENV, ROOT, new_study
from workflow_runner import run_snakemake as snakemake

from rnn_gradients.engine.run_spec import MAX_SEED
from rnn_gradients.study.grid import RunKey, run_dir

# A study with a control limited to one cell (issue 19, item 3), on a regression task and a classification
# task: 8 runs of 6 steps, built once by the real pipeline.
LIMITED = {
    "tasks": {"adding": [6], "first_symbol": [6]},
    "cells": ["rnn_tanh", "rnn_relu", "lstm"],
    "strategies": {"none": {"cells": ["lstm"]}, "clip": {"clip_norm": 1.0}},
    "seeds": [0],
    "data": {"train_size": 64, "val_size": 32, "test_size": 32},
    "training": {"steps": 6, "batch_size": 16, "hidden_size": 4, "eval_every": 3, "probe_every": 3,
                 "probe_batch": 8, "early_stop": False, "device": "cpu"},
}  # fmt: skip
ADDING = RunKey("adding", 6, "rnn_tanh", "clip", 0)
FIRST = RunKey("first_symbol", 6, "rnn_relu", "clip", 0)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = new_study(tmp_path_factory.mktemp("limited"), LIMITED)
    result = snakemake(workdir, "tables")
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir


@pytest.fixture()
def runs(built: Path, tmp_path: Path) -> Path:
    """A copy of the built study's run directories and study config, to edit."""
    copy = tmp_path / "study"
    shutil.copytree(built / "results" / "runs", copy / "results" / "runs")
    shutil.copy(built / "results" / "tables" / "study_config.json", copy / "study_config.json")
    return copy


@pytest.fixture()
def tables(built: Path, tmp_path: Path) -> Path:
    """A copy of the built study's tables, to damage."""
    return Path(shutil.copytree(built / "results" / "tables", tmp_path / "tables"))


def render(tables: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli("render", "--qmd", str(ROOT / "report" / "report.qmd"), "--tables", str(tables), "--out", str(out),
               "--engine", "offline", *extra)  # fmt: skip


def page_text(path: Path) -> str:
    """The words of a rendered page, without its markup."""
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


# ---- item 3: a control limited to some cells --------------------------------------------------------------------


def test_a_control_limited_to_some_cells_invents_no_divergence(built, tmp_path):
    out = tmp_path / "report.html"
    result = render(built / "results" / "tables", out)
    assert result.returncode == 0, result.stderr
    text = page_text(out)
    assert not pd.read_csv(built / "results" / "tables" / "accuracy.csv")["diverged"].any()  # no run diverged ...
    assert "diverged, so there is no metric" not in text  # ... so the report says none did
    assert "of each task: ." not in text and "of each task: \n" not in text
    assert "beside the vanilla cells" not in text  # the control trained lstm only
    assert "The control none is trained for lstm only, so the activations of rnn_tanh and rnn_relu" in text
    assert "Figure 5 shows lstm under the control none." in text.replace("\xa0", " ")


# ---- sizes that do not fit together ----------------------------------------------------------------------------


def test_a_batch_larger_than_the_training_set_is_refused_before_any_job(tmp_path):
    config = tiny()
    config["training"]["batch_size"] = 1000
    workdir = new_study(tmp_path, config)
    lines = refused(snakemake(workdir, "-n"), workdir, "training.batch_size: 1,000 sequences, more than")
    assert lines[-1].endswith("data.train_size = 256 holds; lower batch_size or raise train_size"), lines


def test_the_largest_seed_a_study_accepts_is_generated_and_trained(tmp_path):
    """Seeds at the edge of what the files hold: the schema's maximum (2^63 − 1, a signed 64-bit integer in the
    dataset file and the tables) trains; one more is refused (it used to pass the schema and crash in generate)."""
    data = tmp_path / "edge.npz"
    sizes = ["--train-size", "64", "--val-size", "32", "--test-size", "32"]
    too_large = cli("generate", "--task", "adding", "--seq-len", "6", "--seed", str(MAX_SEED + 1), *sizes,
                    "--out", str(data))  # fmt: skip
    assert too_large.returncode == 2 and "Traceback" not in too_large.stderr, too_large.stderr
    assert f"argument --seed: {MAX_SEED + 1} is above the maximum {MAX_SEED}" in too_large.stderr
    assert not data.exists()
    made = cli("generate", "--task", "adding", "--seq-len", "6", "--seed", str(MAX_SEED), *sizes, "--out", str(data))
    assert made.returncode == 0, made.stderr
    out = tmp_path / f"seed{MAX_SEED}"
    result = cli("train", "--specs", small_spec(seed=MAX_SEED), "--data", str(data), "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "summary.json").read_text())["seed"] == MAX_SEED


# ---- item 4 and the next ones: outcomes edited by hand ----------------------------------------------------------


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2))


def edit_csv(path: Path, line: int, column: str, value: str) -> None:
    """Set one cell of a run CSV file (``line`` counts from 1, the header)."""
    lines = path.read_text().split("\n")
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines))


def summary_of(runs: Path, key: RunKey) -> dict:
    return json.loads((runs / run_dir(key) / "summary.json").read_text())


def scaled_outcome(runs: Path, key: RunKey) -> dict:
    """value and error (an MSE: the same number) half again as large: consistent in summary.json alone."""
    error = summary_of(runs, key)["error"] * 1.5
    return {"value": error, "error": error}


EDITS: dict[str, tuple[RunKey, str, Callable[[Path], None], str]] = {
    "value -1": (ADDING, "summary.json", lambda p: edit_json(p, value=-1.0), "value is -1.0, below 0"),
    "error -1": (ADDING, "summary.json", lambda p: edit_json(p, error=-1.0), "error is -1.0, below 0"),
    "error within the threshold, solved false": (
        ADDING, "summary.json", lambda p: edit_json(p, value=0.001, error=0.001),
        "solved is False, but the test error 0.001 is within solve_threshold 0.01666",
    ),
    "solved true, error above the threshold": (
        ADDING, "summary.json", lambda p: edit_json(p, solved=True),
        "solved is True, but the test error",
    ),
    "value not the metric of error": (
        FIRST, "summary.json", lambda p: edit_json(p, value=0.99),
        "value 0.99 is not the accuracy of error",
    ),
    "steps_to_solve -5": (ADDING, "summary.json", lambda p: edit_json(p, steps_to_solve=-5),
                          "steps_to_solve is -5, below 0"),
    "steps_to_solve 999": (
        ADDING, "summary.json", lambda p: edit_json(p, steps_to_solve=999),
        "steps_to_solve = 999 is after the run's last step, steps_run = 6",
    ),
    "chance edited": (
        ADDING, "summary.json", lambda p: edit_json(p, chance=0.5),
        "chance is 0.5, but task 'adding' at T = 6 with solved_fraction 0.1 gives 0.1666",
    ),
    "solve_threshold edited": (
        ADDING, "summary.json", lambda p: edit_json(p, solve_threshold=10.0),
        "solve_threshold is 10.0, but task 'adding' at T = 6 with solved_fraction 0.1 gives 0.01666",
    ),
    "accuracy above 1": (
        FIRST, "summary.json", lambda p: edit_json(p, train_error=1.5),
        "train_error is 1.5, but a share of sequences is at most 1",
    ),
    "negative wall_time_s": (ADDING, "runtime.json", lambda p: edit_json(p, wall_time_s=-3.0),
                             "wall_time_s is -3.0, below 0"),
    "threads 0": (ADDING, "runtime.json", lambda p: edit_json(p, threads=0), "threads is 0, below 1"),
    "negative grad_norm_h": (
        ADDING, "probes.csv", lambda p: edit_csv(p, 2, "grad_norm_h", "-0.5"),
        "line 2, column grad_norm_h: -0.5 is negative, which no run writes",
    ),
    "negative loss in steps.csv": (
        ADDING, "steps.csv", lambda p: edit_csv(p, 3, "loss", "-1.0"), "line 3, column loss: -1.0 is negative",
    ),
    "evals flagged solved far above the threshold": (
        ADDING, "evals.csv", lambda p: edit_csv(p, 2, "solved", "True"),
        "line 2: solved is True, but val_error",
    ),
    "validation accuracy above 1": (
        FIRST, "evals.csv", lambda p: edit_csv(p, 2, "val_metric", "1.5"),
        "line 2, column val_metric: 1.5 is more than 1",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", EDITS, ids=list(EDITS))
def test_hand_edited_outcomes_are_refused_naming_the_file_and_field(runs, case):
    key, name, edit, message = EDITS[case]
    edit(runs / run_dir(key) / name)
    lines = error_lines(collect(runs))
    assert lines[0].startswith(f"error: {run_dir(key)}/{name}: "), lines
    assert message in lines[0], lines
    assert lines[-1].endswith(f"rm -r {run_dir(key)}"), lines
    assert not (runs / "tables").exists()


def test_a_value_that_differs_from_the_final_evaluation_is_refused(runs):
    edit_json(runs / run_dir(ADDING) / "summary.json", **scaled_outcome(runs, ADDING))
    lines = error_lines(collect(runs))
    assert lines[0].startswith(f"error: {run_dir(ADDING)}/evals.csv: line 4: the final test_metric is "), lines
    assert "but summary.json says value = " in lines[0], lines


def test_the_real_runs_pass_every_new_check(runs):
    result = collect(runs)
    assert result.returncode == 0, result.stderr


# ---- item 5: dataset values out of range ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def order_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("order") / "temporal_order.npz"
    result = cli("generate", "--task", "temporal_order", "--seq-len", "10", "--seed", "0", "--train-size", "64",
                 "--val-size", "32", "--test-size", "32", "--out", str(path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return path


def rewritten(source: Path, target: Path, array: str, index: tuple[int, ...], value: float) -> Path:
    """A copy of a dataset file, well formed (keys, dtypes, shapes), with one value changed."""
    with np.load(source) as npz:
        contents = {key: npz[key].copy() for key in npz.files}
    contents[array][index] = value
    with open(target, "wb") as handle:
        np.savez_compressed(handle, **contents)
    return target


DATA_CASES = {
    "symbol 250": ("temporal_order", "train/symbols", (0, 0), 250, "train/symbols holds 250 at sequence 0, "
                   "position 0, outside 0..5 (what task 'temporal_order' generates)"),
    "label 200": ("temporal_order", "test/labels", (3,), 200, "test/labels holds 200 at sequence 3, outside 0..3 "
                  "(what task 'temporal_order' generates)"),
    "NaN value": ("adding", "train/values", (1, 2), np.nan, "train/values holds nan at sequence 1, position 2, "
                  "outside 0..1 (what task 'adding' generates)"),
    "position past the end": ("adding", "val/positions", (0, 1), 99, "val/positions holds 99 at sequence 0, "
                              "position 1, outside 0..5 (what task 'adding' generates)"),
}  # fmt: skip


@pytest.mark.parametrize("case", DATA_CASES, ids=list(DATA_CASES))
def test_dataset_values_out_of_range_are_refused_before_training(case, order_data, tmp_path):
    task, array, index, value, message = DATA_CASES[case]
    source = order_data if task == "temporal_order" else adding_data(tmp_path)
    bad = rewritten(source, tmp_path / "bad.npz", array, index, value)
    spec = small_spec(task=task, seq_len=10) if task == "temporal_order" else small_spec()
    out = tmp_path / "runs" / "seed0"
    lines = error_lines(cli("train", "--specs", spec, "--data", str(bad), "--out-dir", str(out)))
    assert lines == [f"error: {bad}: {message}; delete it and rerun snakemake, which generates it again"], lines
    assert not out.exists() and not any((tmp_path / "runs").glob(".tmp-*"))


def adding_data(tmp_path: Path) -> Path:
    path = tmp_path / "adding.npz"
    result = cli("generate", "--task", "adding", "--seq-len", "6", "--seed", "0", "--train-size", "64",
                 "--val-size", "32", "--test-size", "32", "--out", str(path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return path


# ---- item 6: damaged tables -------------------------------------------------------------------------------------


def header_only(path: Path) -> None:
    path.write_text(path.read_text().split("\n", 1)[0] + "\n")


def drop_column(path: Path, column: str) -> None:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    index = rows[0].index(column)
    path.write_text("\n".join(",".join(row[:index] + row[index + 1 :]) for row in rows) + "\n")


def add_column(path: Path, name: str, value: str) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join([f"{lines[0]},{name}", *(f"{line},{value}" for line in lines[1:])]) + "\n")


TABLE_CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "header-only accuracy": ("accuracy.csv", header_only, "holds no rows (only the header)"),
    "header-only gradient_flow": ("gradient_flow.csv", header_only, "holds no rows (only the header)"),
    "dropped column": ("accuracy.csv", lambda p: drop_column(p, "chance"), "lacks the column(s) chance"),
    "extra text column": ("decay_rates.csv", lambda p: add_column(p, "note", "hello"),
                          "has unexpected column(s) note"),
    "text in a number column": ("accuracy.csv", lambda p: edit_csv(p, 3, "value", "hello"),
                                "line 3, column value: 'hello' is not a number"),
    "missing table": ("gradient_norms.csv", lambda p: p.unlink(), "no such file"),
    "study config not JSON": ("study_config.json", lambda p: p.write_text("{tasks: "), "not valid JSON"),
}  # fmt: skip


@pytest.mark.parametrize("case", TABLE_CASES, ids=list(TABLE_CASES))
def test_damaged_tables_stop_the_render_with_the_file_and_column(tables, tmp_path, case):
    name, damage, message = TABLE_CASES[case]
    damage(tables / name)
    out = tmp_path / "report.html"
    lines = error_lines(render(tables, out))
    assert len(lines) == 1 and lines[0].startswith(f"error: {tables / name}"), lines
    assert message in lines[0] and lines[0].endswith("delete them and run `snakemake`, which collects them again")
    assert not out.exists() and list(tmp_path.glob(".tmp-*")) == []


# ---- item 7: a file or a dangling symlink where a run directory belongs -----------------------------------------


@pytest.mark.parametrize("kind", ["file", "dangling symlink"])
def test_something_where_a_run_directory_belongs_is_refused_before_training(dataset_path, tmp_path, kind):
    out = tmp_path / "runs" / "seed0"
    out.parent.mkdir()
    if kind == "file":
        out.write_text("not a run")
        expected = f"error: {out}: a file where a run directory belongs; remove it (rm {out}) and run again"
    else:
        out.symlink_to(tmp_path / "elsewhere")
        expected = f"error: {out}: a symbolic link (to {tmp_path / 'elsewhere'}) where a run directory belongs"
    result = cli("train", "--specs", small_spec(), "--data", str(dataset_path), "--out-dir", str(out))
    lines = error_lines(result)
    assert lines[0].startswith(expected), lines
    assert "step" not in result.stdout  # refused before training
    assert sorted(p.name for p in out.parent.iterdir()) == ["seed0"]  # no .tmp-seed0-* left


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return adding_data(tmp_path_factory.mktemp("adding"))


def test_a_file_where_a_run_directory_belongs_stops_snakemake_before_any_job(tmp_path):
    workdir = new_study(tmp_path, tiny())
    run = workdir / run_dir(RunKey("adding", 6, "lstm", "none", 0))
    run.parent.mkdir(parents=True)
    run.symlink_to(workdir / "gone")
    result = snakemake(workdir, "-n")
    assert result.returncode == 1, result.stdout[-3000:]
    assert "Traceback" not in result.stdout and "NotADirectoryError" not in result.stdout
    assert f"error: {run_dir(RunKey('adding', 6, 'lstm', 'none', 0))}: a symbolic link" in result.stdout


# ---- item 8: interrupted commands, render's paths, strict booleans ----------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float = 120) -> None:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.02)


def loaded(pid: int, library: str) -> bool:
    """Whether process ``pid`` has mapped a shared library whose name contains ``library``."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def start_in_a_terminal(args: list[str]) -> subprocess.Popen:
    """``python -m rnn_gradients ARGS`` in its own process group with Ctrl-C's default disposition, as a command
    typed at a terminal starts: where pytest itself runs in a background job of a shell without job control,
    SIGINT is ignored and every child would inherit that (and rightly ignore Ctrl-C)."""
    return subprocess.Popen([sys.executable, "-m", "rnn_gradients", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


def interrupted(args: list[str], ready: Callable[[subprocess.Popen], bool]) -> subprocess.CompletedProcess:
    """Start ``python -m rnn_gradients ARGS`` in its own process group, press Ctrl-C (SIGINT to the group, as a
    terminal does) once ``ready``, and wait for it to end."""
    process = start_in_a_terminal(args)
    try:
        wait_for(lambda: ready(process) or process.poll() is not None)
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def assert_interrupted(result: subprocess.CompletedProcess, command: str) -> None:
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: python -m rnn_gradients {command} was interrupted (Ctrl-C)")
    ), result.stderr


def test_ctrl_c_while_torch_is_imported_is_one_line(dataset_path, tmp_path):
    out = tmp_path / "runs" / "seed0"
    args = ["train", "--specs", small_spec(), "--data", str(dataset_path), "--out-dir", str(out)]
    result = interrupted(args, lambda process: loaded(process.pid, "libtorch"))
    assert_interrupted(result, "train")
    assert not out.exists()


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8])
def test_ctrl_c_at_any_moment_of_training_is_one_line_or_comes_after_the_end(dataset_path, tmp_path, delay):
    """Ctrl-C from the moment torch starts loading through the run (numpy's and torch's imports, training):
    status 130 and the one line, never a traceback of a half-imported numpy, a Ctrl-C lost inside torch's import,
    or "killed by SIGINT"; status 0 only where the command had already printed its result."""
    out = tmp_path / "runs" / "seed0"
    args = ["train", "--specs", small_spec(), "--data", str(dataset_path), "--out-dir", str(out)]
    process = start_in_a_terminal(args)
    try:
        wait_for(lambda: loaded(process.pid, "libtorch") or process.poll() is not None)
        time.sleep(delay)
        finished = bool(select.select([process.stdout], [], [], 0)[0])  # its result line is already out
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    result = subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
    if finished:  # done before the Ctrl-C, or interrupted on its way out
        assert result.returncode in (0, 130) and out.exists() and "Traceback" not in stderr, stderr
    else:
        assert_interrupted(result, "train")
        assert not out.exists()


def test_ctrl_c_while_rendering_is_one_line_and_no_report(built, tmp_path):
    out = tmp_path / "report.html"
    args = ["render", "--qmd", str(ROOT / "report" / "report.qmd"), "--tables", str(built / "results" / "tables"),
            "--out", str(out), "--engine", "offline"]  # fmt: skip

    def kernel_started(process: subprocess.Popen) -> bool:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        return children.exists() and bool(children.read_text().split())

    result = interrupted(args, kernel_started)
    assert_interrupted(result, "render")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_render_into_a_path_below_a_file_names_the_file(tables, tmp_path):
    blocker = tmp_path / "README.md"
    blocker.write_text("a file")
    lines = error_lines(render(tables, blocker / "r.html"))
    assert lines == [
        f"error: {blocker}: a file where a directory belongs above {blocker / 'r.html'}; move it away or choose "
        "another path"
    ]


def test_render_onto_a_directory_is_refused(tables, tmp_path):
    lines = error_lines(render(tables, tmp_path))
    assert lines == [f"error: {tmp_path}: a directory where the output file belongs; choose another path or remove it"]


def test_a_missing_tables_directory_is_named(tmp_path):
    missing = tmp_path / "no-tables"
    lines = error_lines(render(missing, tmp_path / "r.html"))
    assert lines == [
        f"error: {missing}: no such directory of study tables (what `collect` writes: results/tables); check the path"
    ]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("early_stop", "no", "run spec: early_stop must be true or false, got 'no'"),
        ("early_stop", 1, "run spec: early_stop must be true or false, got 1"),
        ("steps", True, "run spec: steps must be an integer, got True"),
        ("learning_rate", "0.01", "run spec: learning_rate must be a number, got '0.01'"),
        ("strategy_params", [], "run spec: strategy_params must be a JSON object, got []"),
        ("seed", -1, "run spec: seed must be in 0..9223372036854775807, got -1"),
    ],
)
def test_run_spec_values_of_the_wrong_type_are_refused(dataset_path, tmp_path, field, value, expected):
    out = tmp_path / "seed0"
    spec = small_spec(**{field: value})
    lines = error_lines(cli("train", "--specs", spec, "--data", str(dataset_path), "--out-dir", str(out)))
    assert lines == [f"error: {expected}"]
    assert not out.exists()


def test_a_copied_checkout_names_the_report_inputs_relative_to_itself(tmp_path):
    """A study run in its checkout names the report's source by a path inside it, so a copied or moved checkout
    has the same inputs (an absolute path would differ, and Snakemake would render the report again)."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("Snakefile", "workflow", "report"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, checkout / name)
    new_study(checkout, tiny())
    command = [str(Path(sys.executable).parent / "snakemake"), "--cores", "1", "-n", "-p", "results/report/report.html"]
    result = subprocess.run(command, cwd=checkout, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "--qmd report/report.qmd " in result.stdout, result.stdout[-3000:]
    assert str(checkout / "report") not in result.stdout

"""Hostile but fair input (issue 12): malformed configs, damaged run files, full disks, absurd sizes.

Every case goes through the real command line (`python -m rnn_gradients`, a subprocess) or the real `snakemake`
(dry runs where validation is the point: the study is checked when the Snakefile is parsed), with real YAML and
real run directories written by the real training loop. Each case checks that the failure is one readable
message naming the file, key or value and what to do, without a traceback, and that nothing is left
half-written.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fixtures_tables import write_study_tables
from workflow_runner import ENV, ROOT, TINY, new_study
from workflow_runner import run_snakemake as snakemake

from rnn_gradients.cli import main
from rnn_gradients.engine.run_files import RUN_FILES, StepRecord
from rnn_gradients.study.grid import RUN_DIR, RunKey, expand_runs, run_dir
from rnn_gradients.study.tables import TABLE_FILES

# ---- running the real tools -------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path | None = None, fsize: int | None = None) -> subprocess.CompletedProcess:
    """``python -m rnn_gradients ARGS`` in a subprocess; with ``fsize``, files may grow to that many bytes only."""

    def limit_file_size() -> None:  # a full disk without root: writes past the limit fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "rnn_gradients", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=limit_file_size if fsize is not None else None,
    )


def tiny() -> dict:
    return yaml.safe_load(TINY.read_text())


def refused(result: subprocess.CompletedProcess, workdir: Path, *expected: str) -> list[str]:
    """The dry run stopped before any job with readable problem lines containing ``expected``; the lines."""
    output = result.stdout
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "Exception" not in output, output[-3000:]
    assert not (workdir / "results").exists()
    lines = [line for line in output.splitlines() if not line.startswith(("Using workflow", "Config file "))]
    assert "invalid study config" in lines[0], output[-3000:]
    for text in expected:
        assert any(text in line for line in lines), f"{text!r} not in:\n{output[-3000:]}"
    return lines


def planned(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stdout[-3000:]
    return [
        line.split()[1].rstrip(":")
        for line in map(str.strip, result.stdout.splitlines())
        if line.startswith(("rule ", "localrule "))
    ]


def training_jobs(result: subprocess.CompletedProcess) -> list[str]:
    """The planned training jobs (rules train_<task>_T<T>_<cell>: one per task, T and cell by default)."""
    return [job for job in planned(result) if job.startswith("train_")]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The command failed the expected way: exit status 2, ``error:`` lines, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    return lines


# ---- issue 3: values that pass JSON Schema and fail later -------------------------------------------------------


BAD_VALUES = {
    "hidden_size 4.0": (
        lambda c: c["training"].update(hidden_size=4.0),
        "training.hidden_size: 4.0 is a number with a decimal point, expected an integer; write 4",
    ),
    "steps 6.0": (
        lambda c: c["training"].update(steps=6.0),
        "training.steps: 6.0 is a number with a decimal point, expected an integer; write 6",
    ),
    "learning_rate .nan": (
        lambda c: c["training"].update(learning_rate={"default": float("nan")}),
        "training.learning_rate.default: nan is not a finite number; expected a number",
    ),
    "clip_norm .inf": (
        lambda c: c["strategies"].update(clip_norm={"clip_norm": float("inf")}),
        "strategies.clip_norm.clip_norm: inf is not a finite number; expected a number or null",
    ),
    "seeds [0.0]": (lambda c: c.update(seeds=[0.0]), "seeds[0]: 0.0 is a number with a decimal point"),
    "T [10.0]": (
        lambda c: c["tasks"].update(temporal_order=[10.0]),
        "tasks.temporal_order[0]: 10.0 is a number with a decimal point, expected an integer; write 10",
    ),
    "hidden_size 1.0e12": (
        lambda c: c["training"].update(hidden_size=1.0e12),
        "training.hidden_size: 1000000000000.0 is a number with a decimal point, expected an integer",
    ),
    "hidden_size 10^12": (
        lambda c: c["training"].update(hidden_size=10**12),
        "training.hidden_size: 1,000,000,000,000 hidden units need about",
    ),
}


@pytest.mark.parametrize("case", BAD_VALUES, ids=list(BAD_VALUES))
def test_values_that_used_to_fail_after_data_generation_stop_the_dry_run(tmp_path, case):
    mutate, message = BAD_VALUES[case]
    config = tiny()
    mutate(config)
    workdir = new_study(tmp_path, config)
    lines = refused(snakemake(workdir, "-n"), workdir, message)
    # one line per problem, naming the file and line the value was written on
    problem = next(line for line in lines if message in line)
    assert problem.startswith("  - config/config.yaml:"), problem


def test_non_finite_numbers_written_as_yaml_are_refused(tmp_path):
    text = TINY.read_text().replace("learning_rate: {default: 0.01}", "learning_rate: {default: .nan}")
    workdir = new_study(tmp_path, text)
    refused(snakemake(workdir, "-n"), workdir, "config/config.yaml:17: training.learning_rate.default: nan is not a")


# ---- issue 4: --config overrides --------------------------------------------------------------------------------


def test_config_overrides_are_parsed_as_yaml(tmp_path):
    workdir = new_study(tmp_path, tiny())
    result = snakemake(workdir, "-n", "--config", "training={steps: 5}", "seeds=[0,1]")
    jobs = planned(result)
    assert jobs.count("generate") == 6  # three datasets per seed
    assert len(training_jobs(result)) == 6  # one per task, T and cell (3 x 2), for its 2 strategies and 2 seeds
    assert '\\"steps\\":5,' in result.stdout or '"steps":5,' in result.stdout  # the run spec asks for 5 steps
    # the other training keys of the config file are kept (Snakemake merges --config into the file)
    assert '"hidden_size":8,' in result.stdout.replace('\\"', '"')


def test_a_bad_override_names_config_and_gives_a_consistent_hint(tmp_path):
    workdir = new_study(tmp_path, tiny())
    lines = refused(
        snakemake(workdir, "-n", "--config", "training={steps: 5.0}"),
        workdir,
        "--config: training.steps: 5.0 is a number with a decimal point, expected an integer; write 5",
    )
    assert lines[0] == "config/config.yaml, --config: invalid study config (1 problem):"
    assert not any("write it with a dot" in line for line in lines)


def test_an_override_that_is_not_yaml_names_the_entry(tmp_path):
    workdir = new_study(tmp_path, tiny())
    refused(snakemake(workdir, "-n", "--config", "seeds=[0, 1"), workdir, "--config seeds=[0, 1:1:")


# ---- issue 6 and 7: names and duplicate keys --------------------------------------------------------------------


def test_a_strategy_name_with_a_trailing_newline_is_refused(tmp_path):
    text = TINY.read_text().replace("  none: {}\n", '  "none\\n": {}\n')
    workdir = new_study(tmp_path, text)
    refused(snakemake(workdir, "-n"), workdir, "strategies['none\\n']: name 'none\\n' must match ^[a-z][a-z0-9_]*$")


def test_duplicate_keys_are_refused_naming_the_key_and_both_lines(tmp_path):
    text = TINY.read_text().replace(
        "  clip_norm: {clip_norm: 1.0}\n", "  clip_norm: {clip_norm: 1.0}\n  clip_norm: {clip_norm: 0.5}\n"
    )
    workdir = new_study(tmp_path, text)
    refused(
        snakemake(workdir, "-n"),
        workdir,
        "config/config.yaml:9: strategies.clip_norm: duplicate key 'clip_norm': it is also set at line 8",
    )


# ---- issue 8: size guard ----------------------------------------------------------------------------------------


def test_an_absurd_length_is_refused_before_any_job_with_the_reason(tmp_path):
    config = tiny()
    config["tasks"]["temporal_order"] = [10, 1_000_000]
    workdir = new_study(tmp_path, config)
    lines = refused(snakemake(workdir, "-n"), workdir, "tasks.temporal_order[1]: a training job at temporal_order T")
    memory = next(line for line in lines if "a training job" in line)
    assert "more than limits.max_job_memory_mb = 8,000" in memory and "data " in memory and "activations " in memory


def test_ten_thousand_seeds_are_refused_in_seconds(tmp_path):
    config = tiny()
    config["seeds"] = list(range(10_000))
    workdir = new_study(tmp_path, config)
    started = time.monotonic()
    result = snakemake(workdir, "-n", timeout=120)
    refused(result, workdir, "the study has 120,000 runs", "more than limits.max_runs = 10,000", "seeds")
    assert time.monotonic() - started < 60


def test_a_limit_can_be_raised_deliberately(tmp_path):
    config = tiny()
    config["limits"] = {"max_runs": 11}
    workdir = new_study(tmp_path, config)
    refused(snakemake(workdir, "-n"), workdir, "the study has 12 runs", "raise limits.max_runs if you mean it")
    assert len(training_jobs(snakemake(workdir, "-n", "--config", "limits={max_runs: 12}"))) == 6


# ---- issue 9: YAML errors and full disks ------------------------------------------------------------------------


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    text = TINY.read_text().replace("cells: [rnn_tanh, lstm]", "cells: [rnn_tanh, lstm")
    workdir = new_study(tmp_path, text)
    refused(snakemake(workdir, "-n"), workdir, "config/config.yaml:6:11: YAML syntax error: expected ',' or ']'")


def test_check_config_names_the_line_of_a_configfile_snakemake_refuses_without_one(tmp_path):
    bad = tmp_path / "my_study.yaml"
    bad.write_text("tasks:\n\tadding: [10]\n")
    lines = error_lines(cli("check-config", str(bad), cwd=ROOT))
    assert f"{bad}:2:1: YAML syntax error: found character '\\t'" in lines[1]
    assert "indent with spaces, not tabs" in lines[1]
    ok = cli("check-config", str(TINY), "--config", "seeds=[0,1]", cwd=ROOT)
    assert ok.returncode == 0 and "a valid study of 24 runs" in ok.stdout, ok.stderr


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[tuple[Path, int | None]]:
    """A directory with no room: a 16 kB tmpfs where this user may mount one (root in a container), else an
    ordinary directory with the writer's file size limited to 4 kB (RLIMIT_FSIZE). Yields (directory, fsize)."""
    mount = tmp_path / "full"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True)
    try:
        yield mount, (None if mounted.returncode == 0 else 4096)
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(mount)], check=True)


def assert_disk_full(result: subprocess.CompletedProcess, output: Path) -> None:
    lines = error_lines(result)
    assert lines[0].startswith(f"error: writing {output}: "), lines
    assert ("No space left on device" in lines[0] and "free disk space" in lines[0]) or "File too large" in lines[0]
    assert "nothing half-written was left behind" in lines[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "adding.npz"
    result = cli("generate", "--task", "adding", "--seq-len", "6", "--seed", "0", "--train-size", "64",
                 "--val-size", "32", "--test-size", "32", "--out", str(path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return path


def small_spec(**changes: object) -> str:
    spec = {"task": "adding", "seq_len": 6, "cell": "rnn_tanh", "strategy": "none", "strategy_params": {}, "seed": 0,
            "train_size": 64, "val_size": 32, "test_size": 32, "hidden_size": 4, "batch_size": 16, "steps": 4,
            "eval_every": 2, "probe_every": 2, "probe_batch": 8, "device": "cpu"}  # fmt: skip
    return json.dumps({**spec, **changes})


def test_a_full_disk_in_training_is_one_error_line_and_no_run(full_disk, dataset):
    directory, fsize = full_disk
    out = directory / "runs" / "seed0"
    assert_disk_full(
        cli("train", "--specs", small_spec(), "--data", str(dataset), "--out-dir", str(out), fsize=fsize), out
    )
    assert not out.exists()
    assert [p for p in (directory / "runs").iterdir()] == []  # no temporary directory left


def test_a_full_disk_in_data_generation_is_one_error_line_and_no_file(full_disk):
    directory, fsize = full_disk
    out = directory / "adding.npz"
    args = ("generate", "--task", "adding", "--seq-len", "200", "--seed", "0", "--train-size", "500",
            "--val-size", "50", "--test-size", "50", "--out", str(out))  # fmt: skip
    assert_disk_full(cli(*args, fsize=fsize), out)
    assert list(directory.iterdir()) == []


def test_a_full_disk_in_rendering_is_one_error_line_and_no_report(full_disk, tmp_path):
    directory, fsize = full_disk
    tables = tmp_path / "tables"
    write_study_tables(tables)
    out = directory / "report.html"
    result = cli("render", "--qmd", str(ROOT / "report" / "report.qmd"), "--tables", str(tables), "--out", str(out),
                 "--engine", "offline", fsize=fsize)  # fmt: skip
    if fsize is not None and result.returncode != 2:
        pytest.skip("with RLIMIT_FSIZE the renderer's own temporary files fail first")
    assert_disk_full(result, out)
    assert list(directory.iterdir()) == []


# ---- issue 2 and 5, and damaged run files: real runs from the real training loop ---------------------------------


BUILT = {
    "tasks": {"adding": [6]},
    "cells": ["rnn_relu"],
    # `boom` makes the ReLU RNN overflow in its first forward pass: a run that diverges at step 0
    "strategies": {"none": {}, "boom": {"init": "scaled", "spectral_norm": 1.0e30}},
    "seeds": [0, 1],
    "data": {"train_size": 64, "test_size": 32},
    "training": {"steps": 7, "batch_size": 16, "hidden_size": 4, "eval_every": 3, "probe_every": 3,
                 "probe_batch": 8, "early_stop": False, "device": "cpu"},
}  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small study built by the real pipeline: 4 runs (two of them diverge at step 0) and their tables."""
    workdir = new_study(tmp_path_factory.mktemp("built"), BUILT)
    result = snakemake(workdir, "tables")
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir


@pytest.fixture()
def runs(built: Path, tmp_path: Path) -> Path:
    """A copy of the built study's run directories and study config, to damage."""
    copy = tmp_path / "study"
    shutil.copytree(built / "results" / "runs", copy / "results" / "runs")
    shutil.copy(built / "results" / "tables" / "study_config.json", copy / "study_config.json")
    return copy


def study_of(runs: Path) -> dict:
    return json.loads((runs / "study_config.json").read_text())


def collect(runs: Path, *summaries: str) -> subprocess.CompletedProcess:
    """``collect`` as Snakemake runs it (from the study directory, relative paths), through the command line's
    entry point in this process: the many damaged-file cases would otherwise spend most of their time importing
    torch. An exception the command line does not turn into an error line fails the test like a traceback."""
    study = study_of(runs)
    paths = summaries or tuple(f"{run_dir(key)}/summary.json" for key in expand_runs(study))
    args = ["collect", "--out-dir", "tables", "--study-config", json.dumps(study), *paths]
    stdout, stderr = io.StringIO(), io.StringIO()
    here = Path.cwd()
    try:
        os.chdir(runs)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = main(args)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, status, stdout.getvalue(), stderr.getvalue())


NONE_0 = RunKey("adding", 6, "rnn_relu", "none", 0)
BOOM_1 = RunKey("adding", 6, "rnn_relu", "boom", 1)


def damaged(runs: Path, key: RunKey, name: str, *expected: str) -> list[str]:
    """collect refused the study: it named the file and the run directory to delete, and wrote no table."""
    result = collect(runs)
    lines = error_lines(result)
    path = f"{run_dir(key)}/{name}"
    assert lines[0].startswith(f"error: {path}: "), lines
    for text in expected:
        assert text in lines[0], lines
    assert lines[-1].endswith(f"rm -r {run_dir(key)}"), lines
    assert not (runs / "tables").exists()
    return lines


def test_the_real_runs_are_read_and_a_diverged_run_is_consistent(runs, built):
    summary = json.loads((runs / run_dir(BOOM_1) / "summary.json").read_text())
    assert (summary["diverged"], summary["diverged_step"], summary["steps_run"]) == (True, 0, 0)
    result = collect(runs)
    assert result.returncode == 0, result.stderr
    for name in TABLE_FILES:
        assert (runs / "tables" / name).read_bytes() == (built / "results" / "tables" / name).read_bytes(), name


def cut(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def test_a_steps_csv_cut_mid_row_is_refused(runs):
    steps = runs / run_dir(NONE_0) / "steps.csv"
    cut(steps, len(steps.read_bytes()) - 10)
    damaged(runs, NONE_0, "steps.csv", "is cut off (no newline at the end of the file): the file is truncated")


def test_a_header_only_steps_csv_is_refused(runs):
    steps = runs / run_dir(NONE_0) / "steps.csv"
    steps.write_text(",".join(StepRecord.COLUMNS) + "\n")
    damaged(runs, NONE_0, "steps.csv", "0 steps, but summary.json says 7 (steps_run = 7)")


def test_an_empty_steps_csv_is_named(runs):
    (runs / run_dir(NONE_0) / "steps.csv").write_bytes(b"")
    damaged(runs, NONE_0, "steps.csv", "the file is empty")


def test_a_diverged_run_without_its_diverged_step_is_refused(runs):
    steps = runs / run_dir(BOOM_1) / "steps.csv"
    steps.write_text(steps.read_text().splitlines()[0] + "\n")
    damaged(runs, BOOM_1, "steps.csv", "0 steps, but summary.json says 1 (steps_run = 0 plus the step it diverged at)")


def test_a_truncated_run_file_stops_snakemake_at_collect_with_no_partial_table(built, tmp_path):
    workdir = tmp_path / "study"
    shutil.copytree(built, workdir, ignore=shutil.ignore_patterns(".snakemake"))
    before = {name: (workdir / "results" / "tables" / name).read_bytes() for name in TABLE_FILES}
    steps = workdir / run_dir(NONE_0) / "steps.csv"
    cut(steps, len(steps.read_bytes()) - 10)
    result = snakemake(workdir, "tables")
    assert result.returncode != 0, result.stdout[-3000:]
    assert f"error: {run_dir(NONE_0)}/steps.csv: line " in result.stdout  # the failed job's log is shown
    # Snakemake removes the outputs of the failed job; whatever is left is a whole table from before
    tables = workdir / "results" / "tables"
    left = {path.name: path.read_bytes() for path in tables.iterdir()} if tables.exists() else {}
    assert all(name in before and data == before[name] for name, data in left.items()), sorted(left)


@pytest.mark.parametrize("field", ["strategy", "cell"])
def test_a_summary_that_disagrees_with_its_directory_is_refused(runs, field):
    summary = runs / run_dir(NONE_0) / "summary.json"
    data = json.loads(summary.read_text())
    data[field] = '<img src=x onerror=alert(1)><a href="javascript:alert(2)">x</a>'
    summary.write_text(json.dumps(data))
    damaged(runs, NONE_0, "summary.json", f"names {field} '<img src=x", "does not belong to this run")


def test_a_config_json_of_another_run_is_refused(runs):
    other = (runs / run_dir(BOOM_1) / "config.json").read_text()
    (runs / run_dir(NONE_0) / "config.json").write_text(other)
    damaged(runs, NONE_0, "config.json", "the run was not trained as the study config asks (strategy is 'boom'")


# ---- the next ten: found by fault injection ---------------------------------------------------------------------


def test_a_stale_run_trained_under_another_config_is_refused(runs):
    config = runs / run_dir(NONE_0) / "config.json"
    spec = json.loads(config.read_text())
    spec["learning_rate"] = 0.5
    config.write_text(json.dumps(spec))
    damaged(runs, NONE_0, "config.json", "learning_rate is 0.5, the study asks 0.002", "stale or edited")


def edit_line(text: str, index: int, change) -> str:
    lines = text.splitlines()
    lines[index] = change(lines[index])
    return "\n".join(lines) + "\n"


MALFORMED_RUN_FILES = {
    "blank line inside steps.csv": ("steps.csv", lambda t: edit_line(t, 2, lambda _: "\n"), "line 3 has 1 field(s)"),
    "extra field in a row": ("steps.csv", lambda t: edit_line(t, 1, lambda row: row + ",9"), "line 2 has 13 field(s)"),
    "text in a numeric column": (
        "steps.csv",
        lambda t: edit_line(t, 1, lambda row: "0,abc," + row.split(",", 2)[2]),
        "line 2, column loss: 'abc' is not a number",
    ),
    "word in a boolean column": ("evals.csv", lambda t: t.replace(",False\n", ",no\n", 1), "is not True or False"),
    "probe with a missing time step": (
        "probes.csv",
        lambda t: "\n".join(line for i, line in enumerate(t.splitlines()) if i != 3) + "\n",
        "rows, but every probe has one row per time step t = 1..6",
    ),
    "evaluations stop early": (
        "evals.csv",
        lambda t: "\n".join(t.splitlines()[:-1]) + "\n",
        "evaluations must run from step 0 to steps_run = 7",
    ),
    "duplicate JSON key": (
        "summary.json",
        lambda t: t.replace('"strategy": "none"', '"strategy": "none", "strategy": "none"'),
        "the key(s) 'strategy' appear more than once",
    ),
    "NaN literal in JSON": ("summary.json", lambda t: t.replace('"chance": ', '"chance": NaN, "x": '), "not strict"),
    "JSON cut off": ("summary.json", lambda t: t[: len(t) // 2], "not valid JSON"),
    "JSON list": ("runtime.json", lambda t: "[]", "holds list, not a JSON object"),
    "markup in runtime.json": (
        "runtime.json",
        lambda t: t.replace('"device": "cpu"', '"device": "<script>alert(1)</script>"'),
        "device = '<script>alert(1)</script>' is not plain text",
    ),
    "field of another version": (
        "runtime.json",
        lambda t: t.replace('"threads"', '"gpu_name": "x", "threads"'),
        "has unexpected field(s) 'gpu_name'",
    ),
    "not UTF-8": ("probes.csv", lambda t: t[:-1] + "\udcff\n", "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", MALFORMED_RUN_FILES, ids=list(MALFORMED_RUN_FILES))
def test_malformed_run_files_are_named(runs, case):
    name, damage, message = MALFORMED_RUN_FILES[case]
    path = runs / run_dir(NONE_0) / name
    path.write_bytes(damage(path.read_text()).encode("utf-8", "surrogateescape"))
    damaged(runs, NONE_0, name, message)


def test_a_run_file_that_is_not_a_regular_file_is_named(runs):
    probes = runs / run_dir(NONE_0) / "probes.csv"
    probes.unlink()
    probes.symlink_to("/dev/zero")
    damaged(runs, NONE_0, "probes.csv", "is not a regular file")


def test_a_summary_outside_the_grid_and_a_missing_run_are_refused(runs):
    study = study_of(runs)
    keys = expand_runs(study)
    stray = runs / RUN_DIR.format(task="adding", seq_len=6, cell="rnn_relu", strategy="gone", seed=0)
    shutil.copytree(runs / run_dir(keys[0]), stray)
    lines = error_lines(collect(runs, *(f"{run_dir(key)}/summary.json" for key in keys), f"{stray}/summary.json"))
    assert any(f"{stray}/summary.json: not the summary.json of a run of this study" in line for line in lines)
    lines = error_lines(collect(runs, *(f"{run_dir(key)}/summary.json" for key in keys[1:])))
    assert f"1 run(s) of the study are not among the files to collect: {run_dir(keys[0])}" in lines[0]


def test_a_bad_run_spec_or_thread_count_is_an_error_line(dataset, tmp_path):
    out = str(tmp_path / "run")
    for spec, message in [
        ("[]", "--specs: a run spec is a JSON object of its fields (or a non-empty list of them)"),
        ('{"task": "adding"}', "--specs: the run spec is missing 5 required fields: 'seq_len'"),
        ("{task: adding}", "--specs: not valid JSON"),
    ]:
        lines = error_lines(cli("train", "--specs", spec, "--data", str(dataset), "--out-dir", out))
        assert message in lines[0], lines
    threads = cli("train", "--specs", small_spec(), "--data", str(dataset), "--out-dir", out, "--threads", "0")
    assert threads.returncode == 2 and "argument --threads: 0 is below the minimum 1" in threads.stderr
    assert not Path(out).exists()


def test_a_damaged_dataset_is_named_with_what_to_do(dataset, tmp_path):
    cut_copy = tmp_path / "seed0.npz"
    cut_copy.write_bytes(dataset.read_bytes()[:200])
    lines = error_lines(
        cli("train", "--specs", small_spec(), "--data", str(cut_copy), "--out-dir", str(tmp_path / "run"))
    )
    assert lines[0].startswith(f"error: {cut_copy} is not a readable dataset .npz file"), lines
    assert lines[0].endswith("delete it and rerun snakemake, which generates it again")
    assert not (tmp_path / "run").exists()


def test_a_training_job_that_runs_out_of_memory_is_an_error_line(dataset, tmp_path):
    spec = small_spec(hidden_size=2_000_000)  # 4 * 2e6^2 floats: far beyond any machine
    lines = error_lines(cli("train", "--specs", spec, "--data", str(dataset), "--out-dir", str(tmp_path / "run")))
    assert "ran out of memory" in lines[0] and "limits.max_job_memory_mb" in lines[0], lines
    assert not (tmp_path / "run").exists()


# "billion laughs": nine lines that expand to 10^9 seeds when every alias is followed
ALIAS_BOMB = (
    "seeds:\n  - &a [0,0,0,0,0,0,0,0,0,0]\n"
    + "".join(
        f"  - &{name} [{','.join([f'*{previous}'] * 10)}]\n"
        for previous, name in zip("abcdefg", "bcdefgh", strict=True)
    )
    + "  - ["
    + ",".join(["*h"] * 10)
    + "]"
)

NEXT_CONFIGS = {
    "key read as a boolean": (
        lambda t: t.replace("  none: {}\n", "  none: {}\n  on: {}\n"),
        "config/config.yaml:8: strategies: YAML reads the key on as a boolean, not as a name; write it in quotes",
    ),
    "key read as a date": (
        lambda t: t.replace("  none: {}\n", "  none: {}\n  2024-01-01: {}\n"),
        "YAML reads the key 2024-01-01 as a date, not as a name",
    ),
    "alias bomb": (lambda t: t.replace("seeds: [0]", ALIAS_BOMB), "the config expands to more than 1,000,000 values"),
    "seed beyond a 64-bit integer": (
        lambda t: t.replace("seeds: [0]", "seeds: [9223372036854775808]"),
        "seeds[0]: 9223372036854775808 is above the maximum 9223372036854775807",
    ),
    "strategy name too long for a directory": (
        lambda t: t.replace("  none: {}\n", "  none: {}\n  s" + "0123456789" * 30 + ": {}\n"),
        "is longer than 64 characters",
    ),
    "empty config": (lambda t: "", "config/config.yaml: the config is empty"),
    "config that is a list": (lambda t: "- adding\n", "config/config.yaml: the config is a list, not a mapping"),
    "config that is not UTF-8": (lambda t: t + "# caf\udce9\n", "config/config.yaml:24: byte 0xe9 is not UTF-8 text"),
}


@pytest.mark.parametrize("case", NEXT_CONFIGS, ids=list(NEXT_CONFIGS))
def test_configs_that_used_to_crash_or_hang_are_refused_quickly(tmp_path, case):
    damage, message = NEXT_CONFIGS[case]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_bytes(damage(TINY.read_text()).encode("utf-8", "surrogateescape"))
    started = time.monotonic()
    refused(snakemake(tmp_path, "-n", timeout=120), tmp_path, message)
    assert time.monotonic() - started < 60


def test_a_json_configfile_reads_numbers_as_json_does(tmp_path):
    config = tiny()
    config["training"]["learning_rate"] = {"default": 0.001}
    text = json.dumps(config).replace("0.001", "1e-3")  # JSON's number; YAML 1.1 would read text
    (tmp_path / "study.json").write_text(text)
    workdir = new_study(tmp_path, tiny())
    result = snakemake(workdir, "-n", "--configfile", str(tmp_path / "study.json"))
    assert len(training_jobs(result)) == 6
    assert '"learning_rate":0.001' in result.stdout.replace('\\"', '"')


def test_collecting_a_huge_study_is_refused_by_its_memory_estimate(tmp_path):
    config = tiny()
    config.update(tasks={"copy": [1000]}, seeds=list(range(200)))
    config["training"].update(steps=20_000, probe_every=100)
    workdir = new_study(tmp_path, config)
    refused(snakemake(workdir, "-n"), workdir, "collecting the study's 800 runs into its tables needs about")


def test_every_file_of_a_valid_run_directory_is_read(runs):
    """The reader checks all of RUN_FILES: removing any one of them is named."""
    for name in RUN_FILES:
        copy = runs.parent / f"without-{name}"
        shutil.copytree(runs, copy)
        (copy / run_dir(NONE_0) / name).unlink()
        damaged(copy, NONE_0, name, "does not exist")

"""How the study's runs are split into training jobs (``jobs.training``), and one process training several
combinations (``train --max-seeds`` with the runs of more than one combination)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_runner import TINY, new_study
from workflow_runner import run_snakemake as snakemake

from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.study.config import load_study
from rnn_gradients.study.grid import (
    CELL_DIR,
    COMBINATION_DIR,
    DATA_FILE,
    RUN_DIR,
    Combination,
    RunKey,
    combination_runs,
    estimated_minutes,
    expand_combinations,
    relative_cost,
    run_spec,
    training_jobs,
)
from rnn_gradients.study.limits import training_command_bytes
from rnn_gradients.study.sequential import split_combinations

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture()
def study() -> dict:
    return load_study(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), SCHEMA)


def test_the_default_is_one_job_per_task_length_and_cell(study: dict) -> None:
    assert study["jobs"] == {"training": "cell"}
    jobs = training_jobs(study)
    assert len(jobs) == 20  # 2 tasks × 2 lengths × 5 cells
    # every combination exactly once, and in config order
    assert [c for job in jobs for c in job.combinations] == expand_combinations(study)
    by_name = {job.name: job for job in jobs}
    assert len(by_name) == len(jobs)
    lstm = by_name["train_adding_T60_lstm"]
    assert lstm.path == CELL_DIR.format(task="adding", seq_len=60, cell="lstm") == "results/runs/adding/T60/lstm"
    # the gated cells train only the control and the scaled initialization (config.yaml: `cells:` of the others)
    assert [c.strategy for c in lstm.combinations] == ["none", "exploding", "exploding_clip"]
    assert len(by_name["train_adding_T60_rnn_tanh"].combinations) == 8
    assert [c.strategy for c in by_name["train_adding_T10_gru"].combinations] == ["none"]


def test_the_combination_layout_is_one_job_per_combination(study: dict) -> None:
    jobs = training_jobs({**study, "jobs": {"training": "combination"}})
    assert [job.combinations for job in jobs] == [(c,) for c in expand_combinations(study)]
    assert len({job.name for job in jobs}) == len(jobs) == 70
    first = jobs[0]
    assert first.name == "train_adding_T10_rnn_tanh_none"
    assert first.path == COMBINATION_DIR.format(**first.combinations[0]._asdict())


def test_a_jobs_cost_and_time_limit_add_up_over_its_combinations(study: dict) -> None:
    tanh, lstm, gru = (Combination("adding", 60, cell, "none") for cell in ("rnn_tanh", "lstm", "gru"))
    # a step's FLOPs scale with the cell's gate blocks: 4 for the LSTM, 3 for the GRU, 1 for a vanilla cell
    assert relative_cost([lstm]) == 4 * relative_cost([tanh])
    assert relative_cost([gru]) == 3 * relative_cost([tanh])
    assert relative_cost([tanh, lstm]) == relative_cost([tanh]) + relative_cost([lstm])
    longer = Combination("adding", 120, "rnn_tanh", "none")
    assert relative_cost([longer]) > relative_cost([tanh])
    # ten minutes of slack once per job, the budget of every combination's seeds on top
    one, two = estimated_minutes(study, [tanh]), estimated_minutes(study, [tanh, lstm])
    assert two - 10 == pytest.approx(2 * (one - 10), abs=1)


def _runs(study: dict, combinations: list[Combination]) -> tuple[list[RunSpec], list[Path], list[Path]]:
    keys = [key for combination in combinations for key in combination_runs(study, combination)]
    specs = [RunSpec.from_dict(run_spec(study, key)) for key in keys]
    return (
        specs,
        [Path(DATA_FILE.format(**k._asdict())) for k in keys],
        [Path(RUN_DIR.format(**k._asdict())) for k in keys],
    )


def test_split_combinations_groups_the_runs_and_fills_each_pattern(study: dict) -> None:
    combinations = [Combination("adding", 60, "lstm", s) for s in ("none", "exploding")]
    specs, data, out = _runs(study, combinations)
    split = split_combinations(specs, data, out, DATA_FILE, RUN_DIR)
    assert [label for label, _ in split] == ["adding T=60 lstm none", "adding T=60 lstm exploding"]
    for (_, runs), combination in zip(split, combinations, strict=True):
        assert [s.strategy for s in runs.specs] == [combination.strategy] * len(study["seeds"])
        assert [s.seed for s in runs.specs] == study["seeds"]
        assert runs.out_dirs == [
            Path(RUN_DIR.format(**RunKey(*combination, seed)._asdict())) for seed in study["seeds"]
        ]
        assert runs.data_pattern == "results/data/adding/T60/seed{seed}.npz"
        assert runs.run_dir_pattern == f"results/runs/adding/T60/lstm/{combination.strategy}/seed{{seed}}"


@pytest.mark.parametrize(
    ("data_pattern", "out_pattern", "message"),
    [
        (
            DATA_FILE,
            "runs/{task}/T{seq_len}/{cell}/seed{seed}",
            "--out-pattern 'runs/{task}/T{seq_len}/{cell}/"
            "seed{seed}' is the same for several combinations (adding T=60 lstm none and adding T=60 lstm exploding: "
            "'runs/adding/T60/lstm/seed{seed}'): it needs {task}, {seq_len}, {cell}, {strategy}",
        ),
        (DATA_FILE, RUN_DIR.replace("{seed}", "0"), "--out-pattern"),
        (DATA_FILE, RUN_DIR + "/{sed}", "unknown field {sed} (allowed: {task}, {seq_len}, {cell}, {strategy}, {seed})"),
        ("data/{seed", RUN_DIR, "train --data-pattern 'data/{seed'"),
    ],
)
def test_split_combinations_rejects_a_pattern_that_cannot_place_every_run(
    study: dict, data_pattern: str, out_pattern: str, message: str
) -> None:
    specs, data, out = _runs(study, [Combination("adding", 60, "lstm", s) for s in ("none", "exploding")])
    with pytest.raises(ValueError) as error:
        split_combinations(specs, data, out, data_pattern, out_pattern)
    assert message in str(error.value)


def test_a_data_pattern_shared_by_two_lengths_is_rejected(study: dict) -> None:
    specs, data, out = _runs(study, [Combination("adding", t, "rnn_tanh", "none") for t in (10, 60)])
    with pytest.raises(ValueError, match=r"--data-pattern 'data/seed\{seed\}.npz' is the same for several"):
        split_combinations(specs, data, out, "data/seed{seed}.npz", RUN_DIR)
    with pytest.raises(ValueError, match="6 specs, 5 --data files and 6 --out-dir directories"):
        split_combinations(specs, data[:-1], out, DATA_FILE, RUN_DIR)


def test_the_cli_names_the_bad_pattern_and_trains_nothing(study: dict, tmp_path: Path) -> None:
    specs, data, out = _runs(study, [Combination("adding", 10, "rnn_tanh", s) for s in ("none",)])
    specs2, data2, out2 = _runs(study, [Combination("adding", 10, "lstm", "none")])
    spec_json = json.dumps([spec.to_dict() for spec in specs + specs2])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnn_gradients",
            "train",
            "--specs",
            spec_json,
            "--data",
            *map(str, data + data2),
            "--out-dir",
            *map(str, out + out2),
            "--max-seeds",
            "4",
            "--data-pattern",
            DATA_FILE,
            "--out-pattern",
            "runs/seed{seed}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "--out-pattern 'runs/seed{seed}' is the same for several combinations" in result.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_the_command_length_estimate_bounds_every_real_training_command(tmp_path: Path) -> None:
    """The limit on a job's command (rnn_gradients.study.limits) is checked against an estimate: it must be at
    least each command Snakemake would run, and close to it (four seeds of two strategies per job)."""
    seeded = {**yaml.safe_load(TINY.read_text()), "seeds": [0, 1, 2, 3]}
    workdir = new_study(tmp_path, seeded)
    dry = snakemake(workdir, "-n", "tables")
    assert dry.returncode == 0, dry.stdout[-3000:]
    commands = re.findall(r"^\s*rule (train_\w+):$.*?^\s*Shell command: (.*?)$", dry.stdout, re.M | re.S)
    study = load_study(seeded, SCHEMA)
    estimates = {job.name: training_command_bytes(study, job) for job in training_jobs(study)}
    assert sorted(name for name, _ in commands) == sorted(estimates)
    for name, command in commands:
        # the estimate is the runs' part, a little generous, and 1,000 bytes for the rest of the command
        assert estimates[name] - 1000 <= len(command.encode()) <= estimates[name], name

"""The tiny study on a live SLURM cluster, through workflow/profiles/slurm (about three minutes).

Runs where `sinfo` reaches a cluster and the `slurm` extra (snakemake-executor-plugin-slurm) is installed, and
skips otherwise, except under CI (CI=true): .ci/run starts a one-node cluster, so a missing one fails there.
The working directories are temporary directories of this machine: the cluster must share them (a one-node
cluster does).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_runner import PROFILES, TINY, new_study, run_snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TIMING_COLUMNS = ["wall_time_s", "ms_per_step"]
# a training job (a task, T and cell: its strategies and seeds train in one job), as Snakemake announces it
TRAIN_JOB = re.compile(r"^\s*rule (train_\w+):$", re.M)


def cluster_problem() -> str | None:
    """Why the SLURM test cannot run here, or None."""
    if shutil.which("sinfo") is None:
        return "no SLURM client here (sinfo is not on the PATH)"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -c constraints.txt -e '.[slurm]')"
    result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return f"sinfo reaches no SLURM cluster: {result.stderr.strip()}"
    if not {"idle", "mix", "alloc"} & set(result.stdout.split()):
        return f"no SLURM node is up (sinfo: {' '.join(result.stdout.split())})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = cluster_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the SLURM test, but {problem}")
    if problem:
        pytest.skip(problem)


def snakemake(workdir: Path, profile: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The tiny study's workflow through a profile; the core count is the caller's (a cluster has its own)."""
    return run_snakemake(workdir, *args, profile=profile, cores=None, timeout=timeout)


def grid(config: dict) -> set[tuple[str, ...]]:
    """Every run of a config, as (task, T, cell, strategy, seed) strings."""
    return {
        (task, str(seq_len), cell, strategy, str(seed))
        for task, lengths in config["tasks"].items()
        for seq_len, cell, strategy, seed in itertools.product(
            lengths, config["cells"], config["strategies"], config["seeds"]
        )
    }


def training_jobs(config: dict) -> set[str]:
    """The rule name of every training job of a config (jobs.training: cell, the default: one per task, T, cell)."""
    return {f"train_{task}_T{seq_len}_{cell}" for task, seq_len, cell, *_ in grid(config)}


def run_path(workdir: Path, run: tuple[str, ...]) -> Path:
    task, seq_len, cell, strategy, seed = run
    return workdir / "results" / "runs" / task / f"T{seq_len}" / cell / strategy / f"seed{seed}"


def jobs_per_cluster_job() -> int:
    return int(dict(item.split("=") for item in _profile("slurm")["group-components"])["train"])


@pytest.fixture(scope="module")
def local_run(cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = new_study(tmp_path_factory.mktemp("local"), TINY)
    result = snakemake(workdir, "default", "--cores", "2", "tables")
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = new_study(tmp_path_factory.mktemp("slurm"), TINY)
    # the profile as a user runs it; only the first status check comes sooner than its 40 s default
    result = snakemake(workdir, "slurm", "--jobs", "4", "--slurm-init-seconds-before-status-checks", "2", "tables")
    (workdir / "snakemake.log").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir


def test_every_training_run_went_through_slurm_in_grouped_jobs(slurm_run):
    config = yaml.safe_load(TINY.read_text())
    logs = sorted((slurm_run / ".snakemake" / "slurm_logs").glob("group_train_*/*.log"))
    trained = {log.stem: TRAIN_JOB.findall(log.read_text()) for log in logs}
    assert {job for jobs in trained.values() for job in jobs} == training_jobs(config)
    assert sum(len(jobs) for jobs in trained.values()) == len(training_jobs(config))  # each in one cluster job
    assert len(trained) == math.ceil(len(training_jobs(config)) / jobs_per_cluster_job())

    states = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i %T"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    state = dict(line.split() for line in states.splitlines())
    assert {job: state.get(job) for job in trained} == dict.fromkeys(trained, "COMPLETED")
    for run in grid(config):
        assert json.loads((run_path(slurm_run, run) / "summary.json").read_text())["steps_run"] == 40


def test_the_tables_equal_a_local_runs(slurm_run, local_run):
    cluster_tables, local_tables = slurm_run / "results" / "tables", local_run / "results" / "tables"
    names = sorted(path.name for path in local_tables.iterdir())
    assert "accuracy.csv" in names
    assert sorted(path.name for path in cluster_tables.iterdir()) == names
    for name in names:
        if name.endswith(".json"):
            assert json.loads((cluster_tables / name).read_text()) == json.loads((local_tables / name).read_text())
            continue
        cluster, local = pd.read_csv(cluster_tables / name), pd.read_csv(local_tables / name)
        if name == "accuracy.csv":
            cluster, local = cluster.drop(columns=TIMING_COLUMNS), local.drop(columns=TIMING_COLUMNS)
        pd.testing.assert_frame_equal(cluster, local, check_exact=True, obj=name)


def test_a_new_seed_and_strategy_train_only_their_own_runs_on_the_cluster(slurm_run, local_run):
    config_file = slurm_run / "config" / "config.yaml"
    original = config_file.read_text()
    config = yaml.safe_load(original)
    grown = yaml.safe_load(original)
    grown["seeds"].append(1)
    grown["strategies"]["clip_value"] = {"clip_value": 1.0}
    old_runs, new_runs = grid(config), grid(grown) - grid(config)
    runtimes = {run: (run_path(slurm_run, run) / "runtime.json").read_bytes() for run in old_runs}
    config_file.write_text(yaml.safe_dump(grown))
    try:
        result = snakemake(
            slurm_run, "slurm", "--jobs", "4", "--slurm-init-seconds-before-status-checks", "2", "tables"
        )
    finally:
        config_file.write_text(original)
    assert result.returncode == 0, result.stdout[-5000:]
    # every training job ran on the cluster (its seeds and strategies changed), grouped ...
    planned = set(TRAIN_JOB.findall(result.stdout))
    assert planned == training_jobs(grown)
    assert 0 < result.stdout.count("Group job train ") <= math.ceil(len(planned) / jobs_per_cluster_job())
    # ... but only the new runs were trained: every existing run directory is exactly as it was
    assert {run: (run_path(slurm_run, run) / "runtime.json").read_bytes() for run in old_runs} == runtimes
    assert all((run_path(slurm_run, run) / "summary.json").is_file() for run in new_runs)


def _profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())

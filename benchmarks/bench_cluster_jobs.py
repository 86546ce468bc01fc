"""Grouped cluster jobs: the share of each SLURM job's wall time spent training, measured on a live cluster.

    python benchmarks/bench_cluster_jobs.py [--study tiny|medium|CONFIG] [--per-cluster-job 4] [--jobs 4]

Runs a study's `tables` target through workflow/profiles/slurm in a fresh temporary directory (needs the `slurm`
extra and a cluster that `sinfo` reaches), then, for every training job that SLURM ran:

- its wall time: StartTime to EndTime from `scontrol show job` (whole seconds; SLURM keeps finished jobs for
  MinJobAge, so this runs right after the workflow; `sacct` needs an accounting database);
- its training jobs: the `rule train_...:` lines in its log, .snakemake/slurm_logs/group_train_<jobs>/<id>.log
  (a training job is one process: every strategy and seed of one task, T and cell by default, or the seeds of one
  combination under `jobs: {training: combination}`: rnn_gradients.study.grid.training_jobs);
- their training time: each run's `runtime.json` `wall_time_s` (the training loop with its evaluations and
  probes) and, wider, each training job's benchmark `s` (the whole `python -m rnn_gradients train` process);

and prints the share training / (cores × wall time) per job and over all jobs. The rest of a job's time is
Snakemake: its start-up at the sbatch level, then one `srun` and one Snakemake start per training job.

Studies: `tiny` is tests/configs/tiny.yaml (12 runs of 40 steps, under a second of training each); `medium` is
12 combinations × 3 seeds of 1,000 steps at T = 100 (10-30 s each, the default study's order of magnitude), one
training job per combination as a cluster study has them (`jobs: {training: combination}`, config/extended.yaml);
or a config file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from rnn_gradients.study.config import load_study
from rnn_gradients.study.grid import COMBINATION_DIR, TrainingJob, training_jobs

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MEDIUM = {
    "tasks": {"adding": [100], "temporal_order": [100]},
    "cells": ["rnn_tanh", "lstm", "gru"],
    "strategies": {"none": {}, "clip_norm": {"clip_norm": 1.0}},
    "seeds": [0, 1, 2],
    "jobs": {"training": "combination"},
    "data": {"train_size": 2000, "val_size": 500, "test_size": 500},
    "training": {
        "steps": 1000,
        "batch_size": 64,
        "hidden_size": 64,
        "learning_rate": {"default": 0.002},
        "eval_every": 100,
        "probe_every": 500,
        "early_stop": False,
        "device": "cpu",
    },
}
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
TRAIN_JOB = re.compile(r"^\s*(?:local)?rule (train_\w+):$", re.M)
"""A training job's line in a cluster job's log: Snakemake names each as ``rule train_...:`` (indented, as the group
lists them) and again as ``localrule train_...:`` when the job step runs it."""


def study_text(study: str) -> str:
    if study == "tiny":
        return (ROOT / "tests" / "configs" / "tiny.yaml").read_text()
    if study == "medium":
        return yaml.safe_dump(MEDIUM)
    return Path(study).read_text()


def run_workflow(workdir: Path, per_cluster_job: int, jobs: int) -> float:
    command = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--workflow-profile",
        str(ROOT / "workflow" / "profiles" / "slurm"),
        "--directory",
        str(workdir),
        "--jobs",
        str(jobs),
        "--group-components",
        f"train={per_cluster_job}",
        "data=20",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "tables",
    ]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    start = time.monotonic()
    result = subprocess.run(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.monotonic() - start
    (workdir / "snakemake.log").write_text(result.stdout)
    if result.returncode != 0:
        sys.exit(f"snakemake failed ({result.returncode}); its output: {workdir / 'snakemake.log'}")
    return elapsed


def slurm_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True)
    return dict(item.split("=", 1) for item in out.stdout.split() if "=" in item)


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def training_job(workdir: Path, job: TrainingJob) -> tuple[int, float, float]:
    """(runs, their summed wall_time_s, the training process's wall time) of one training job: every seed its
    combinations trained, the listed ones and any the sequential seed rule added."""
    runtimes = [
        path
        for combination in job.combinations
        for path in (workdir / COMBINATION_DIR.format(**combination._asdict())).glob("seed*/runtime.json")
    ]
    wall = sum(json.loads(path.read_text())["wall_time_s"] for path in runtimes)
    bench = workdir / "results" / "benchmarks" / f"{job.path.removeprefix('results/')}.tsv"
    process = float(bench.read_text().splitlines()[1].split("\t")[0])
    return len(runtimes), wall, process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="tiny", help="tiny, medium or a config file (default tiny)")
    parser.add_argument(
        "--per-cluster-job", type=int, default=4, help="training jobs per cluster job: group-components train=N"
    )
    parser.add_argument("--jobs", type=int, default=4, help="cluster jobs at once (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    (workdir / "config").mkdir()
    (workdir / "config" / "config.yaml").write_text(study_text(args.study))
    elapsed = run_workflow(workdir, args.per_cluster_job, args.jobs)
    study = load_study(yaml.safe_load((workdir / "config" / "config.yaml").read_text()), SCHEMA)
    by_name = {job.name: job for job in training_jobs(study)}

    logs = sorted((workdir / ".snakemake" / "slurm_logs").glob("group_train_*/*.log"), key=lambda p: int(p.stem))
    print(f"study {args.study}: {args.per_cluster_job} training jobs per cluster job, workflow {elapsed:.0f} s")
    print(f"{'job':>5s} {'runs':>4s} {'cores':>5s} {'wall s':>7s} {'train s':>8s} {'share':>6s}", end="")
    print(f" {'process s':>9s} {'share':>6s}")
    totals = [0, 0.0, 0.0, 0.0]
    for log in logs:
        info = slurm_job(log.stem)
        if info.get("JobState") != "COMPLETED":
            sys.exit(f"SLURM job {log.stem} is {info.get('JobState')}")
        jobs = [by_name[name] for name in sorted(set(TRAIN_JOB.findall(log.read_text())))]
        if not jobs:
            sys.exit(f"no training job named in {log}: has Snakemake's log format changed?")
        cores = int(info["NumCPUs"])
        wall = seconds_between(info["StartTime"], info["EndTime"])
        n_runs, train, process = (sum(v) for v in zip(*(training_job(workdir, job) for job in jobs), strict=True))
        print(
            f"{log.stem:>5s} {n_runs:4d} {cores:5d} {wall:7.0f} {train:8.1f} {train / (cores * wall):6.0%}"
            f" {process:9.1f} {process / (cores * wall):6.0%}"
        )
        totals = [totals[0] + n_runs, totals[1] + cores * wall, totals[2] + train, totals[3] + process]
    runs, core_s, train, process = totals
    print(
        f"{'all':>5s} {runs:4d} {'':5s} {core_s:7.0f} {train:8.1f} {train / core_s:6.0%} {process:9.1f}"
        f" {process / core_s:6.0%}"
    )
    overhead = (core_s - process) / runs
    print(f"outside the training processes: {overhead:.1f} s per run (Snakemake's job step and the job's start-up)")
    if args.keep:
        print(f"working directory: {workdir}")
    else:
        subprocess.run(["rm", "-rf", str(workdir)], check=True)


if __name__ == "__main__":
    main()

"""End to end through the real `snakemake` (tests/configs/tiny.yaml: 12 runs of 40 steps, about a minute on 2 cores).

Each study runs in its own temporary working directory (`--directory`) with the repository's Snakefile and default
profile, so the tests never touch the repository's own results/.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_runner import BIN, ENV, ROOT, TINY, new_study, snakemake_command
from workflow_runner import run_snakemake as snakemake

from rnn_gradients.engine.run_files import RUN_FILES
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.study.config import load_study
from rnn_gradients.study.grid import RUN_KEYS, RunKey, expand_runs, run_dir, run_spec, training_jobs
from rnn_gradients.study.tables import FLOW_COLUMNS, RESULT_FIELDS, RUNTIME_COLUMNS, STEP_COLUMNS, TABLE_FILES

pytestmark = pytest.mark.slow

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
TARGET = "all"
AFTER_RUNS = {"collect", "report", "figures", "all"}


def planned_jobs(dry_run_output: str) -> list[str]:
    """The rule of every job a `snakemake -n` would run, a training job's as ``train_<task>_T<T>_<cell>`` (a dry
    run lists the training jobs indented, in their cluster group)."""
    return [
        line.split()[1].rstrip(":")
        for line in map(str.strip, dry_run_output.splitlines())
        if line.startswith(("rule ", "localrule ")) and line.endswith(":")
    ]


def kinds(jobs: list[str]) -> Counter:
    """How many jobs of each rule, every training rule counted as ``train``."""
    return Counter("train" if job.startswith("train_") else job for job in jobs)


def training_rules(jobs: list[str]) -> list[str]:
    return sorted(job for job in jobs if job.startswith("train_"))


def runtimes(workdir: Path, study: dict) -> dict[RunKey, bytes]:
    """Every run's runtime.json, which differs between two trainings of the same run (its wall time)."""
    return {key: (workdir / run_dir(key) / "runtime.json").read_bytes() for key in expand_runs(study)}


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = new_study(tmp_path_factory.mktemp("tiny"), TINY)
    result = snakemake(workdir, "tables")
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir


@pytest.fixture(scope="module")
def study() -> dict:
    return load_study(yaml.safe_load(TINY.read_text()), SCHEMA)


def test_every_table_covers_the_grid_with_the_documented_columns(study_dir, study):
    runs = expand_runs(study)
    assert len(runs) == 12
    for key in runs:
        directory = study_dir / run_dir(key)
        assert sorted(p.name for p in directory.iterdir()) == sorted(RUN_FILES)
        assert json.loads((directory / "config.json").read_text()) == run_spec(study, key)
    tables = study_dir / "results" / "tables"
    assert sorted(p.name for p in tables.iterdir()) == sorted(TABLE_FILES)
    expected = {tuple(key) for key in runs}

    accuracy = pd.read_csv(tables / "accuracy.csv")
    assert list(accuracy.columns) == [*RUN_KEYS, *RESULT_FIELDS, *RUNTIME_COLUMNS]
    assert [tuple(row) for row in accuracy[list(RUN_KEYS)].itertuples(index=False)] == sorted(expected)
    assert (accuracy["steps_run"] == 40).all() and (accuracy["threads"] == 1).all()

    summary = pd.read_csv(tables / "accuracy_summary.csv")
    assert len(summary) == 12 and (summary["n_seeds"] == 1).all()

    norms = pd.read_csv(tables / "gradient_norms.csv")
    assert list(norms.columns) == [*RUN_KEYS, *STEP_COLUMNS]
    assert Counter(norms[list(RUN_KEYS)].itertuples(index=False, name=None)) == dict.fromkeys(expected, 40)

    flow = pd.read_csv(tables / "gradient_flow.csv")
    assert list(flow.columns) == [*RUN_KEYS, *FLOW_COLUMNS]
    probes_per_run = 3  # steps 0, 20 and 40
    lengths = {key: get_task(key.task).input_length(key.seq_len) for key in runs}
    assert Counter(flow[list(RUN_KEYS)].itertuples(index=False, name=None)) == {
        tuple(key): probes_per_run * lengths[key] for key in runs
    }

    decay = pd.read_csv(tables / "decay_rates.csv")
    assert Counter(decay[list(RUN_KEYS)].itertuples(index=False, name=None)) == dict.fromkeys(expected, probes_per_run)
    vanilla, gated = decay[decay["cell"] == "rnn_tanh"], decay[decay["cell"] == "lstm"]
    assert vanilla["bound_decay"].notna().all() and vanilla["meanfield_decay"].notna().all()
    assert gated["bound_decay"].isna().all() and gated["meanfield_decay"].isna().all()
    assert (vanilla["decay_per_step"] <= vanilla["bound_decay"] + 1e-9).all()  # Pascanu's bound holds

    # the validated config, without its size limits (which guard the study, and do not describe it), how its
    # runs are split into jobs and how the report is rendered
    shown = {k: v for k, v in study.items() if k not in ("limits", "report", "jobs")}
    assert json.loads((tables / "study_config.json").read_text()) == shown


def test_the_default_target_renders_the_report_in_both_languages(study_dir):
    result = snakemake(study_dir)
    assert result.returncode == 0, result.stdout[-5000:]
    assert kinds(planned_jobs(result.stdout)) == {"report": 2, "figures": 1, "all": 1}
    folder = study_dir / "results" / "report"
    assert sorted(p.name for p in folder.iterdir()) == ["report.es.html", "report.html"]
    english, spanish = ((folder / name).read_text(encoding="utf-8") for name in ("report.html", "report.es.html"))
    assert '<html lang="en"' in english or 'lang="en" xml:lang="en"' in english
    assert '<html lang="es"' in spanish or 'lang="es" xml:lang="es"' in spanish
    assert re.search(r'<a href="report\.es\.html"[^>]*>Español</a>', english)  # each page links to the other
    assert re.search(r'<a href="report\.html"[^>]*>English</a>', spanish)
    assert "Desvanecimiento del gradiente" in spanish and "Vanishing gradients" in english


def test_the_report_languages_are_a_config_key_that_reruns_only_the_report(study_dir):
    dry = snakemake(study_dir, "-n", TARGET, "--config", "report={languages: [es]}")
    assert dry.returncode == 0, dry.stdout[-5000:]
    # the Spanish page no longer links to an English one: it is rendered again, and nothing before it
    assert kinds(planned_jobs(dry.stdout)) == {"report": 1, "figures": 1, "all": 1}
    assert "results/report/report.es.html" in dry.stdout and "output: results/report/report.html" not in dry.stdout


def test_a_complete_study_has_nothing_to_do(study_dir):
    built = snakemake(study_dir, TARGET)  # a no-op when the tests before this one already built everything
    assert built.returncode == 0, built.stdout[-5000:]
    result = snakemake(study_dir, "-n", TARGET)
    assert result.returncode == 0, result.stdout[-5000:]
    assert "Nothing to be done" in result.stdout
    assert planned_jobs(result.stdout) == []


def test_a_deleted_summary_reruns_only_its_run_and_what_follows(study_dir, study):
    key = RunKey("adding", 10, "lstm", "none", 0)
    before = runtimes(study_dir, study)
    (study_dir / run_dir(key) / "summary.json").unlink()

    dry = snakemake(study_dir, "-n", TARGET)
    assert dry.returncode == 0, dry.stdout[-5000:]
    jobs = planned_jobs(dry.stdout)
    # the job of the run's task, T and cell runs again, and keeps its other runs
    assert training_rules(jobs) == ["train_adding_T10_lstm"]
    assert kinds(jobs) == {"train": 1, "collect": 1, "report": 2, "figures": 1, "all": 1}

    result = snakemake(study_dir, TARGET)
    assert result.returncode == 0, result.stdout[-5000:]
    after = runtimes(study_dir, study)
    assert [k for k in before if after[k] != before[k]] == [key]
    assert "Nothing to be done" in snakemake(study_dir, "-n", TARGET).stdout


def test_a_changed_bundle_reruns_only_that_strategys_runs(study_dir, study):
    config = study_dir / "config" / "config.yaml"
    original = config.read_text()
    changed = yaml.safe_load(original)
    changed["strategies"]["clip_norm"] = {"clip_norm": 0.5}
    config.write_text(yaml.safe_dump(changed))
    try:
        dry = snakemake(study_dir, "-n", TARGET)
    finally:
        config.write_text(original)
    assert dry.returncode == 0, dry.stdout[-5000:]
    jobs = planned_jobs(dry.stdout)
    # the jobs that train clip_norm run again (each keeps its other runs, as after a deleted summary above)
    expected = sorted(job.name for job in training_jobs(study) if "clip_norm" in {c.strategy for c in job.combinations})
    assert training_rules(jobs) == expected
    assert len(expected) == 6
    assert set(kinds(jobs)) == {"train", *AFTER_RUNS}
    assert "Params have changed since last execution" in dry.stdout
    assert "Nothing to be done" in snakemake(study_dir, "-n", TARGET).stdout


def test_a_new_seed_and_a_new_length_train_only_the_new_runs(study_dir, study):
    config = study_dir / "config" / "config.yaml"
    original = config.read_text()
    extended = yaml.safe_load(original)
    extended["seeds"] = [*extended["seeds"], 7]
    extended["tasks"]["temporal_order"] = [*extended["tasks"]["temporal_order"], 12]
    grown = load_study(extended, SCHEMA)
    new_runs = set(expand_runs(grown)) - set(expand_runs(study))
    assert new_runs and all(k.seed == 7 or (k.task, k.seq_len) == ("temporal_order", 12) for k in new_runs)
    before = runtimes(study_dir, study)
    config.write_text(yaml.safe_dump(extended))
    try:
        dry = snakemake(study_dir, "-n", TARGET)
        assert dry.returncode == 0, dry.stdout[-5000:]
        jobs = planned_jobs(dry.stdout)
        new_data = {(k.task, k.seq_len, k.seed) for k in new_runs}
        assert kinds(jobs)["generate"] == len(new_data)
        # every training job runs (its seeds changed), but only the new runs are missing ...
        missing = {line for line in dry.stdout.splitlines() if "reason: Missing output files" in line}
        # (the report and its figure files may be missing too when this test runs alone: the fixture builds tables)
        after = ("Missing output files: results/figures", "Missing output files: results/report")
        missing = {line for line in missing if not any(part in line for part in after)}
        assert missing and all("seed7" in line or "/T12/" in line for line in missing)
        result = snakemake(study_dir, TARGET)
        assert result.returncode == 0, result.stdout[-5000:]
        # ... and only they are trained: every existing run directory is kept as it was
        assert runtimes(study_dir, study) == before
        assert all((study_dir / run_dir(k) / "summary.json").is_file() for k in new_runs)
    finally:
        config.write_text(original)
    assert snakemake(study_dir, TARGET).returncode == 0  # back to the original grid: nothing is retrained
    assert runtimes(study_dir, study) == before


def test_a_configfile_replaces_the_default_study(tmp_path):
    workdir = new_study(tmp_path, ROOT / "config" / "config.yaml")
    default = planned_jobs(snakemake(workdir, "-n", "tables").stdout)
    # one training job per task, T and cell: 4 lengths x 5 cells (the strategies train in their cell's job)
    assert kinds(default) == {
        "generate": 12,
        "train": 4 * 5,
        "collect": 1,
        "tables": 1,
    }
    tiny = planned_jobs(snakemake(workdir, "-n", "tables", "--configfile", str(TINY)).stdout)
    assert kinds(tiny) == {"generate": 3, "train": 6, "collect": 1, "tables": 1}


BAD = {
    "typo": ({"strategies": {"clip": {"clip_nrom": 1.0}}}, "strategies.clip.clip_nrom: unknown key 'clip_nrom'"),
    "chrono on vanilla cells": (
        {"cells": ["rnn_tanh", "lstm"], "strategies": {"chrono": {"chrono": True}}},
        "cannot apply to cell 'rnn_tanh'; it applies to: lstm, gru",
    ),
    "T below 2": ({"tasks": {"adding": [1]}}, "tasks.adding[0]: 1 is below the minimum 2"),
    "text for a number": ({"training": {"steps": "40"}}, "training.steps: '40' is a string, expected an integer"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_config_stops_before_any_job_with_its_message(tmp_path, case):
    config, message = BAD[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--configfile", str(bad))
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if not line.startswith("Using workflow specific profile")]
    assert lines[0] == f"{bad}: invalid study config (1 problem):"
    assert message in lines[1]
    assert "Traceback" not in result.stdout
    assert not (tmp_path / "results").exists()


def test_a_killed_training_job_leaves_no_partial_run_and_the_next_run_completes(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config.update(tasks={"adding": [10]}, cells=["rnn_tanh"], strategies={"none": {}})
    config["training"].update(steps=3000, eval_every=100, probe_every=1000)
    workdir = new_study(tmp_path, config)
    key = RunKey("adding", 10, "rnn_tanh", "none", 0)
    run = workdir / run_dir(key)
    log = workdir / "results" / "logs" / "runs" / "adding" / "T10" / "rnn_tanh.log"  # the job of the cell

    started = time.monotonic()
    with subprocess.Popen(
        snakemake_command(workdir, "tables"),
        cwd=workdir,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as pipeline:
        pid = _wait_for_training(workdir, log, deadline=started + 120)
        os.kill(pid, signal.SIGKILL)
        output, _ = pipeline.communicate(timeout=120)
    assert pipeline.returncode != 0, output[-5000:]
    assert "Error in rule train" in output
    assert not run.exists() or list(run.iterdir()) == []
    assert not (workdir / "results" / "tables").exists()

    result = snakemake(workdir, "tables")
    assert result.returncode == 0, result.stdout[-5000:]
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)
    assert json.loads((run / "summary.json").read_text())["steps_run"] == 3000
    assert [p.name for p in run.parent.iterdir()] == ["seed0"]  # the killed job's temporary directory is gone


def _wait_for_training(workdir: Path, log: Path, deadline: float) -> int:
    """The pid of this study's `rnn_gradients train` process, once its log shows the training loop running."""
    while time.monotonic() < deadline:
        if log.is_file() and "step    100" in log.read_text():
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit() and _is_training_process(proc, workdir):
                    return int(proc.name)
        time.sleep(0.05)
    raise AssertionError(f"no training process of {workdir} seen running")


def _is_training_process(proc: Path, workdir: Path) -> bool:
    try:
        args = (proc / "cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(proc / "cwd")
    except OSError:  # the process ended meanwhile, or is not ours to inspect
        return False
    return cwd == str(workdir) and b"rnn_gradients" in args and b"train" in args and b"-m" in args


def test_the_workflow_lints_clean():
    result = subprocess.run(
        [str(BIN / "snakemake"), "--lint"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_every_profile_key_is_a_snakemake_option():
    help_text = subprocess.run(
        [str(BIN / "snakemake"), "--help"], env=ENV, capture_output=True, text=True, timeout=120
    ).stdout
    # the SLURM plugin's options (slurm-*) are in --help only where the `slurm` extra is installed
    plugin = importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None
    for profile in ("default", "slurm", "slurm-gpu"):
        keys = yaml.safe_load((ROOT / "workflow" / "profiles" / profile / "config.yaml").read_text())
        checked = [key for key in keys if plugin or not key.startswith("slurm-")]
        assert [key for key in checked if f"--{key}" not in help_text] == [], profile


def _slurm_profile_without_plugin(directory: Path) -> Path:
    """workflow/profiles/slurm less the executor and the plugin's options (they need the `slurm` extra)."""
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile.pop("executor") == "slurm"
    directory.mkdir()
    (directory / "config.yaml").write_text(yaml.safe_dump({k: v for k, v in profile.items() if "slurm-" not in k}))
    return directory


def _dry_run_resources(workdir: Path, profile: Path, *args: str) -> dict[str, list[dict[str, str]]]:
    """rule -> the resources of each of its jobs, from a dry run of every job (every training rule as ``train``)."""
    dry = snakemake(workdir, "-n", "--forceall", "tables", *args, profile=profile)
    assert dry.returncode == 0, dry.stdout[-5000:]
    resources: dict[str, list[dict[str, str]]] = {}
    rule = ""
    for line in (line.strip() for line in dry.stdout.splitlines()):
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            rule = "train" if rule.startswith("train_") else rule
        elif line.startswith("resources: "):
            resources.setdefault(rule, []).append(dict(item.split("=", 1) for item in line[11:].split(", ")))
    return resources


def test_the_slurm_profile_asks_for_a_gpu_only_with_the_gpu_switch(study_dir, tmp_path):
    profile = _slurm_profile_without_plugin(tmp_path / "slurm")
    cpu = _dry_run_resources(study_dir, profile)
    gpu = _dry_run_resources(study_dir, profile, "--profile", str(ROOT / "workflow" / "profiles" / "slurm-gpu"))
    gpu_keys = {"gpu", "gpus", "gres", "gpu_model"}
    assert len(cpu["train"]) == len(gpu["train"]) == 6
    for rule, jobs in cpu.items():
        assert all(not gpu_keys & set(job) for job in jobs), rule  # CPU only: no GPU for any job
    for rule, jobs in gpu.items():
        if rule == "train":
            assert all(job["gpu"] == "1" and int(job["mem_mb"]) > 0 for job in jobs)
        else:
            assert all(not gpu_keys & set(job) for job in jobs), rule  # the switch concerns training only
    # the same resources otherwise: the switch adds the GPU (and a site's GPU partition) and nothing else
    switch = gpu_keys | {"slurm_partition"}
    assert [{k: v for k, v in job.items() if k not in switch} for job in gpu["train"]] == cpu["train"]

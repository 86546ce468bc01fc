# Shared by every stage: the study grid, the file layout and the one target-building function.
import json
import os
import re
import sys
from pathlib import Path

from snakemake.resources import Resources

import rnn_gradients
from rnn_gradients.files import output_problem
from rnn_gradients.engine.run_files import RUN_FILES
from rnn_gradients.report.i18n import page_name
from rnn_gradients.study.grid import (
    DATA_FILE,
    REPORT_FILE,
    RUN_DIR,
    TABLES_DIR,
    estimated_minutes,
    expand_runs,
    job_runs,
    relative_cost,
    run_dir,
    specs_json,
    training_jobs,
)
from rnn_gradients.study.limits import collect_memory_mb, training_memory_mb
from rnn_gradients.study.tables import TABLE_FILES

RUNS = expand_runs(STUDY)
# A file or a symbolic link where a run directory belongs would fail only after the run is trained: refused here,
# before any job, with one line per path naming it and what to do (rnn_gradients.files.output_problem).
OUTPUT_PROBLEMS = [problem for key in RUNS if (problem := output_problem(run_dir(key), "run directory"))]
if OUTPUT_PROBLEMS:
    sys.exit("\n".join(["error: " + problem for problem in OUTPUT_PROBLEMS[:10]]))


def local_path(path):
    """``path`` relative to the working directory when it lies inside it (a study run in the checkout), else
    absolute: a copied or moved checkout then names the same inputs, and nothing reruns for the move."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd().resolve())) if path.is_relative_to(Path.cwd().resolve()) else str(path)


# Code is read from the repository and the installed package; results go to the working directory.
PACKAGE_DIR = Path(rnn_gradients.__file__).parent
REPORT_DIR = Path(workflow.basedir) / "report"
REPORT_QMD = REPORT_DIR / "report.qmd"
REPORT_LANGUAGES = STUDY["report"]["languages"]


def report_file(lang):
    """The report's page in ``lang``: REPORT_FILE (results/report/report.html) in English, report.<lang>.html
    beside it in any other language."""
    folder, name = os.path.split(REPORT_FILE)
    return os.path.join(folder, page_name(name, lang))


# The report rule's {page} wildcard (the file name without .html) -> the language of that page.
REPORT_PAGES = {Path(report_file(lang)).stem: lang for lang in REPORT_LANGUAGES}


wildcard_constraints:
    task="|".join(STUDY["tasks"]),
    seq_len=r"\d+",
    cell="|".join(STUDY["cells"]),
    strategy="|".join(STUDY["strategies"]),
    seed=r"\d+",
    page="|".join(re.escape(page) for page in REPORT_PAGES),


def final_targets(report=True):
    """Everything the study consists of: every file of every run, the tables and (by default) the report, one
    page per language of the config's ``report.languages``, and its figures as files (results/figures/).

    The report alone would be enough to build everything once, but Snakemake (>= 7.7) does not rebuild a deleted
    intermediate file while the files after it are up to date. Listing the runs and tables as targets makes a
    deleted or incomplete run rerun, and then the tables and the report after it.
    """
    runs = [path for name in RUN_FILES for path in run_files(name)]
    pages = [report_file(lang) for lang in REPORT_LANGUAGES] if report else []
    return [*runs, *table_files(), *pages, *([FIGURES_DIR] if report else [])]


def run_files(name):
    """One file of every run directory of the grid, e.g. every summary.json."""
    return [f"{run_dir(key)}/{name}" for key in RUNS]


TRAINING_JOBS = training_jobs(STUDY)
# A dataset is generated before any training job starts (data.smk): its priority is above every training job's.
DATA_PRIORITY = 1 + max(relative_cost(job.combinations) for job in TRAINING_JOBS)


def table_files():
    return [f"{TABLES_DIR}/{name}" for name in TABLE_FILES]


def job_outputs(job):
    """The files of every run of a training job, named by their stem (``summary``: every run's summary.json).
    Flagged ``update``: Snakemake keeps them when it reruns the job, and the job keeps every run whose spec is
    unchanged, so a new seed or strategy trains only its own runs."""
    return {
        name.split(".")[0]: update([f"{run_dir(key)}/{name}" for key in job_runs(STUDY, job)]) for name in RUN_FILES
    }


def job_data(job):
    """The datasets a training job's runs read (one per task, T and seed)."""
    return list(dict.fromkeys(job_run_data(job)))


def job_run_data(job):
    """Each run's dataset, in the order of its spec."""
    return [DATA_FILE.format(**key._asdict()) for key in job_runs(STUDY, job)]


def job_specs(job):
    """The resolved spec of every run: a deterministic function of the config, so only changed runs rerun."""
    return specs_json(STUDY, job_runs(STUDY, job))


def job_memory_mb(job):
    """One run at a time: the peak of one run (rnn_gradients.study.limits)."""
    return max(training_memory_mb(STUDY, c.task, c.seq_len) for c in job.combinations)


def apply_training_overrides(rule_name):
    """The resources the profiles set for ``train`` (``set-resources`` in workflow/profiles/slurm-gpu, the GPU
    switch) given to one of the training jobs, as Snakemake gives them to a rule of that exact name. These
    are named per job (train_adding_T60_lstm); one name lets a profile reach them all."""
    overrides = workflow.resource_settings.overwrite_resources
    resources = workflow.get_rule(rule_name).resources
    for name in ("train", rule_name):  # the rule's own name, if set too, wins
        resources.update(Resources.from_mapping(overrides.get(name, {})))


def log_path(pattern):
    """A job's log: its output pattern (without a file extension) under results/logs."""
    return f"results/logs/{_stem(pattern)}.log"


def benchmark_path(pattern):
    """A job's time and memory: its output pattern (without a file extension) under results/benchmarks."""
    return f"results/benchmarks/{_stem(pattern)}.tsv"


def _stem(pattern):
    return os.path.splitext(pattern.removeprefix("results/"))[0]


def report_assets():
    """The report folder's other files (e.g. its stylesheet): render copies the whole folder."""
    files = [p for p in REPORT_DIR.glob("*") if p.is_file() and not p.name.startswith(".")]
    return sorted(local_path(p) for p in files if p != REPORT_QMD)


def report_code():
    """Every module of the report layer (its message catalogues, Lua filter and page style included) and the
    study-layer analysis it uses (edits re-render the report)."""
    layer = PACKAGE_DIR / "report"
    files = [*layer.glob("*.py"), *layer.glob("*.lua"), *layer.glob("*.css"), *layer.glob("messages/*.yaml")]
    return sorted(local_path(path) for path in files) + package_files("study/analysis")


def package_files(*modules):
    """Package modules a step's output depends on, as paths inside the package such as "study/tables" (edits
    rerun the step)."""
    return [local_path(PACKAGE_DIR / f"{module}.py") for module in modules]


def parent_of(name):
    """A params function giving the directory of the job's output `name`."""
    return lambda wildcards, output: os.path.dirname(output[name])

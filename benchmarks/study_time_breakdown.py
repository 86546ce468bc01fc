"""Where a finished study's training time went: process start and imports, data and model setup, optimizer steps,
evaluations, gradient probes, and writing, summed over every training job.

    python benchmarks/study_time_breakdown.py [RESULTS_DIR]      # default: results

Each training job (one process: every strategy and seed of one task, T and cell, or under ``jobs: {training:
combination}`` the seeds of one combination) leaves its wall time in ``results/benchmarks/runs/{task}/T{seq_len}/
{cell}.tsv`` (or ``.../{cell}/{strategy}.tsv``: Snakemake's ``benchmark:``, the whole ``python -m rnn_gradients
train`` process) and each run its parts in ``runtime.json``. The process time not inside any run's
``wall_time_s`` is process start, imports and argument parsing; a run's ``wall_time_s`` not in its parts is
writing its files and bookkeeping. Prints the shares, then the same per cell and per (task, T).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def load(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per run with its runtime parts, one row per training job with its process wall time)."""
    runs = []
    for path in sorted((results / "runs").glob("*/T*/*/*/seed*/runtime.json")):
        task, seq_len, cell, strategy = path.parts[-6:-2]
        runtime = json.loads(path.read_text())
        steps = len(pd.read_csv(path.parent / "steps.csv", usecols=["step"]))
        runs.append(
            {
                "task": task,
                "seq_len": int(seq_len[1:]),
                "cell": cell,
                "strategy": strategy,
                "wall": runtime["wall_time_s"],
                "setup": runtime["setup_s"],
                "steps": runtime["ms_per_step"] * steps / 1000,
                "eval": runtime["eval_s"],
                "probe": runtime["probe_s"],
            }
        )
    jobs = []
    for path in sorted((results / "benchmarks" / "runs").rglob("*.tsv")):
        place = path.relative_to(results / "benchmarks" / "runs").with_suffix("").parts
        seconds = float(pd.read_csv(path, sep="\t")["s"].iloc[0])
        jobs.append({"job_id": "/".join(place), "job": seconds})
    if not runs or not jobs:
        raise SystemExit(f"no finished runs or job benchmarks under {results}")
    runs_frame = pd.DataFrame(runs)
    # a run belongs to its cell's job (task/T<T>/cell) or to its combination's (task/T<T>/cell/strategy)
    cell_job = runs_frame["task"] + "/T" + runs_frame["seq_len"].astype(str) + "/" + runs_frame["cell"]
    known = {job["job_id"] for job in jobs}
    runs_frame["job_id"] = cell_job.where(cell_job.isin(known), cell_job + "/" + runs_frame["strategy"])
    return runs_frame, pd.DataFrame(jobs)


def breakdown(runs: pd.DataFrame, jobs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Seconds per part, summed over ``by`` groups (all runs when ``by`` is empty). ``by`` takes the keys a job's
    runs share: task, seq_len, cell."""
    keys = ["job_id", "task", "seq_len", "cell"]
    per_job = runs.groupby(keys)[["wall", "setup", "steps", "eval", "probe"]].sum()
    per_job = per_job.join(jobs.set_index("job_id"), on="job_id", how="inner")
    per_job["start_and_imports"] = per_job["job"] - per_job["wall"]
    per_job["writing_and_other"] = per_job["wall"] - per_job[["setup", "steps", "eval", "probe"]].sum(axis=1)
    parts = ["start_and_imports", "setup", "steps", "eval", "probe", "writing_and_other"]
    grouped = per_job.reset_index().groupby(by)[[*parts, "job"]].sum() if by else per_job[[*parts, "job"]].sum()
    return grouped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=Path("results"))
    args = parser.parse_args()
    runs, jobs = load(args.results)
    total = breakdown(runs, jobs, [])
    print(f"{len(runs)} runs in {len(jobs)} training jobs: {total['job']:.0f} s of job time (summed over jobs)")
    for part in ("start_and_imports", "setup", "steps", "eval", "probe", "writing_and_other"):
        print(f"  {part:<18} {total[part]:8.1f} s  {100 * total[part] / total['job']:5.1f} %  "
              f"({total[part] / len(runs):.2f} s per run)")  # fmt: skip
    pd.set_option("display.width", 160)
    for by in (["cell"], ["task", "seq_len"]):
        table = breakdown(runs, jobs, by)
        print(f"\nby {', '.join(by)} (seconds):")
        print(table.round(1).to_string())


if __name__ == "__main__":
    main()

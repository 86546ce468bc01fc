"""Render time of the report: Quarto against the offline renderer, side by side on the same tables.

Each render is the report rule's own command, ``python -m rnn_gradients render --engine E`` (start-up, kernel,
figures, page), timed from the outside; the engines alternate so that a change in the machine's load hits both.

    python benchmarks/bench_render.py                                  # the tiny study (trained first, ~1 min)
    python benchmarks/bench_render.py --study config/config.yaml       # another study config (trained first)
    python benchmarks/bench_render.py --fixture     # the tests' synthetic full grid (72 runs, every figure drawn)
    python benchmarks/bench_render.py --tables results/tables          # tables you already have

Needs ``quarto`` on PATH (README, "The report and Quarto"). Prints the median, min and max wall time of each
engine, and the load average before and after (the machine may be shared: compare the two engines, not runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("quarto", "offline")


def study_tables(config: Path, workdir: Path) -> Path:
    """Run the study of ``config`` up to its tables in ``workdir`` (as the tests do), and return the tables."""
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
        "--workflow-profile", str(ROOT / "workflow" / "profiles" / "default"), "--directory", str(workdir),
        "--configfile", str(config.resolve()), "--quiet", "all", "--cores", str(os.cpu_count()), "tables",
    ]  # fmt: skip
    print(f"training {config} in {workdir} ...", flush=True)
    subprocess.run(command, check=True, env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    return workdir / "results" / "tables"


def render_seconds(engine: str, tables: Path, out: Path) -> float:
    qmd = ROOT / "report" / "report.qmd"
    command = [sys.executable, "-m", "rnn_gradients", "render", "--engine", engine, "--qmd", str(qmd)]
    command += ["--tables", str(tables), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--study", type=Path, default=ROOT / "tests" / "configs" / "tiny.yaml")
    source.add_argument("--tables", type=Path, help="an existing tables directory (skips training)")
    source.add_argument("--fixture", action="store_true", help="the synthetic tables of tests/fixtures_tables.py")
    parser.add_argument("--repeats", type=int, default=3, help="renders per engine (default 3)")
    args = parser.parse_args()
    if shutil.which("quarto") is None:
        sys.exit("quarto is not on PATH: see the README, 'The report and Quarto'")
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        if args.tables:
            tables = args.tables.resolve()
        elif args.fixture:
            sys.path.insert(0, str(ROOT / "tests"))
            from fixtures_tables import write_study_tables

            tables = write_study_tables(Path(tmp) / "tables")
        else:
            tables = study_tables(args.study, Path(tmp) / "study")
        runs = (tables / "accuracy.csv").read_text().count("\n") - 1
        steps = (tables / "gradient_norms.csv").read_text().count("\n") - 1
        load_before = os.getloadavg()
        seconds: dict[str, list[float]] = {engine: [] for engine in ENGINES}
        for repeat in range(args.repeats):
            for engine in ENGINES if repeat % 2 == 0 else ENGINES[::-1]:
                seconds[engine].append(render_seconds(engine, tables, Path(tmp) / f"{engine}.html"))
        load_after = os.getloadavg()
    print(f"tables: {tables} ({runs} runs, {steps} training-step rows)")
    print(f"machine: {os.cpu_count()} CPUs; 1-min load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'engine':<8} {'median':>7} {'min':>7} {'max':>7}   wall seconds of {args.repeats} renders each")
    for engine, values in seconds.items():
        print(f"{engine:<8} {statistics.median(values):7.1f} {min(values):7.1f} {max(values):7.1f}")
    ratio = statistics.median(seconds["quarto"]) / statistics.median(seconds["offline"])
    print(f"quarto / offline (medians): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

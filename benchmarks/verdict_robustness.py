"""Do the study's verdicts survive another set of seeds? Train the same grid again with other seeds and count.

Another machine trains another floating-point path, which acts like another seed
(``benchmarks/bench_reproducibility.py``), so this is also the check that the conclusions hold on another CPU.
The script writes a copy of the study config whose seeds are shifted by ``--offset`` (default 1000: the default
study's seeds 0, 1, 2 become 1000, 1001, 1002, and their extra seeds 1003, ... never meet the first set's),
trains it with ``snakemake tables`` in its own working directory (``--workdir``, default
``results-robustness/``; a rerun keeps what it trained), and prints ``python -m rnn_gradients compare-verdicts``
of the two tables directories: how many verdicts both assert, how many contradict each other, which are asserted
in one and uncertain in the other, and how the runs of each ended against their threshold.

Run from the repository root after ``snakemake`` (the first study's tables in ``results/tables``):

    python benchmarks/verdict_robustness.py [--configfile config/config.yaml] [--offset 1000] [--cores 2]

It costs one more study (about as long as the first).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=ROOT / "config" / "config.yaml")
    parser.add_argument("--tables", type=Path, default=ROOT / "results" / "tables", help="the first study's tables")
    parser.add_argument("--offset", type=int, default=1000, help="added to every seed of the config")
    parser.add_argument("--workdir", type=Path, default=ROOT / "results-robustness")
    parser.add_argument("--cores", default="all")
    args = parser.parse_args()

    config = yaml.safe_load(args.configfile.read_text(encoding="utf-8"))
    config["seeds"] = [seed + args.offset for seed in config.get("seeds", [0, 1, 2])]
    (args.workdir / "config").mkdir(parents=True, exist_ok=True)
    shifted = args.workdir / "config" / "config.yaml"
    shifted.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    print(f"training {args.configfile} with seeds {config['seeds']} in {args.workdir}", flush=True)
    snakemake = Path(sys.executable).parent / "snakemake"
    subprocess.run(
        [str(snakemake), "tables", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(args.workdir),
         "--cores", str(args.cores), "--configfile", str(shifted)],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "rnn_gradients", "compare-verdicts", str(args.tables), str(args.workdir / TABLES)],
        check=True,
    )


TABLES = Path("results") / "tables"

if __name__ == "__main__":
    main()

"""What MKL's conditional numerical reproducibility and a oneDNN / ATen instruction-set cap cost, and whether they
make a run bit-identical when the instruction set changes.

Another CPU is another floating-point path: MKL and oneDNN pick their kernels by instruction set (and ATen its
vectorized loops), so the same run spec trained on an AVX-512 machine and on an AVX2 one gives different
``steps.csv`` files from the first steps. One machine cannot be two CPUs, but it can be told to use fewer
instructions than it has (``MKL_ENABLE_INSTRUCTIONS``, ``ONEDNN_MAX_CPU_ISA``, ``ATEN_CPU_CAPABILITY``), which is
what a CPU without them would run. This script trains the same short runs (adding at T = 60, B = 64, H = 64,
``--steps`` steps, one thread; one process per setting, all settings interleaved per repeat) under:

    default      the libraries' own choice (what the study runs)
    older ISA    the machine capped to AVX (as a CPU without AVX2 would be)
    pinned       MKL_CBWR=COMPATIBLE, ONEDNN_MAX_CPU_ISA=SSE41, ATEN_CPU_CAPABILITY=default: the settings meant
                 to give the same bits on every x86 CPU
    pinned+older the pinned settings on the machine capped to AVX

and prints, per cell, ms per step relative to the default and whether each setting's ``steps.csv`` and
``evals.csv`` are byte-identical to the default's and pinned to pinned+older (the question: do the pinned
settings make a run independent of the instruction set?).

Run: ``python benchmarks/bench_reproducibility.py [--steps 100] [--repeats 2]`` (about two minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CELLS = ("rnn_tanh", "rnn_sigmoid", "lstm", "gru")
OLDER = {"MKL_ENABLE_INSTRUCTIONS": "AVX", "ONEDNN_MAX_CPU_ISA": "AVX", "ATEN_CPU_CAPABILITY": "default"}
PINNED = {"MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"}
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "older ISA": OLDER,
    "pinned": PINNED,
    "pinned+older": {**OLDER, **PINNED},
}

TRAIN = """
import sys
from pathlib import Path
from rnn_gradients.engine.datasets import make_dataset, save_dataset
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.training import train_run
cell, steps, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
data = out.parent / "data.npz"
if not data.exists():
    save_dataset(make_dataset("adding", 60, 0, 2000, 200, 200), data)
spec = RunSpec(task="adding", seq_len=60, cell=cell, strategy="none", strategy_params={}, seed=0, train_size=2000,
               val_size=200, test_size=200, steps=steps, learning_rate=0.002, eval_every=50, probe_every=10**6,
               early_stop=False, device="cpu")
train_run(spec, data, out)
"""


def train(cell: str, steps: int, setting: dict[str, str], out: Path) -> float:
    """Train one run in a fresh process under ``setting``; its ms per step."""
    env = {key: value for key, value in os.environ.items() if key not in {*OLDER, *PINNED}}
    subprocess.run(
        [sys.executable, "-c", TRAIN, cell, str(steps), str(out)],
        env={**env, **setting},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return json.loads((out / "runtime.json").read_text())["ms_per_step"]


def same(a: Path, b: Path) -> bool:
    return all((a / name).read_bytes() == (b / name).read_bytes() for name in ("steps.csv", "evals.csv"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        times: dict[tuple[str, str], list[float]] = {}
        for repeat in range(args.repeats):
            for cell in CELLS:
                for name, setting in SETTINGS.items():
                    out = root / f"r{repeat}" / cell / name.replace(" ", "_").replace("+", "_")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    times.setdefault((cell, name), []).append(train(cell, args.steps, setting, out))
        print(f"adding T=60, B=64, H=64, {args.steps} steps, one thread; ms per step (min of {args.repeats}) and")
        print("whether steps.csv and evals.csv are byte-identical to the default's run")
        print(f"{'cell':12s}" + "".join(f"{name:>24s}" for name in SETTINGS) + f"{'pinned = pinned+older':>24s}")
        for cell in CELLS:
            base = min(times[(cell, "default")])
            row = f"{cell:12s}"
            for name in SETTINGS:
                run = root / "r0" / cell / name.replace(" ", "_").replace("+", "_")
                ms = min(times[(cell, name)])
                flag = "same" if same(run, root / "r0" / cell / "default") else "differs"
                row += f"{f'{ms:.2f} ({ms / base:.2f}x) {flag}':>24s}"
            pinned = root / "r0" / cell / "pinned"
            row += f"{'same' if same(pinned, root / 'r0' / cell / 'pinned_older') else 'differs':>24s}"
            print(row)
        repeat_same = all(
            same(root / "r0" / c / "default", root / f"r{args.repeats - 1}" / c / "default") for c in CELLS
        )
        print(f"the default setting trained twice gives the same bytes: {repeat_same}")


if __name__ == "__main__":
    main()

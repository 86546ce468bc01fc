"""Training one combination under the sequential seed rule (:mod:`rnn_gradients.study.verdicts`).

The training job of a combination trains its listed seeds, then, while the combination's verdict is uncertain
and it has fewer than ``verdicts.max_seeds`` seeds, the next seed: its dataset is generated if it is not on disk
yet (the same file ``generate`` would write) and its run directory is written like any other. A run already
trained with its spec is kept (:func:`~rnn_gradients.engine.training.train_runs`), so rerunning a job trains only
what is missing, and adding seeds or raising the cap trains only the new runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rnn_gradients.engine.datasets import make_dataset, save_dataset
from rnn_gradients.engine.run_files import RunSummary
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.training import train_runs
from rnn_gradients.study.verdicts import SeedPlan, sequential_seeds


def train_combination(
    specs: Sequence[RunSpec],
    data_paths: Sequence[Path],
    out_dirs: Sequence[Path],
    *,
    max_seeds: int,
    confidence: float,
    data_pattern: str,
    run_dir_pattern: str,
    threads: int = 1,
) -> tuple[SeedPlan, dict[int, RunSummary]]:
    """Train the listed runs of one combination (one spec per listed seed), then its extra seeds as the rule
    asks; ``data_pattern`` and ``run_dir_pattern`` name an extra seed's dataset and run directory (``{seed}``).

    Returns the plan and the summary of every seed trained, by seed.
    """
    first = specs[0]
    for spec in specs[1:]:
        if replace(spec, seed=first.seed) != first:
            raise ValueError("train --max-seeds: the specs must be the seeds of one combination (only seed differs)")
    if len({spec.seed for spec in specs}) != len(specs):
        raise ValueError("train --max-seeds: every spec needs its own seed")
    summaries = dict(zip([spec.seed for spec in specs], train_runs(specs, data_paths, out_dirs, threads), strict=True))

    def solved(seed: int) -> bool:
        if seed not in summaries:
            data_path = Path(data_pattern.format(seed=seed))
            if not data_path.is_file():
                sizes = (first.train_size, first.val_size, first.test_size)
                save_dataset(make_dataset(first.task, first.seq_len, seed, *sizes), data_path)
            spec = replace(first, seed=seed)
            summaries[seed] = train_runs([spec], [data_path], [Path(run_dir_pattern.format(seed=seed))], threads)[0]
        return summaries[seed].solved

    plan = sequential_seeds([spec.seed for spec in specs], max_seeds, confidence, solved)
    return plan, summaries

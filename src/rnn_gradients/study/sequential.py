"""Training combinations under the sequential seed rule (:mod:`rnn_gradients.study.verdicts`).

A training job trains one or more combinations (:func:`~rnn_gradients.study.grid.training_jobs`), one after
another (:func:`split_combinations`). Each trains its listed seeds, then, while the combination's verdict is uncertain
and it has fewer than ``verdicts.max_seeds`` seeds, the next seed: its dataset is generated if it is not on disk
yet (the same file ``generate`` would write) and its run directory is written like any other. A run already
trained with its spec is kept (:func:`~rnn_gradients.engine.training.train_runs`), so rerunning a job trains only
what is missing, and adding seeds or raising the cap trains only the new runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from rnn_gradients.engine.datasets import make_dataset, save_dataset
from rnn_gradients.engine.run_files import RunSummary
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.training import train_runs
from rnn_gradients.study.verdicts import SeedPlan, sequential_seeds

PATTERN_FIELDS = ("task", "seq_len", "cell", "strategy")
"""The fields a data or run-directory pattern may hold besides ``{seed}`` (those of a combination)."""


class CombinationRuns(NamedTuple):
    """The listed runs of one combination, and where its extra seeds' datasets and runs go (``{seed}`` left)."""

    specs: list[RunSpec]
    data_paths: list[Path]
    out_dirs: list[Path]
    data_pattern: str
    run_dir_pattern: str


def split_combinations(
    specs: Sequence[RunSpec],
    data_paths: Sequence[Path],
    out_dirs: Sequence[Path],
    data_pattern: str,
    run_dir_pattern: str,
) -> list[tuple[str, CombinationRuns]]:
    """The runs grouped by combination (task, T, cell, strategy) in order of first appearance, each labelled
    (``adding T=60 lstm none``) and with the patterns filled in for it: ``{task}``, ``{seq_len}``, ``{cell}`` and
    ``{strategy}`` become the combination's, ``{seed}`` stays.

    ValueError when a pattern has another field, lacks ``{seed}``, or would put the extra seeds of two
    combinations in one place (a pattern without the fields that tell them apart).
    """
    if not len(specs) == len(data_paths) == len(out_dirs):
        raise ValueError(
            f"train: {len(specs)} specs, {len(data_paths)} --data files and {len(out_dirs)} --out-dir directories: "
            "give one of each per run"
        )
    groups: dict[tuple[object, ...], CombinationRuns] = {}
    for spec, data_path, out_dir in zip(specs, data_paths, out_dirs, strict=True):
        fields = {name: getattr(spec, name) for name in PATTERN_FIELDS}
        key = tuple(fields.values())
        if key not in groups:
            patterns = (_fill("--data-pattern", data_pattern, fields), _fill("--out-pattern", run_dir_pattern, fields))
            groups[key] = CombinationRuns([], [], [], *patterns)
        groups[key].specs.append(spec)
        groups[key].data_paths.append(Path(data_path))
        groups[key].out_dirs.append(Path(out_dir))
    # combinations that differ only in the cell or strategy share their datasets, never their run directories
    for option, pattern, filled_of, owner_fields in (
        ("--data-pattern", data_pattern, lambda runs: runs.data_pattern, PATTERN_FIELDS[:2]),
        ("--out-pattern", run_dir_pattern, lambda runs: runs.run_dir_pattern, PATTERN_FIELDS),
    ):
        owners: dict[str, tuple[object, ...]] = {}
        for key, runs in groups.items():
            owner = key[: len(owner_fields)]
            first = owners.setdefault(filled_of(runs), owner)
            if first != owner:
                needed = ", ".join("{" + name + "}" for name in owner_fields)
                raise ValueError(
                    f"train {option} {pattern!r} is the same for several combinations ({_label(first)} and "
                    f"{_label(owner)}: {filled_of(runs)!r}): it needs {needed}"
                )
    return [(_label(key), runs) for key, runs in groups.items()]


def _label(key: tuple[object, ...]) -> str:
    """``adding T=60 lstm none`` for a combination's fields (or the first of them)."""
    return " ".join([str(key[0]), f"T={key[1]}", *map(str, key[2:])])


def _fill(option: str, pattern: str, fields: dict[str, object]) -> str:
    """``pattern`` with the combination's fields filled in and ``{seed}`` kept; ValueError naming the option."""
    allowed = ", ".join("{" + name + "}" for name in (*PATTERN_FIELDS, "seed"))
    try:
        filled = pattern.format(**fields, seed="{seed}")
    except KeyError as err:
        raise ValueError(f"train {option} {pattern!r}: unknown field {{{err.args[0]}}} (allowed: {allowed})") from None
    except (IndexError, ValueError) as err:
        raise ValueError(f"train {option} {pattern!r}: {err} (allowed fields: {allowed})") from None
    if "{seed}" not in filled:
        raise ValueError(f"train {option} {pattern!r} needs {{seed}}: every extra seed has its own file")
    return filled


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

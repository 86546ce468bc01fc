"""How far a study's verdicts hold: two trainings of the same grid (another set of seeds, another machine)
compared verdict by verdict, and the runs that ended near the line their verdict is drawn on.

A verdict is *asserted* when it is ``solved`` or ``failed`` (:mod:`rnn_gradients.study.verdicts`). Two studies
*contradict* each other on a combination when both assert it and disagree; one asserting what the other leaves
uncertain is a weaker difference, counted apart. ``python -m rnn_gradients compare-verdicts A B`` prints both;
``benchmarks/verdict_robustness.py`` trains the default study again with other seeds and calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnn_gradients.study.grid import GRID_KEYS

ASSERTED = ("solved", "failed")
NEAR = 0.2
"""A run ends *near the line* when its test error is within ±20 % of its solve threshold."""


@dataclass(frozen=True)
class VerdictComparison:
    """Two studies' ``accuracy_summary.csv`` side by side, on the combinations both have."""

    both: pd.DataFrame  # GRID_KEYS, verdict_a, verdict_b, n_solved_a, n_seeds_a, n_solved_b, n_seeds_b

    @property
    def asserted_in_both(self) -> pd.DataFrame:
        return self.both[self.both["verdict_a"].isin(ASSERTED) & self.both["verdict_b"].isin(ASSERTED)]

    @property
    def contradictions(self) -> pd.DataFrame:
        asserted = self.asserted_in_both
        return asserted[asserted["verdict_a"] != asserted["verdict_b"]]

    @property
    def asserted_in_one(self) -> pd.DataFrame:
        a, b = self.both["verdict_a"].isin(ASSERTED), self.both["verdict_b"].isin(ASSERTED)
        return self.both[a != b]

    def lines(self) -> list[str]:
        """The comparison in words: counts, then each contradiction and each one-sided verdict with its k/n."""
        n, both = len(self.both), len(self.asserted_in_both)
        lines = [
            f"{n} combinations in both studies; asserted (solved or failed) in both: {both} ({both / n:.0%}); "
            f"contradicting (solved in one, failed in the other): {len(self.contradictions)}; asserted in one "
            f"and uncertain in the other: {len(self.asserted_in_one)}"
        ]
        for title, rows in (("contradicting", self.contradictions), ("asserted in one", self.asserted_in_one)):
            for row in rows.itertuples(index=False):
                name = "/".join(str(getattr(row, key)) for key in GRID_KEYS)
                lines.append(
                    f"  {title}: {name}: {row.verdict_a} ({row.n_solved_a}/{row.n_seeds_a}) vs "
                    f"{row.verdict_b} ({row.n_solved_b}/{row.n_seeds_b})"
                )
        return lines


def compare_verdicts(a: pd.DataFrame, b: pd.DataFrame) -> VerdictComparison:
    """Compare two ``accuracy_summary.csv`` tables on the combinations they share."""
    columns = [*GRID_KEYS, "verdict", "n_solved", "n_seeds"]
    both = a[columns].merge(b[columns], on=list(GRID_KEYS), suffixes=("_a", "_b"))
    return VerdictComparison(both.reset_index(drop=True))


def margin_lines(accuracy: pd.DataFrame) -> list[str]:
    """How the runs of one ``accuracy.csv`` ended against their threshold: solved on validation but failed on
    the test set (and the reverse), and how many ended within ±20 % of the threshold."""
    valid = ~accuracy["diverged"].astype(bool)
    ratio = accuracy["error"] / accuracy["solve_threshold"]
    val_solved = accuracy["steps_to_solve"].notna() & valid
    solved = accuracy["solved"].astype(bool)
    near = valid & np.isfinite(ratio) & ((ratio - 1).abs() < NEAR)
    close_misses = val_solved & ~solved & (ratio < 1 + NEAR)
    return [
        f"{len(accuracy)} runs: {int(solved.sum())} solved on the test set; {int(val_solved.sum())} reached the "
        f"threshold on validation, of which {int((val_solved & ~solved).sum())} failed on the test set "
        f"({int(close_misses.sum())} of those by less than {NEAR:.0%} of the threshold); "
        f"{int((solved & ~val_solved).sum())} solved on the test set only",
        f"runs that ended within ±{NEAR:.0%} of their threshold: {int(near.sum())} ({near.sum() / len(accuracy):.1%})",
    ]


def read_tables(tables: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy.csv, accuracy_summary.csv) of a tables directory."""
    return pd.read_csv(tables / "accuracy.csv"), pd.read_csv(tables / "accuracy_summary.csv")

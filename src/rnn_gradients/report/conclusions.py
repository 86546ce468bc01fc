"""The report's conclusions: only claims that hold in a strict majority of seeds.

A combination (task, T, cell, strategy) is *solved* when a strict majority of its seeds solved the task, *failed*
when a strict majority did not, and *split* otherwise (:func:`~rnn_gradients.report.results.verdict`); a diverged
seed did not solve. Every claim names its k/n; a split result is called split. With one seed per combination the
conclusions say first that each statement rests on a single run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnn_gradients.report.format import code, escape, fraction, num, power_of_ten
from rnn_gradients.report.results import Results
from rnn_gradients.report.text import divergence_by_clipping, listing
from rnn_gradients.report.theory import theory_line

VERDICT_WORDS = {"solved": "solved by", "failed": "failed by", "split": "split for"}


def _with_seeds(rows: pd.DataFrame, name: str) -> str:
    """ "`lstm` (3/3) and `gru` (2/3)": each row's ``name`` column with its seeds solved."""
    return listing(f"{code(getattr(r, name))} ({fraction(r.n_solved, r.n_seeds)})" for r in rows.itertuples())


def seeds_line(results: Results) -> str:
    """How to read the claims below: one seed, or majorities of seeds."""
    low, high = results.n_seeds
    if high == 1:
        return (
            "- **One seed.** Every combination was trained with one seed, so each statement below rests on a single "
            "run per combination."
        )
    one = " Some combinations have a single seed; their statements rest on one run." if low == 1 else ""
    return (
        "- **Seeds.** A statement below holds in a strict majority of the seeds of its combination (k/n: seeds "
        f"solved of seeds trained); a combination without such a majority is called split.{one}"
    )


def _rescues(results: Results, part: pd.DataFrame, cells: list[str]) -> str:
    """What rescues each of these cells (which the control did not solve): the other strategies under which a
    majority of its seeds solved the task, and those under which its seeds split; cells with neither come first."""
    unrescued, rescued = [], []
    for cell in cells:
        others = part[(part["cell"] == cell) & (part["strategy"] != results.control)]
        solved, split = others[others["verdict"] == "solved"], others[others["verdict"] == "split"]
        splits = f"split with {_with_seeds(split, 'strategy')}" if len(split) else ""
        if len(solved):
            also = f" ({splits})" if splits else ""
            rescued.append(f"{code(cell)} is rescued by {_with_seeds(solved, 'strategy')}{also}")
        elif splits:
            rescued.append(f"{code(cell)} is {splits}")
        else:
            unrescued.append(code(cell))
    parts = ([f"no strategy rescues {listing(unrescued)}"] if unrescued else []) + rescued
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "." if text else ""


def task_line(results: Results, task: str) -> str | None:
    """Per task at its longest T: the control's verdict per cell, then what rescues each cell it did not solve.

    Without a control: for each cell, the strategies under which a majority of its seeds solved the task.
    """
    combos = results.at_longest(results.combinations())
    part = combos[combos["task"] == task]
    if part.empty:
        return None
    first = part.iloc[0]
    head = f"- **{escape(task)}, T = {first['seq_len']}** ({escape(first['metric'])}, chance {num(first['chance'])})."
    if results.control is None:
        per_cell = []
        for cell in results.cells:
            own = part[part["cell"] == cell]
            solved, split = own[own["verdict"] == "solved"], own[own["verdict"] == "split"]
            per_cell.append(
                f"{code(cell)}: {_with_seeds(solved, 'strategy') if len(solved) else 'none'}"
                + (f" (split: {_with_seeds(split, 'strategy')})" if len(split) else "")
            )
        return f"{head} No control; the strategies under which each cell solved it — " + "; ".join(per_cell) + "."
    control = part[part["strategy"] == results.control]
    groups = [
        f"{VERDICT_WORDS[v]} {_with_seeds(control[control['verdict'] == v], 'cell')}"
        for v in VERDICT_WORDS
        if (control["verdict"] == v).any()
    ]
    text = f"{head} Under the control {code(results.control)}: " + "; ".join(groups) + "."
    unsolved = list(control.loc[control["verdict"] != "solved", "cell"])
    if unsolved and len(results.strategies) > 1:
        text += " " + _rescues(results, part, unsolved)
    return text


def vanishing_line(results: Results) -> str | None:
    """The factor e^(slope·T) the gradient keeps over the longest T at initialization under the control, per cell."""
    if results.control is None:
        return None
    init = results.decay_rates
    init = results.at_longest(init[(init["phase"] == "init") & (init["strategy"] == results.control)])
    exponent = (init["decay_per_step"] * init["seq_len"] / np.log(10)).dropna()
    if exponent.empty:
        return None
    stats = exponent.groupby(init.loc[exponent.index, "cell"]).agg(["mean", "min", "max", "size"])
    several = bool((stats["size"] > 1).any())
    factors = ", ".join(
        f"{code(cell)} {power_of_ten(stats.loc[cell, 'mean'])}"
        + (
            f" ({power_of_ten(stats.loc[cell, 'min'])} to {power_of_ten(stats.loc[cell, 'max'])})"
            if stats.loc[cell, "size"] > 1
            else ""
        )
        for cell in results.cells
        if cell in stats.index
    )
    return (
        f"- **Vanishing.** At initialization under {code(results.control)}, the fitted decay per step puts the "
        "gradient reaching back over the longest sequence of each task at this fraction of its value at the last "
        "step (e^(slope·T), mean over tasks and seeds"
        + (", range in brackets" if several else "")
        + "; below about $10^{-38}$ float32 holds only zeros, so the smallest factors are extrapolated): "
        + factors
        + "."
    )


def exploding_line(results: Results) -> str | None:
    """Runs that diverged without and with clipping (None when nothing diverged and nothing clips)."""
    if not (results.accuracy["diverged"].any() or results.strategies_where("clipped")):
        return None
    counts = divergence_by_clipping(results)
    parts = [
        f"{fraction(*counts[flag])} runs {'with' if flag else 'without'} clipping diverged"
        for flag in (False, True)
        if flag in counts
    ]
    return "- **Exploding.** " + "; ".join(parts) + "."


def conclusions(results: Results) -> str:
    """The conclusions as a Markdown list (see the module docstring)."""
    lines = [
        seeds_line(results),
        *(task_line(results, task) for task in results.tasks),
        vanishing_line(results),
        exploding_line(results),
        theory_line(results),
    ]
    return "\n".join(line for line in lines if line is not None)

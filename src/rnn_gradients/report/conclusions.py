"""The report's conclusions: only claims that the seeds settle.

A combination (task, T, cell, strategy) is *solved* when the Wilson interval of its solve rate lies wholly above
one half, *failed* when it lies wholly below and *uncertain* otherwise (the ``verdict`` column of
``accuracy_summary.csv``: :mod:`rnn_gradients.study.verdicts`); a diverged seed did not solve. Every claim names
its k/n; an uncertain combination is called uncertain, and "rescues" is said only where the control's verdict
(failed) and the remedy's (solved) are both settled. With one seed per combination the conclusions say first that
each statement rests on a single run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnn_gradients.report.format import code, escape, fraction, num, percent, power_of_ten
from rnn_gradients.report.i18n import msg
from rnn_gradients.report.results import Results
from rnn_gradients.report.tables import metric_name
from rnn_gradients.report.text import divergence_by_clipping, listing
from rnn_gradients.report.theory import theory_line
from rnn_gradients.study.verdicts import settle_probability

VERDICTS = ("solved", "failed", "uncertain")


def _with_seeds(rows: pd.DataFrame, name: str) -> str:
    """ "`lstm` (3/3) and `gru` (2/3)": each row's ``name`` column with its seeds solved."""
    return listing(f"{code(getattr(r, name))} ({fraction(r.n_solved, r.n_seeds)})" for r in rows.itertuples())


def seeds_line(results: Results) -> str:
    """How to read the claims below: one seed, or majorities of seeds."""
    low, high = results.n_seeds
    if high == 1:
        return msg("conclusions.one_seed")
    listed = len(results.config["seeds"])
    max_seeds = results.config["verdicts"]["max_seeds"]
    seeds = msg(
        "conclusions.seeds",
        confidence=percent(results.confidence),
        settle=percent(settle_probability(listed, max_seeds, results.confidence)),
        listed=listed,
        first=percent(settle_probability(listed, listed, results.confidence)),
    )
    return seeds + (" " + msg("conclusions.some_single") if low == 1 else "")


def _rescues(results: Results, part: pd.DataFrame, cells: list[str]) -> str:
    """What rescues each of these cells (which the control failed): the other strategies whose verdict is solved,
    and those whose verdict is uncertain; cells with neither come first."""
    unrescued, rescued = [], []
    for cell in cells:
        others = part[(part["cell"] == cell) & (part["strategy"] != results.control)]
        solved, split = others[others["verdict"] == "solved"], others[others["verdict"] == "uncertain"]
        splits = msg("conclusions.split_with", strategies=_with_seeds(split, "strategy")) if len(split) else ""
        if len(solved):
            also = f" ({splits})" if splits else ""
            rescued.append(
                msg("conclusions.rescued", cell=code(cell), strategies=_with_seeds(solved, "strategy")) + also
            )
        elif splits:
            rescued.append(msg("conclusions.split_only", cell=code(cell), split=splits))
        else:
            unrescued.append(code(cell))
    parts = ([msg("conclusions.unrescued", cells=listing(unrescued, negated=True))] if unrescued else []) + rescued
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
    head = msg(
        "conclusions.task_head",
        task=escape(task),
        seq_len=first["seq_len"],
        metric=metric_name(first["metric"]),
        chance=num(first["chance"]),
    )
    if results.control is None:
        per_cell = []
        for cell in results.cells:
            own = part[part["cell"] == cell]
            solved, split = own[own["verdict"] == "solved"], own[own["verdict"] == "uncertain"]
            per_cell.append(
                f"{code(cell)}: {_with_seeds(solved, 'strategy') if len(solved) else msg('conclusions.no_strategy')}"
                + (" " + msg("conclusions.split_list", strategies=_with_seeds(split, "strategy")) if len(split) else "")
            )
        return f"{head} " + msg("conclusions.without_control", per_cell="; ".join(per_cell))
    control = part[part["strategy"] == results.control]
    groups = [
        msg(f"conclusions.verdict.{v}", cells=_with_seeds(control[control["verdict"] == v], "cell"))
        for v in VERDICTS
        if (control["verdict"] == v).any()
    ]
    text = f"{head} " + msg("conclusions.under_control", control=code(results.control), groups="; ".join(groups))
    # a rescue compares two verdicts: asserted only where the control's failure is settled
    failed = list(control.loc[control["verdict"] == "failed", "cell"])
    if failed and len(results.strategies) > 1:
        text += " " + _rescues(results, part, failed)
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
    factors = msg("number.list_separator").join(  # a list of numbers: "; " where the decimal mark is a comma
        f"{code(cell)} {power_of_ten(stats.loc[cell, 'mean'])}"
        + (
            " ("
            + msg("conclusions.factor_range", low=power_of_ten(stats.loc[cell, "min"]),
                  high=power_of_ten(stats.loc[cell, "max"]))
            + ")"
            if stats.loc[cell, "size"] > 1
            else ""
        )
        for cell in results.cells
        if cell in stats.index
    )  # fmt: skip
    return msg(
        "conclusions.vanishing_range" if several else "conclusions.vanishing",
        control=code(results.control),
        smallest="10^−38^",
        factors=factors,
    )


def exploding_line(results: Results) -> str | None:
    """Runs that diverged without and with clipping (None when nothing diverged and nothing clips)."""
    if not (results.accuracy["diverged"].any() or results.strategies_where("clipped")):
        return None
    counts = divergence_by_clipping(results)
    parts = [
        msg("conclusions.diverged_with" if flag else "conclusions.diverged_without", runs=fraction(*counts[flag]))
        for flag in (False, True)
        if flag in counts
    ]
    return msg("conclusions.exploding", parts="; ".join(parts))


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

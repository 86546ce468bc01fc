"""The figures of what the networks achieved: the test metric against T, and the solved seeds of every combination.

Like :mod:`rnn_gradients.report.figures`, each ``plot_*`` function takes the
:class:`~rnn_gradients.report.results.Results` and returns a seaborn figure, or None when there is nothing to draw.
Every seed is shown: a point per seed around the seeds' mean, or "k/n" seeds solved; a diverged run has no value and
is counted at the top of its panel (✕ and the count) instead of being plotted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from rnn_gradients.report.figure_style import (
    diverged_handle,
    facet_size,
    legend_below,
    line,
    log_axis,
    mark_diverged,
    themed,
)
from rnn_gradients.report.i18n import msg
from rnn_gradients.report.palette import INK
from rnn_gradients.report.results import Comparison, Results


def metric_label(metric: str) -> str:
    """The y axis of a metric: "test MSE (lower is better)"; a metric the catalogue does not know, as written."""
    return msg(f"figure.metric.{metric}") if metric in ("mse", "accuracy") else metric


# ---- the test metric against T ------------------------------------------------------------------------------


def metric_runs(results: Results, comparison: Comparison | None) -> pd.DataFrame:
    """The runs a comparison shows (:meth:`Results.runs`: no value for a diverged run); none without a comparison
    or when no run of it has a value (every one diverged), since there is then no metric to draw."""
    runs = results.runs()
    if comparison is None:
        return runs.iloc[0:0]
    runs = runs[runs["cell"].isin(comparison.cells) & runs["strategy"].isin(comparison.strategies)]
    return runs if runs["value"].notna().any() else runs.iloc[0:0]


@themed
def plot_metric_vs_length(results: Results, comparison: Comparison | None) -> Figure | None:
    """The test metric of every seed against T (points), the seeds' mean (line), chance (dashed); None without runs.

    Columns are tasks; lines are the comparison's hue (cells or strategies); rows are the values of the other one
    when there are several. The lines of one T are spread a little apart so that every seed shows. A diverged seed
    has no value: it is counted at the top of its panel (✕ and the count).
    """
    runs = metric_runs(results, comparison)
    if runs.empty or comparison is None:
        return None
    hue = comparison.hue
    other = "strategy" if hue == "cell" else "cell"
    hue_order = [h for h in (comparison.cells if hue == "cell" else comparison.strategies) if h in set(runs[hue])]
    row_order = [r for r in (comparison.strategies if hue == "cell" else comparison.cells) if r in set(runs[other])]
    tasks = [t for t in results.tasks if t in set(runs["task"])]
    lengths = {t: sorted(set(runs.loc[runs["task"] == t, "seq_len"])) for t in tasks}
    step = min(0.12, 0.6 / len(hue_order))
    offset = {h: (i - (len(hue_order) - 1) / 2) * step for i, h in enumerate(hue_order)}
    where = zip(runs["task"], runs["seq_len"], runs[hue], strict=True)
    runs = runs.assign(x=[lengths[t].index(n) + offset[h] for t, n, h in where])
    palette = results.palette.hue(hue)
    if hue == "strategy":
        style: dict[str, Any] = {"style": hue, "markers": results.palette.markers, "dashes": False}
    else:
        style = {"marker": "o"}
    rows = {"row": other, "row_order": row_order} if len(row_order) > 1 else {}
    g = sns.relplot(
        runs,
        x="x",
        y="value",
        hue=hue,
        hue_order=hue_order,
        palette=palette,
        col="task",
        col_order=tasks,
        kind="line",
        estimator="mean",
        errorbar=None,
        lw=1.6,
        ms=6,
        legend=False,
        facet_kws={"sharex": False, "sharey": "col"},
        **rows,
        **style,
        **facet_size(len(tasks), 2.6),
    )
    seeds = {"hue": hue, "hue_order": hue_order, "palette": palette, "s": 16, "alpha": 0.55, "linewidth": 0}
    g.map_dataframe(sns.scatterplot, x="x", y="value", legend=False, **seeds)
    g.set_titles("{col_name} · {row_name}" if rows else "{col_name}")
    marked = False
    for key, ax in g.axes_dict.items():
        row_value, task = key if rows else (None, key)
        panel = runs[(runs["task"] == task) & ((runs[other] == row_value) if rows else True)]
        for position, seq_len in enumerate(lengths[task]):
            chance = panel.loc[panel["seq_len"] == seq_len, "chance"]
            if len(chance):
                ax.hlines(chance.iloc[0], position - 0.4, position + 0.4, color=INK, ls="--", lw=1.1)
        for (name, seq_len), count in panel[panel["diverged"]].groupby([hue, "seq_len"]).size().items():
            mark_diverged(ax, lengths[task].index(seq_len) + offset[name], int(count), palette[name])
            marked = True
        metric = str(panel["metric"].iloc[0]) if len(panel) else ""
        if metric == "mse":
            log_axis(ax)
        elif metric == "accuracy":
            ax.set_ylim(-0.02, 1.04)
        ax.set_xticks(range(len(lengths[task])), [str(n) for n in lengths[task]])
        ax.set_xlim(-0.5, len(lengths[task]) - 0.5)
        ax.set_ylabel(metric_label(metric))
        ax.set_xlabel(msg("figure.metric.x_label") if ax in g.axes[-1] else "")
    g.tight_layout()  # room for the y labels of every column, now that they are set
    marker = results.palette.markers if hue == "strategy" else dict.fromkeys(hue_order, "o")
    entries = [(h, line(palette[h], marker[h], lw=1.6)) for h in hue_order]
    entries += [(msg("figure.metric.one_seed"), line("#888888", "o", ls="", markersize=4, alpha=0.7))]
    entries += [(msg("figure.metric.chance"), line(INK, ls="--"))]
    entries += [(msg("figure.metric.diverged"), diverged_handle())] if marked else []
    legend_below(g.figure, entries)
    return g.figure


# ---- solved seeds of every combination ---------------------------------------------------------------------


def _solved_panel(data: pd.DataFrame, *, cells: Sequence[str], strategies: Sequence[str], **_: Any) -> None:
    ax = plt.gca()
    grid = data.set_index(["cell", "strategy"])
    rate = grid["solved_rate"].unstack("strategy").reindex(index=cells, columns=strategies).astype(float)
    label = grid["label"].unstack("strategy").reindex(index=cells, columns=strategies).fillna("")
    sns.heatmap(
        rate,
        ax=ax,
        cmap="cividis",
        vmin=0.0,
        vmax=1.0,
        cbar=False,
        annot=label.to_numpy(),
        fmt="",
        annot_kws={"fontsize": 8.5},
        linewidths=1.5,
        linecolor="white",
        mask=rate.isna(),
    )
    ax.set_facecolor("#f2f2f2")
    ax.set_title(f"{data['task'].iloc[0]}, T = {data['seq_len'].iloc[0]}")


@themed
def plot_solved_heatmap(results: Results) -> Figure | None:
    """Solved seeds per cell × strategy, one panel per task and T: each square reads "k/n" (k of n seeds solved),
    "?" after it when the verdict is uncertain, and "✕d" when d seeds diverged; color is the solved share;
    squares of combinations not in the grid are blank."""
    combinations = results.combinations()
    if combinations.empty:
        return None
    rank = combinations.groupby("task")["seq_len"].rank(method="dense").astype(int) - 1
    counts = zip(
        combinations["n_solved"],
        combinations["n_seeds"],
        combinations["verdict"],
        combinations["n_diverged"],
        strict=True,
    )
    labels = [f"{k}/{n}" + (" ?" if v == "uncertain" else "") + (f"\n✕{d}" if d else "") for k, n, v, d in counts]
    combinations = combinations.assign(rank=rank, label=labels)
    tasks, ncols = list(results.tasks), int(rank.max()) + 1
    cells, strategies = list(results.cells), list(results.strategies)
    width, height = 1.2 + 0.7 * len(strategies), max(1.8, 0.9 + 0.4 * len(cells))
    g = sns.FacetGrid(
        combinations,
        row="task",
        row_order=tasks,
        col="rank",
        col_order=list(range(ncols)),
        height=height,
        aspect=width / height,
        despine=False,
    )
    g.map_dataframe(_solved_panel, cells=cells, strategies=strategies)
    for (task, column), ax in g.axes_dict.items():
        if not ((combinations["task"] == task) & (combinations["rank"] == column)).any():
            ax.set_visible(False)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelrotation=30, length=0)
        ax.tick_params(axis="y", labelrotation=0, length=0)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    colorbar = g.figure.colorbar(
        mpl.cm.ScalarMappable(mpl.colors.Normalize(0.0, 1.0), "cividis"),
        ax=g.axes.ravel().tolist(),
        shrink=0.8,
        pad=0.02,
    )
    colorbar.set_label(msg("figure.solved.colorbar"))
    return g.figure

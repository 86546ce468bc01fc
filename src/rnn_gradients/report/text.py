"""The report's sentences: Markdown built from the study results, one function per place in ``report/report.qmd``.

Every English word the report generates lives here, in :mod:`rnn_gradients.report.conclusions`,
:mod:`rnn_gradients.report.tables` and the figure modules; the report's cells only call these functions. Names and
values from the tables reach the page through :func:`~rnn_gradients.report.format.code` and
:func:`~rnn_gradients.report.format.escape`. A sentence refers to a figure (``@fig-…``) only when that figure is
drawn (the same data functions decide both), and says why when it is not.

The quantities are those of Pascanu, Mikolov & Bengio (2013): the per-step decay rate of ln‖∂L/∂h_t‖ against the
distance k, its prediction, and the recurrent matrix's spectral radius ρ(W_hh) and largest singular value σ_max.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from rnn_gradients.report.figures import flow_profile, trace_panels, trace_strategies
from rnn_gradients.report.format import code, escape, fraction, num, percent
from rnn_gradients.report.outcome_figures import metric_runs
from rnn_gradients.report.results import Comparison, Results
from rnn_gradients.study.grid import GRID_KEYS


def listing(items: Iterable[str]) -> str:
    """ "a, b and c"; "none" for no items."""
    items = list(items)
    return " and ".join([", ".join(items[:-1]), items[-1]]) if len(items) > 1 else "".join(items) or "none"


def codes(names: Iterable[str]) -> str:
    """Names as code, listed: "`a`, `b` and `c`"."""
    return listing(code(n) for n in names)


def counted(n: int, one: str, many: str) -> str:
    """ "1 task", "3 tasks"."""
    return f"{n} {one if n == 1 else many}"


def where(task: str, seq_len: int) -> str:
    """ "adding, T = 60"."""
    return f"{escape(task)}, T = {seq_len}"


def overview_sentence(results: Results) -> str:
    """What the study trains, how many seeds and runs, its control, and how results over seeds are stated."""
    low, high = results.n_seeds
    seeds = counted(high, "seed", "seeds") if low == high else f"{low}–{high} seeds"
    text = (
        f"The study trains {counted(len(results.cells), 'cell type', 'cell types')} ({codes(results.cells)}) under "
        f"{counted(len(results.strategies), 'mitigation strategy', 'mitigation strategies')} "
        f"({codes(results.strategies)}) on {counted(len(results.tasks), 'task', 'tasks')}, with {seeds} per "
        f"combination: {len(results.accuracy)} training runs in all. @tbl-tasks lists the tasks; each is a synthetic "
        "long-dependency problem whose answer depends on inputs about $T$ steps before the read-out, so $T$ sets how "
        "far back the gradient must travel. "
    )
    text += (
        f"The control, against which every remedy is compared, is {code(results.control)}, the strategy without "
        "any intervention. "
        if results.control
        else "The study has no control: no strategy leaves the network as it is (an empty bundle `{}`), so the "
        "sections below compare the strategies with one another and call none of them a remedy. "
    )
    if high == 1:
        return text + (
            "With one seed per combination, every result below rests on a single run; add seeds (`seeds: [0, 1, 2]` "
            "in the config) before reading much into one combination."
        )
    return text + (
        "Results are given as k/n, the seeds solved out of those trained. A combination counts as solved when a "
        "strict majority of its seeds solved the task, as failed when a strict majority did not, and as split "
        "otherwise."
    )


def init_spectrum_sentence(results: Results) -> str | None:
    """Median ρ(W_hh) and σ_max(W_hh) per cell at initialization; None without initialization probes."""
    init = results.decay_rates[results.decay_rates["phase"] == "init"]
    if init.empty:
        return None
    medians = init.groupby("cell")[["spectral_radius", "sigma_max"]].median()
    parts = [
        f"{code(cell)} $\\rho = {num(medians.loc[cell, 'spectral_radius'])}$, "
        f"$\\sigma_{{\\max}} = {num(medians.loc[cell, 'sigma_max'])}$"
        for cell in results.cells
        if cell in medians.index
    ]
    return (
        "Measured at initialization (median over all strategies, tasks and seeds), the recurrent matrices of "
        "this study had " + "; ".join(parts) + ". The bound is stated for the vanilla cells only: a gated "
        "cell's Jacobian is not $\\operatorname{diag}(\\phi')\\,W_{hh}$."
    )


def flow_sentence(results: Results) -> str:
    """The sentence introducing the gradient-flow figure, or why there is none."""
    table = " @tbl-decay gives the measured decay rates." if len(results.decay_rates) else ""
    if results.control is None:
        return "The study has no control, so there is no unmitigated gradient flow to show." + table
    if flow_profile(results, results.control).empty:
        return (
            f"The tables hold no finite gradient probe of the control {code(results.control)} at the longest "
            "length of any task (its runs diverged before a probe, or their gradients underflowed), so there is no "
            "figure of the gradient flow." + table
        )
    return (
        f"@fig-flow shows the measured gradient norms of the hidden states under the control {code(results.control)} "
        "at the longest sequence length of each task, at initialization (the probe before the first update) "
        "and after training (each run's last probe). A straight line on the logarithmic axis is a constant "
        "per-step factor; its slope is the decay rate of @tbl-decay."
    )


def _seed_list(seeds: Sequence[int], steps: Sequence[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]} at step {steps[0]}"
    if len(set(steps)) == 1:
        return f"seeds {listing(map(str, seeds))}, each at step {steps[0]}"
    return f"seeds {listing(map(str, seeds))} at steps {listing(map(str, steps))}"


def exploding_paragraph(results: Results) -> str:
    """Which runs the traces figure follows (or that there is none), and every run that diverged."""
    selected, scaled = trace_strategies(results), results.strategies_where("scaled")
    if not trace_panels(results, selected):
        text = "No run has a finite pre-clip gradient norm, so there is no figure of the norms during training. "
    else:
        rule = (
            f"the strategies with the scaled recurrent initialization ({codes(scaled)})"
            if scaled
            else "every strategy, since none uses the scaled initialization; the panels are the tasks, lengths and "
            "cells with the largest pre-clip gradient norms"
        )
        added = [s for s in selected if s not in scaled] if scaled else []
        text = f"@fig-traces follows the pre-clip gradient norm during training for {rule}"
        text += f", with the clipped strategies {codes(added)} for comparison. " if added else ". "
    runs = results.accuracy
    diverged = results.in_order(runs[runs["diverged"]])
    if diverged.empty:
        return text + f"None of the {len(runs)} runs diverged."
    unclipped = sum(not results.strategies[s].clipped for s in diverged["strategy"])
    listed = [
        f"{code(cell)} under {code(strategy)} on {where(task, seq_len)}: "
        + _seed_list(list(group["seed"]), [int(s) for s in group["diverged_step"]])
        for (task, seq_len, cell, strategy), group in diverged.groupby(list(GRID_KEYS), sort=False)
    ]
    return text + (
        f"{fraction(len(diverged), len(runs))} runs diverged (the training loop met a NaN or infinite loss or "
        f"gradient), {unclipped} of them without clipping: " + "; ".join(listed) + "."
    )


def _solved_counts(results: Results, strategies: Sequence[str], cells: Sequence[str]) -> pd.DataFrame:
    """Seeds solved and trained at the longest T of each task, per strategy, all these cells together."""
    combos = results.at_longest(results.combinations())
    combos = combos[combos["strategy"].isin(strategies) & combos["cell"].isin(cells)]
    return combos.groupby("strategy")[["n_solved", "n_seeds"]].sum()


def _no_metric_figure(names: str) -> str:
    return f"Every run of {names} diverged, so there is no metric to draw. "


def activations_sentence(results: Results) -> str:
    """Seeds solved by each vanilla cell under the control at the longest T, or why the comparison is missing."""
    comparison = results.comparison("activations")
    if comparison is None:
        vanilla = results.vanilla_cells
        if not vanilla:
            return f"This grid has no vanilla cell, so it compares no activations (cells: {codes(results.cells)})."
        if results.control is None:
            return "The study has no control, so the activations are not compared without mitigation."
        missing = "`rnn_relu` cell" if "rnn_relu" not in vanilla else "tanh or sigmoid RNN"
        return f"This grid cannot compare activations: it has no {missing} (vanilla cells: {codes(vanilla)})."
    combos = results.at_longest(results.combinations())
    combos = combos[combos["cell"].isin(comparison.cells) & (combos["strategy"] == results.control)]
    per_task = [
        f"on {escape(task)} (T = {part['seq_len'].iloc[0]}): "
        + ", ".join(f"{code(r.cell)} {fraction(r.n_solved, r.n_seeds)}" for r in part.itertuples())
        for task, part in combos.groupby("task", sort=False)
    ]
    shown = (
        f"@fig-activations compares {codes(comparison.cells)} under the control {code(results.control)}. "
        if not metric_runs(results, comparison).empty
        else _no_metric_figure(codes(comparison.cells))
    )
    return shown + "Seeds solved at the longest length of each task: " + "; ".join(per_task) + "."


def _strategy_comparison(results: Results, section: str, comparison: Comparison) -> str:
    """The sentence of a section that compares strategies (normalization, clipping) for every cell."""
    chosen = [s for s in comparison.strategies if s != results.control]
    if metric_runs(results, comparison).empty:
        shown = _no_metric_figure(codes(chosen))
    elif results.control:
        shown = f"@fig-{section} compares {codes(chosen)} with the control {code(results.control)} for every cell. "
    else:
        shown = f"@fig-{section} shows {codes(chosen)} for every cell; the study has no control to compare with. "
    counts = _solved_counts(results, comparison.strategies, comparison.cells)
    return shown + (
        "Runs solved at the longest length of each task, all cells together: "
        + "; ".join(
            f"{code(s)} {fraction(counts.loc[s, 'n_solved'], counts.loc[s, 'n_seeds'])}"
            for s in comparison.strategies
            if s in counts.index
        )
        + "."
    )


def normalization_sentence(results: Results) -> str:
    """Runs solved at the longest T by each normalized strategy (and the control), or that there is none."""
    comparison = results.comparison("normalization")
    if comparison is None:
        return "This grid has no normalization strategy (no strategy sets `norm` to `layer` or `batch`)."
    return _strategy_comparison(results, "normalization", comparison)


def divergence_by_clipping(results: Results) -> dict[bool, tuple[int, int]]:
    """clipped -> (runs diverged, runs), for the runs with and without a clipping strategy."""
    clipped = results.accuracy["strategy"].map(lambda s: results.strategies[s].clipped)
    counts = results.accuracy.groupby(clipped)["diverged"].agg(["sum", "count"])
    return {bool(flag): (int(row["sum"]), int(row["count"])) for flag, row in counts.iterrows()}


def clipping_sentence(results: Results) -> str:
    """Runs solved with and without clipping, the share of steps rescaled, and divergences with and without it."""
    comparison = results.comparison("clipping")
    if comparison is None:
        return "This grid has no clipping strategy (no strategy sets `clip_norm` or `clip_value`)."
    steps = results.gradient_norms[results.gradient_norms["strategy"].isin(results.strategies_where("clipped"))]
    share = f"The clipped strategies rescaled {percent(steps['clipped'].mean())} of their training steps; "
    divergence = "; ".join(
        f"{'with' if flag else 'without'} clipping {fraction(*counts)} runs diverged"
        for flag, counts in sorted(divergence_by_clipping(results).items(), reverse=True)
    )
    return _strategy_comparison(results, "clipping", comparison) + f" {share if len(steps) else ''}{divergence}."


def gates_sentence(results: Results) -> str:
    """Runs solved at the longest T by gated and by vanilla cells under the control, or why that is missing."""
    comparison = results.comparison("gates")
    if comparison is None:
        if not results.gated_cells:
            return f"This grid has no gated cell (cells: {codes(results.cells)})."
        return "The study has no control, so the cells are not compared without mitigation."
    combos = results.at_longest(results.combinations())
    combos = combos[combos["strategy"] == results.control]
    gated = combos["cell"].isin(results.gated_cells)
    parts = [
        f"{label} cells solved {fraction(combos.loc[mask, 'n_solved'].sum(), combos.loc[mask, 'n_seeds'].sum())} runs"
        for label, mask in (("gated", gated), ("vanilla", ~gated))
        if mask.any()
    ]
    beside = " beside the vanilla cells" if results.vanilla_cells else ""
    shown = (
        f"@fig-gates shows {codes(results.gated_cells)}{beside} under the control {code(results.control)}. "
        if not metric_runs(results, comparison).empty
        else _no_metric_figure(codes(comparison.cells))
    )
    return shown + "At the longest length of each task, " + " and ".join(parts) + "."

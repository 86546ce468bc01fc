"""The report's sentences: Markdown built from the study results, one function per place in ``report/report.qmd``.

The words come from the message catalogue of the current language (:func:`~rnn_gradients.report.i18n.msg`); these
functions choose which message applies and fill in its values. The report's cells only call them. Names and
values from the tables reach the page through :func:`~rnn_gradients.report.format.code` and
:func:`~rnn_gradients.report.format.escape`. A sentence refers to a figure (``@fig-…``) only when that figure is
drawn (the same data functions decide both), and says why when it is not.

The quantities are those of Pascanu, Mikolov & Bengio (2013): the per-step decay rate of ln‖∂L/∂h_t‖ against the
distance k, its prediction, and the recurrent matrix's spectral radius ρ(W_hh) and largest singular value σ_max.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import quote

import pandas as pd

from rnn_gradients.report.figures import flow_profile, trace_panels, trace_strategies
from rnn_gradients.report.format import code, escape, fraction, num, percent
from rnn_gradients.report.i18n import catalogue, current_language, msg
from rnn_gradients.report.outcome_figures import metric_runs
from rnn_gradients.report.results import Comparison, Results
from rnn_gradients.study.grid import GRID_KEYS


def listing(items: Iterable[str], *, negated: bool = False) -> str:
    """ "a, b and c" ("a, b or c" after a negation); the catalogue's word for none for no items."""
    items = list(items)
    if len(items) > 1:
        joined = msg("list.separator").join(items[:-1])
        return msg("list.nor" if negated else "list.and", first=joined, last=items[-1])
    return "".join(items) or msg("list.none")


def codes(names: Iterable[str]) -> str:
    """Names as code, listed: "`a`, `b` and `c`"."""
    return listing(code(n) for n in names)


def where(task: str, seq_len: int) -> str:
    """ "adding, T = 60"."""
    return f"{escape(task)}, T = {seq_len}"


def language_line(pages: dict[str, str]) -> str:
    """The page's first line: the mark of the language the cells write in (``report/languages.lua`` stops a render
    whose page is in another language), and links to this report in the other languages (``pages``: language ->
    file name in the same folder, as :func:`~rnn_gradients.report.render.language_pages` gives them)."""
    lang = current_language()
    mark = f"[]{{.report-language lang={lang}}}"
    others = [other for other in pages if other != lang]
    if not others:
        return mark
    links = [
        f"[{catalogue(other)['language.self']}](<{quote(pages[other])}>){{hreflang={other} lang={other}}}"
        for other in others
    ]
    return mark + msg("language.links", n=len(others), links=listing(links))


JACOBIAN = "$\\operatorname{diag}(\\phi')\\,W_{hh}$"
"""A vanilla cell's Jacobian ∂h_t/∂h_{t−1}, as it appears in the sentences of every language."""


def overview_sentence(results: Results) -> str:
    """What the study trains, how many seeds and runs, its control, and how results over seeds are stated."""
    low, high = results.n_seeds
    seeds = msg("count.seeds", n=high) if low == high else msg("count.seed_range", low=low, high=high)
    text = msg(
        "overview.trains",
        cells=msg("count.cell_types", n=len(results.cells)),
        cell_names=codes(results.cells),
        strategies=msg("count.strategies", n=len(results.strategies)),
        strategy_names=codes(results.strategies),
        tasks=msg("count.tasks", n=len(results.tasks)),
        seeds=seeds,
        runs=len(results.accuracy),
    )
    control = msg("overview.control", control=code(results.control)) if results.control else msg("overview.no_control")
    if high == 1:
        return f"{text} {control} " + msg("overview.one_seed")
    training = results.config["training"]
    rule = msg(
        "overview.majorities",
        confidence=percent(results.confidence),
        max_seeds=results.config["verdicts"]["max_seeds"],
        stop=percent(training["stop_fraction"]),
        threshold=percent(training["solved_fraction"]),
    )
    return f"{text} {control} {rule}"


def init_spectrum_sentence(results: Results) -> str | None:
    """Median ρ(W_hh) and σ_max(W_hh) per cell at initialization; None without initialization probes."""
    init = results.decay_rates[results.decay_rates["phase"] == "init"]
    if init.empty:
        return None
    medians = init.groupby("cell")[["spectral_radius", "sigma_max"]].median()
    parts = [
        msg(
            "spectrum.cell",
            cell=code(cell),
            rho=f"$\\rho$ = {num(medians.loc[cell, 'spectral_radius'])}",
            sigma=f"$\\sigma_{{\\max}}$ = {num(medians.loc[cell, 'sigma_max'])}",
        )
        for cell in results.cells
        if cell in medians.index
    ]
    return msg("spectrum.sentence", values="; ".join(parts), jacobian=JACOBIAN)


def flow_sentence(results: Results) -> str:
    """The sentence introducing the gradient-flow figure, or why there is none."""
    table = " " + msg("flow.table") if len(results.decay_rates) else ""
    if results.control is None:
        return msg("flow.no_control") + table
    if flow_profile(results, results.control).empty:
        return msg("flow.no_probe", control=code(results.control)) + table
    return msg("flow.shown", control=code(results.control))


def _seed_list(seeds: Sequence[int], steps: Sequence[int]) -> str:
    if len(seeds) == 1:
        return msg("exploding.seed_at_step", seed=seeds[0], step=steps[0])
    if len(set(steps)) == 1:
        return msg("exploding.seeds_at_step", seeds=listing(map(str, seeds)), step=steps[0])
    return msg("exploding.seeds_at_steps", seeds=listing(map(str, seeds)), steps=listing(map(str, steps)))


def exploding_paragraph(results: Results) -> str:
    """Which runs the traces figure follows (or that there is none), and every run that diverged."""
    selected, scaled = trace_strategies(results), results.strategies_where("scaled")
    if not trace_panels(results, selected):
        text = msg("exploding.no_figure") + " "
    else:
        rule = msg("exploding.scaled", names=codes(scaled)) if scaled else msg("exploding.every_strategy")
        added = [s for s in selected if s not in scaled] if scaled else []
        text = msg("exploding.figure", rule=rule)
        text += msg("exploding.with_clipped", names=codes(added)) + " " if added else ". "
    runs = results.accuracy
    diverged = results.in_order(runs[runs["diverged"]])
    if diverged.empty:
        return text + msg("exploding.none_diverged", n=len(runs))
    unclipped = sum(not results.strategies[s].clipped for s in diverged["strategy"])
    listed = [
        msg("exploding.run", cell=code(cell), strategy=code(strategy), where=where(task, seq_len))
        + _seed_list(list(group["seed"]), [int(s) for s in group["diverged_step"]])
        for (task, seq_len, cell, strategy), group in diverged.groupby(list(GRID_KEYS), sort=False)
    ]
    return text + msg(
        "exploding.diverged",
        runs=fraction(len(diverged), len(runs)),
        unclipped=unclipped,
        listed="; ".join(listed),
    )


def _solved_counts(results: Results, strategies: Sequence[str], cells: Sequence[str]) -> pd.DataFrame:
    """Seeds solved and trained at the longest T of each task, per strategy, all these cells together."""
    combos = results.at_longest(results.combinations())
    combos = combos[combos["strategy"].isin(strategies) & combos["cell"].isin(cells)]
    return combos.groupby("strategy")[["n_solved", "n_seeds"]].sum()


def _control_limited(results: Results, key: str, cells: Sequence[str]) -> str:
    """Why a section that compares cells under the control cannot: the control names the cells it applies to."""
    return msg(
        key,
        control=code(results.control or ""),
        trained=codes(results.control_cells),
        cells=codes(cells),
    )


def _no_metric_figure(names: str) -> str:
    return msg("remedy.no_metric", names=names) + " "


def activations_sentence(results: Results) -> str:
    """Seeds solved by each vanilla cell under the control at the longest T, or why the comparison is missing."""
    comparison = results.comparison("activations")
    if comparison is None:
        vanilla = results.vanilla_cells
        if not vanilla:
            return msg("activations.no_vanilla", cells=codes(results.cells))
        if results.control is None:
            return msg("activations.no_control")
        missing = "activations.no_relu" if "rnn_relu" not in vanilla else "activations.no_saturating"
        if len(vanilla) > 1 and "rnn_relu" in vanilla:  # the grid could compare them, but its control does not
            return _control_limited(results, "activations.control_limited", vanilla)
        return msg(missing, cells=codes(vanilla))
    combos = results.at_longest(results.combinations())
    combos = combos[combos["cell"].isin(comparison.cells) & (combos["strategy"] == results.control)]
    per_task = [
        msg("activations.task", task=escape(task), seq_len=part["seq_len"].iloc[0])
        + ", ".join(f"{code(r.cell)} {fraction(r.n_solved, r.n_seeds)}" for r in part.itertuples())
        for task, part in combos.groupby("task", sort=False)
    ]
    shown = (
        msg("activations.figure", cells=codes(comparison.cells), control=code(results.control)) + " "
        if not metric_runs(results, comparison).empty
        else _no_metric_figure(codes(comparison.cells))
    )
    return shown + msg("activations.solved", per_task="; ".join(per_task))


def _strategy_comparison(results: Results, section: str, comparison: Comparison) -> str:
    """The sentence of a section that compares strategies (normalization, clipping) for the cells they train."""
    chosen = [s for s in comparison.strategies if s != results.control]
    if metric_runs(results, comparison).empty:
        shown = _no_metric_figure(codes(chosen))
    elif results.control:
        shown = msg(
            "remedy.figure",
            label=f"@fig-{section}",
            names=codes(chosen),
            control=code(results.control),
            cells=codes(comparison.cells),
        )
        shown += " "
    else:
        shown = msg(
            "remedy.figure_no_control", label=f"@fig-{section}", names=codes(chosen), cells=codes(comparison.cells)
        )
        shown += " "
    counts = _solved_counts(results, comparison.strategies, comparison.cells)
    solved = "; ".join(
        f"{code(s)} {fraction(counts.loc[s, 'n_solved'], counts.loc[s, 'n_seeds'])}"
        for s in comparison.strategies
        if s in counts.index
    )
    return shown + msg("remedy.solved", solved=solved)


def normalization_sentence(results: Results) -> str:
    """Runs solved at the longest T by each normalized strategy (and the control), or that there is none."""
    comparison = results.comparison("normalization")
    if comparison is None:
        return msg("normalization.none")
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
        return msg("clipping.none")
    steps = results.gradient_norms[results.gradient_norms["strategy"].isin(results.strategies_where("clipped"))]
    share = msg("clipping.share", share=percent(steps["clipped"].mean())) + " " if len(steps) else ""
    divergence = "; ".join(
        msg("clipping.diverged_with" if flag else "clipping.diverged_without", runs=fraction(*counts))
        for flag, counts in sorted(divergence_by_clipping(results).items(), reverse=True)
    )
    return _strategy_comparison(results, "clipping", comparison) + f" {share}{divergence}."


def gates_sentence(results: Results) -> str:
    """Runs solved at the longest T by gated and by vanilla cells under the control, or why that is missing."""
    comparison = results.comparison("gates")
    if comparison is None:
        if not results.gated_cells:
            return msg("gates.no_gated", cells=codes(results.cells))
        if results.control is None:
            return msg("gates.no_control")
        return _control_limited(results, "gates.control_limited", results.gated_cells)
    combos = results.at_longest(results.combinations())
    combos = combos[combos["strategy"] == results.control]
    gated = combos["cell"].isin(results.gated_cells)
    parts = [
        msg(key, runs=fraction(combos.loc[mask, "n_solved"].sum(), combos.loc[mask, "n_seeds"].sum()))
        for key, mask in (("gates.gated_solved", gated), ("gates.vanilla_solved", ~gated))
        if mask.any()
    ]
    gated_cells = [c for c in comparison.cells if c in results.gated_cells]
    key = "gates.figure_beside" if len(gated_cells) < len(comparison.cells) else "gates.figure"
    shown = (
        msg(key, cells=codes(gated_cells), control=code(results.control)) + " "
        if not metric_runs(results, comparison).empty
        else _no_metric_figure(codes(comparison.cells))
    )
    return shown + msg("gates.solved", parts=listing(parts))

"""The report's figures: seaborn figure-level plots of the tidy study tables, plus small per-panel overlays.

Each ``plot_*`` function takes the :class:`~rnn_gradients.report.results.Results` (the data, the orderings and the
:class:`~rnn_gradients.report.palette.Palette`) and returns a matplotlib Figure, or None when the study holds nothing
to draw (the report's text then says why); :func:`~rnn_gradients.report.figure_style.figure_png` turns a figure into
PNG bytes and releases it. Overlays that are not data of one series (chance levels, clip thresholds, divergence
marks, the bound's diagonal) are drawn on the panels seaborn made.

Every title, axis label and legend entry comes from the message catalogue of the current language
(:func:`~rnn_gradients.report.i18n.msg`); names from the tables (tasks, cells, strategies) and formulas stay as they
are, and tick labels use the language's decimal separator (:func:`~rnn_gradients.report.figure_style.themed`).

Statistics over seeds: every metric figure shows each seed (a point, a line, or a band spanning the seeds' range),
and a diverged run is never a plotted value: it is an ✕ at the top of its panel with the number of such seeds.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from rnn_gradients.report.figure_style import (
    facet_size,
    legend_below,
    line,
    log_axis,
    power_of_ten,
    theme,
    themed,
)
from rnn_gradients.report.i18n import msg
from rnn_gradients.report.palette import CELL_COLORS, INK, SHADE
from rnn_gradients.report.results import Results
from rnn_gradients.report.theory import PREDICTIONS, theory_points
from rnn_gradients.study.grid import RUN_KEYS

PHASE_MARKERS = {"init": "o", "during": "s", "trained": "^"}
THEORY_FORMULAS = {
    "bound_decay": r"$\ln(\gamma\,\sigma_{\max}(W_{hh}))$",
    "meanfield_decay": r"$\ln(\sigma_{\mathrm{rms}}(W_{hh})\,\mathrm{rms}\,\phi')$",
}
"""The two predictions of the theory figure's x axes (matplotlib mathtext, the same in every language)."""


def phase_label(phase: str) -> str:
    """A probe phase in words: "at initialization", "during training", "after training"."""
    return msg(f"figure.phase.{phase}")


def figure_png(fig: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes, cropped to its artists (a legend below the panels included); closes the figure."""
    buffer = io.BytesIO()
    with theme():
        fig.savefig(buffer, format="png", dpi=dpi, facecolor="white", bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)
    return buffer.getvalue()


def png_width(png: bytes, dpi: int = 150) -> int:
    """The width in CSS pixels (96 per inch) at which a PNG of :func:`figure_png` shows at its natural size."""
    return round(int.from_bytes(png[16:20], "big") * 96 / dpi)


# ---- the activation functions -------------------------------------------------------------------------------


@themed
def plot_activation_derivatives(results: Results) -> Figure:
    """φ'(a) of the logistic sigmoid, tanh and ReLU, in closed form (nothing measured), with their bounds γ.

    σ'(a) = σ(a)(1 − σ(a)) ≤ 1/4, tanh'(a) = 1 − tanh²(a) ≤ 1, ReLU'(a) = 1[a > 0]: the γ of Pascanu, Mikolov &
    Bengio (2013) in ‖∂h_i/∂h_{i−1}‖ ≤ γ σ_max(W_hh).
    """
    a = np.linspace(-6.0, 6.0, 1201)
    sigmoid = 1.0 / (1.0 + np.exp(-a))
    curves = {
        "rnn_sigmoid": (msg("figure.derivatives.sigmoid", formula="σ(a)(1 − σ(a))"), sigmoid * (1.0 - sigmoid)),
        "rnn_tanh": ("tanh: 1 − tanh²(a)", 1.0 - np.tanh(a) ** 2),
        "rnn_relu": ("ReLU: 1[a > 0]", np.where(a > 0, 1.0, 0.0)),
    }
    pieces = [
        pd.DataFrame({"a": a[side], "derivative": values[side], "curve": label, "piece": f"{label}{right}"})
        for label, values in curves.values()
        for right in (False, True)
        for side in [(a > 0) == right]
    ]  # ReLU's jump at 0 is not a line: each curve is drawn as two pieces
    tidy = pd.concat(pieces, ignore_index=True)
    colors = {label: CELL_COLORS[cell] for cell, (label, _) in curves.items()}
    g = sns.relplot(
        tidy,
        x="a",
        y="derivative",
        hue="curve",
        units="piece",
        estimator=None,
        kind="line",
        palette=colors,
        lw=2.2,
        legend=False,
        **facet_size(1, 3.4, width=7.0),
    )
    ax = g.ax
    bounds = ((1.0, "γ = 1 (tanh, ReLU)"), (0.25, msg("figure.derivatives.sigmoid_bound", gamma="γ = 1/4")))
    for gamma, text in bounds:
        ax.axhline(gamma, color="#555555", lw=0.9, ls=":")
        ax.text(-5.9, gamma + 0.02, text, fontsize=9.5, color="#555555", va="bottom")
    ax.set(
        xlim=(-6, 6),
        ylim=(-0.03, 1.15),
        xlabel=msg("figure.derivatives.x_label"),
        ylabel=msg("figure.derivatives.y_label"),
    )
    ax.legend([line(colors[label], lw=2.2) for label in colors], list(colors), loc="center right")
    return g.figure


# ---- gradient flow through time ----------------------------------------------------------------------------


def flow_profile(results: Results, strategy: str) -> pd.DataFrame:
    """log10(‖∂L/∂h_{L−k}‖ / ‖∂L/∂h_L‖) of every seed at the first and last probe of each run of ``strategy``, at
    the longest T of each task. Each probe is divided by its norm at distance 0, so cells with different loss
    scales share an axis and keep their slope; a zero norm (underflow) has no logarithm and is dropped."""
    flow = results.at_longest(results.gradient_flow)
    flow = flow[(flow["strategy"] == strategy) & flow["phase"].isin(["init", "trained"])]
    norm = flow["grad_norm_h"]
    flow = flow.assign(log_norm=np.log10(norm.where((norm > 0) & np.isfinite(norm))))
    probe = [*RUN_KEYS, "probe_step"]
    reference = flow.sort_values("distance").groupby(probe)["log_norm"].transform("first")
    return flow.assign(log_ratio=flow["log_norm"] - reference).dropna(subset=["log_ratio"])


@themed
def plot_gradient_flow(results: Results, strategy: str | None = None) -> Figure | None:
    """‖∂L/∂h_{L−k}‖ against the distance k, one line per cell (mean of the seeds' log norms, band: their range).

    ``strategy`` defaults to the control; None when there is no control or no finite probe of it. Rows: the tasks
    at their longest T; columns: at initialization and after training. By BPTT (Pascanu et al. 2013)
    ∂L/∂h_{L−k} = ∂L/∂h_L Π J_i, so a straight line is a constant factor per step; its slope is the decay rate of
    ``decay_rates.csv``.
    """
    strategy = strategy or results.control
    profile = flow_profile(results, strategy) if strategy else pd.DataFrame()
    if profile.empty:
        return None
    rows = {t: f"{t}, T = {results.longest[t]}" for t in results.tasks if t in set(profile["task"])}
    profile = profile.assign(row=profile["task"].map(rows), column=profile["phase"].map(phase_label))
    columns = [phase_label(p) for p in ("init", "trained") if p in set(profile["phase"])]
    cells = [c for c in results.cells if c in set(profile["cell"])]
    several = profile.groupby(["task", "cell", "phase", "distance"])["seed"].nunique().max() > 1
    g = sns.relplot(
        profile,
        x="distance",
        y="log_ratio",
        hue="cell",
        hue_order=cells,
        palette=results.palette.cells,
        row="row",
        row_order=list(rows.values()),
        col="column",
        col_order=columns,
        kind="line",
        estimator="mean",
        errorbar=("pi", 100) if several else None,
        lw=1.8,
        legend=False,
        facet_kws={"sharex": "row", "sharey": False},
        **facet_size(len(columns), 2.7, width=4.4),
    )
    g.set_titles("{row_name} · {col_name}")
    g.set_axis_labels(msg("figure.flow.x_label", distance="k = L − t"), "")
    for ax in g.axes[:, 0]:
        ax.set_ylabel(r"$\Vert\partial L/\partial h_{L-k}\Vert\ /\ \Vert\partial L/\partial h_L\Vert$", parse_math=True)
    for ax in g.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: power_of_ten(10.0**v)))
    legend_below(g.figure, [(c, line(results.palette.cells[c], lw=2)) for c in cells])
    return g.figure


# ---- gradient norms during training ------------------------------------------------------------------------


def trace_strategies(results: Results) -> list[str]:
    """The strategies of the traces figure: those with the scaled recurrent initialization (which provokes exploding
    gradients), or every strategy if none has it; the clipped strategies are added when none of those clips."""
    chosen = results.strategies_where("scaled") or list(results.strategies)
    if not any(results.strategies[s].clipped for s in chosen):
        chosen += [s for s in results.strategies_where("clipped") if s not in chosen]
    return chosen


def trace_panels(results: Results, strategies: Sequence[str], max_panels: int = 6) -> dict[tuple[str, int, str], str]:
    """(task, T, cell) -> panel title of the panels with the largest finite pre-clip norms, in report order."""
    norms = results.gradient_norms[results.gradient_norms["strategy"].isin(strategies)]
    pre = norms["grad_norm_pre"].where(np.isfinite(norms["grad_norm_pre"]) & norms["finite"])
    peaks = pre.groupby([norms["task"], norms["seq_len"], norms["cell"]]).max().dropna()
    chosen = results.in_order(peaks.sort_values(ascending=False).index[:max_panels].to_frame(index=False))
    return {(t, n, c): f"{t}, T = {n} · {c}" for t, n, c in chosen.itertuples(index=False)}


@themed
def plot_norm_traces(results: Results, strategies: Sequence[str] | None = None) -> Figure | None:
    """Pre-clip global gradient norm ‖g‖ against the training step (log scale), one line per run (every seed).

    ``strategies`` defaults to :func:`trace_strategies`; panels are :func:`trace_panels`; None without a finite
    norm. Color is the strategy; a clipping threshold c (Pascanu et al. 2013, Alg. 1: g ← c·g/‖g‖ when ‖g‖ ≥ c) is
    a dashed line, and a run that diverged shows an ✕ at the top of the panel above a dotted line at its step.
    """
    strategies = trace_strategies(results) if strategies is None else list(strategies)
    panels = trace_panels(results, strategies)
    if not panels:
        return None
    norms = results.gradient_norms
    keys = zip(norms["task"], norms["seq_len"], norms["cell"], strict=True)
    pre = norms["grad_norm_pre"]
    norms = norms.assign(panel=[panels.get(k) for k in keys], norm=pre.where(np.isfinite(pre) & (pre > 0)))
    norms = norms[norms["strategy"].isin(strategies) & norms["panel"].notna()]
    used = [s for s in strategies if s in set(norms["strategy"])]
    ncols = min(3, len(panels))
    g = sns.relplot(
        norms,
        x="step",
        y="norm",
        hue="strategy",
        hue_order=used,
        palette=results.palette.strategies,
        units="seed",
        estimator=None,
        col="panel",
        col_order=list(panels.values()),
        col_wrap=ncols,
        kind="line",
        lw=1.0,
        alpha=0.85,
        legend=False,
        facet_kws={"sharex": False, "sharey": False},
        **facet_size(ncols, 2.6, width=3.3),
    )
    g.set_titles("{col_name}")
    g.set_axis_labels(msg("figure.traces.x_label"), msg("figure.traces.y_label", norm="‖g‖"))
    accuracy = results.accuracy
    diverged = accuracy[accuracy["diverged"] & accuracy["strategy"].isin(used)]
    clip_shown = marked = False
    for (task, seq_len, cell), panel in panels.items():
        ax = g.axes_dict[panel]
        log_axis(ax)
        shown = norms.loc[norms["panel"] == panel, "strategy"].unique()
        for strategy in (s for s in used if s in shown and results.strategies[s].clip_norm is not None):
            ax.axhline(results.strategies[strategy].clip_norm, color=results.palette.strategies[strategy], ls="--")
            clip_shown = True
        here = diverged[(diverged["task"] == task) & (diverged["seq_len"] == seq_len) & (diverged["cell"] == cell)]
        for run in here.itertuples():
            color = results.palette.strategies[run.strategy]
            ax.axvline(int(run.diverged_step), color=color, lw=0.9, ls=":")
            ax.plot(
                [int(run.diverged_step)],
                [0.96],
                "X",
                ms=9,
                color=color,
                mec="white",
                transform=ax.get_xaxis_transform(),
                clip_on=False,
            )
            marked = True
    entries = [(s, line(results.palette.strategies[s], lw=2)) for s in used]
    entries += [(msg("figure.traces.threshold"), line(INK, ls="--", lw=1.1))] if clip_shown else []
    entries += [(msg("figure.traces.diverged"), line(INK, "X", ls=":", lw=0.9))] if marked else []
    legend_below(g.figure, entries)
    return g.figure


# ---- measured decay against its two predictions --------------------------------------------------------------


@themed
def plot_theory(results: Results) -> Figure | None:
    """Measured decay per step against Pascanu's bound (left) and the mean-field estimate (right), one point per
    probe of :func:`~rnn_gradients.report.theory.theory_points`, colored by cell, shaped by phase; y = x dashed.
    None without a point.

    Left: ‖∂ℓ/∂h_k‖ ≤ (γ σ_max)^{t−k} ‖∂ℓ/∂h_t‖ (Pascanu, Mikolov & Bengio 2013), so every point lies on or below the
    diagonal; the shaded half-plane above it is where no probe may be. Right: ln(σ_rms · rms φ'), the decay of a
    typical gradient for random weights: points on the diagonal where the estimate describes the network.
    """
    points = theory_points(results)
    if points.empty:
        return None
    long = points.melt(
        id_vars=["cell", "phase", "decay_per_step"], value_vars=list(PREDICTIONS), var_name="prediction",
        value_name="predicted",
    )  # fmt: skip
    titles = {p: msg(f"figure.theory.title.{p}") for p in PREDICTIONS}
    long["prediction"] = long["prediction"].map(titles)
    cells = [c for c in results.cells if c in set(points["cell"])]
    phases = [p for p in ("init", "during", "trained") if p in set(points["phase"])]
    g = sns.relplot(
        long,
        x="predicted",
        y="decay_per_step",
        col="prediction",
        col_order=[titles[p] for p in PREDICTIONS],
        hue="cell",
        hue_order=cells,
        palette=results.palette.cells,
        style="phase",
        style_order=phases,
        markers=PHASE_MARKERS,
        kind="scatter",
        s=30,
        alpha=0.85,
        edgecolor="white",
        linewidth=0.5,
        legend=False,
        height=4.0,
        aspect=1.0,
        facet_kws={"sharex": False, "sharey": True},
    )
    values = np.concatenate([long["predicted"].to_numpy(float), long["decay_per_step"].to_numpy(float)])
    low, high = float(values.min()), float(values.max())
    pad = 0.06 * max(high - low, 0.05)
    diagonal = np.array([low - pad, high + pad])
    for index, ax in enumerate(g.axes.flat):
        if index == 0:  # the bound: no probe can lie above the diagonal
            ax.fill_between(diagonal, diagonal, diagonal[1], color=SHADE, alpha=0.08, lw=0)
        ax.plot(diagonal, diagonal, color=INK, lw=1.1, ls="--")
        ax.set(xlim=tuple(diagonal), ylim=tuple(diagonal), aspect="equal")
        prediction = PREDICTIONS[index]
        ax.set_xlabel(msg(f"figure.theory.x_label.{prediction}", formula=THEORY_FORMULAS[prediction]), parse_math=True)
    g.set_titles("{col_name}")
    slope = r"$\ln\Vert\partial \ell/\partial h_t\Vert$"
    g.axes.flat[0].set_ylabel(msg("figure.theory.y_label", formula=slope), parse_math=True)
    entries = [(c, line(results.palette.cells[c], "o", ls="")) for c in cells]
    entries += [(phase_label(p), line("#555555", PHASE_MARKERS[p], ls="", mfc="none")) for p in phases]
    entries += [("y = x", line(INK, ls="--")), (msg("figure.theory.forbidden"), Patch(color=SHADE, alpha=0.2))]
    legend_below(g.figure, entries, ncol=5)
    return g.figure

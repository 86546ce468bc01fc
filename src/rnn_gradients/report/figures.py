"""Figures of the study report, drawn from the study tables (docs/architecture.md, "Study tables").

Every figure function takes pandas DataFrames with the documented columns and returns a
:class:`matplotlib.figure.Figure` on an Agg canvas. No pyplot state is touched, so figures neither leak nor
depend on the caller's backend, and :func:`figure_png` turns one into PNG bytes for the report.

The functions adapt to whatever grid exists: other tasks, sequence lengths, cells and strategies, a single
seed (no spread is drawn), missing optional columns, and diverged runs whose values are NaN or infinite
(they are masked out of lines and marked where the figure is about divergence).

Colors are fixed across all figures by a :class:`Palette`: cells use the color-blind-safe palette of
Okabe & Ito (2008, "Color universal design") in the order rnn_tanh, rnn_sigmoid, rnn_relu, lstm, gru (warm
hues for the vanilla cells, cool for the gated ones), unknown cells appended; strategies use Paul Tol's
color-blind-safe "muted" scheme (Tol 2021, "Color schemes", SRON/EPS/TN/09-002) in config order.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

RUN_KEYS = ("task", "seq_len", "cell", "strategy", "seed")
CELL_ORDER = ("rnn_tanh", "rnn_sigmoid", "rnn_relu", "lstm", "gru")
VANILLA_CELLS = ("rnn_tanh", "rnn_sigmoid", "rnn_relu")
CELL_COLORS = {
    "rnn_tanh": "#D55E00",
    "rnn_sigmoid": "#E69F00",
    "rnn_relu": "#CC79A7",
    "lstm": "#0072B2",
    "gru": "#009E73",
}
EXTRA_CELL_COLORS = ("#56B4E9", "#000000", "#F0E442", "#7F7F7F")
STRATEGY_COLORS = (
    "#332288",
    "#CC6677",
    "#117733",
    "#DDCC77",
    "#88CCEE",
    "#882255",
    "#44AA99",
    "#999933",
    "#AA4499",
    "#888888",
)
STRATEGY_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
STRATEGY_LINESTYLES = ("-", "--", ":", "-.")
INIT_PHASE = "initialization"
DURING_PHASE = "during training"
TRAINED_PHASE = "after training"

_LABEL_SIZE = 10.5
_TICK_SIZE = 9.5
_TITLE_SIZE = 10.5
_LEGEND_SIZE = 9.5
_MAX_WIDTH = 10.0


@dataclass(frozen=True)
class StrategyTraits:
    """What a strategy bundle changes, read from its parameters (``strategies.Strategy`` keys).

    When a study config carries no bundles, the traits are guessed from the strategy's name ("clip" means
    clipped, "layer"/"ln" layer norm, "batch"/"bn" batch norm, "scaled" the scaled initialization).
    """

    clip_norm: float | None
    clip_value: float | None
    norm: str
    init: str
    chrono: bool

    @property
    def clipped(self) -> bool:
        return self.clip_norm is not None or self.clip_value is not None

    @property
    def plain(self) -> bool:
        """No intervention at all: the unmitigated baseline."""
        return not self.clipped and self.norm == "none" and self.init == "default" and not self.chrono

    @classmethod
    def of(cls, name: str, bundle: Mapping[str, Any] | None) -> StrategyTraits:
        if bundle:
            return cls(
                clip_norm=_optional_float(bundle.get("clip_norm")),
                clip_value=_optional_float(bundle.get("clip_value")),
                norm=str(bundle.get("norm") or "none"),
                init=str(bundle.get("init") or "default"),
                chrono=bool(bundle.get("chrono", False)),
            )
        lowered = name.lower()
        words = set(lowered.replace("-", "_").split("_"))
        norm = "layer" if words & {"layer", "ln", "layernorm"} else "batch" if words & {"batch", "bn"} else "none"
        return cls(
            clip_norm=math.nan if "clip" in lowered else None,
            clip_value=None,
            norm=norm,
            init="scaled" if "scaled" in lowered else "orthogonal" if "orthogonal" in lowered else "default",
            chrono="chrono" in lowered,
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def strategy_bundles(config: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The strategies of a study config, name -> bundle, in config order.

    Accepts ``strategies`` as a mapping ``name: {params}`` or a list of names or of ``{name: ..., params}``
    records (with the parameters inline or under ``params``); anything else gives an empty mapping.
    """
    raw = (config or {}).get("strategies")
    bundles: dict[str, dict[str, Any]] = {}
    if isinstance(raw, Mapping):
        for name, bundle in raw.items():
            bundles[str(name)] = dict(bundle) if isinstance(bundle, Mapping) else {}
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, str):
                bundles[item] = {}
            elif isinstance(item, Mapping) and "name" in item:
                params = item.get("params")
                inline = {k: v for k, v in item.items() if k not in ("name", "params")}
                bundles[str(item["name"])] = dict(params) if isinstance(params, Mapping) else inline
    return bundles


@dataclass(frozen=True)
class Palette:
    """Fixed colors for cells and strategies, shared by every figure of one report."""

    cells: tuple[str, ...]
    strategies: tuple[str, ...]

    @classmethod
    def build(cls, cells: Iterable[str] = (), strategies: Iterable[str] = ()) -> Palette:
        """Known cells in :data:`CELL_ORDER`, unknown ones appended sorted; strategies in the given order."""
        unknown = sorted({str(c) for c in cells} - set(CELL_ORDER))
        return cls(cells=CELL_ORDER + tuple(unknown), strategies=tuple(dict.fromkeys(str(s) for s in strategies)))

    def extended(self, cells: Iterable[str] = (), strategies: Iterable[str] = ()) -> Palette:
        """This palette with any cells and strategies it lacks appended (existing colors unchanged)."""
        new_cells = [c for c in dict.fromkeys(map(str, cells)) if c not in self.cells]
        new_strategies = [s for s in dict.fromkeys(map(str, strategies)) if s not in self.strategies]
        if not new_cells and not new_strategies:
            return self
        return Palette(self.cells + tuple(sorted(new_cells)), self.strategies + tuple(new_strategies))

    def cell_color(self, cell: str) -> str:
        if cell in CELL_COLORS:
            return CELL_COLORS[cell]
        unknown = [c for c in self.cells if c not in CELL_COLORS]
        index = unknown.index(cell) if cell in unknown else len(unknown)
        return EXTRA_CELL_COLORS[index % len(EXTRA_CELL_COLORS)]

    def _strategy_index(self, strategy: str) -> int:
        return self.strategies.index(strategy) if strategy in self.strategies else len(self.strategies)

    def strategy_color(self, strategy: str) -> str:
        return STRATEGY_COLORS[self._strategy_index(strategy) % len(STRATEGY_COLORS)]

    def strategy_marker(self, strategy: str) -> str:
        return STRATEGY_MARKERS[self._strategy_index(strategy) % len(STRATEGY_MARKERS)]

    def strategy_linestyle(self, strategy: str) -> str:
        cycle = self._strategy_index(strategy) // len(STRATEGY_COLORS)
        return STRATEGY_LINESTYLES[cycle % len(STRATEGY_LINESTYLES)]

    def ordered_cells(self, present: Iterable[str]) -> list[str]:
        present_set = set(map(str, present))
        return [c for c in self.extended(present_set).cells if c in present_set]

    def ordered_strategies(self, present: Iterable[str]) -> list[str]:
        present_list = list(dict.fromkeys(map(str, present)))
        return [s for s in self.extended(strategies=present_list).strategies if s in present_list]


def study_palette(config: Mapping[str, Any] | None, *tables: pd.DataFrame) -> Palette:
    """The report's palette: strategies in config order, then any others in order of appearance in the tables."""
    cells: list[str] = []
    strategies = list(strategy_bundles(config))
    for table in tables:
        if "cell" in table:
            cells.extend(table["cell"].dropna().astype(str))
        if "strategy" in table:
            strategies.extend(table["strategy"].dropna().astype(str))
    return Palette.build(cells, strategies)


def task_order(config: Mapping[str, Any] | None, tasks: Iterable[str]) -> list[str]:
    """Tasks in config order (``tasks`` as a mapping or list), then the others in order of appearance."""
    raw = (config or {}).get("tasks")
    named: list[str] = []
    if isinstance(raw, Mapping):
        named = [str(t) for t in raw]
    elif isinstance(raw, list):
        named = [str(t["name"]) if isinstance(t, Mapping) and "name" in t else str(t) for t in raw]
    present = list(dict.fromkeys(map(str, tasks)))
    return [t for t in named if t in present] + [t for t in present if t not in named]


def figure_png(fig: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes (for ``IPython.display.Image``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def as_bool(values: pd.Series) -> pd.Series:
    """A boolean column read from CSV (``True``/``False``, possibly with empty cells -> False)."""
    if values.dtype == bool:
        return values
    mapped = values.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0", "yes"))
    return mapped.astype(bool)


def _figure(nrows: int, ncols: int, panel_w: float, panel_h: float) -> tuple[Figure, np.ndarray]:
    width = min(_MAX_WIDTH, max(4.5, ncols * panel_w + 0.6))
    fig = Figure(figsize=(width, nrows * panel_h + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        _style_axes(ax)
    return fig, axes


def _style_axes(ax: Axes) -> None:
    ax.set_facecolor("white")
    ax.grid(True, color="#e3e3e3", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#555555")
    ax.tick_params(labelsize=_TICK_SIZE, color="#555555")


def _label(ax: Axes, x: str | None, y: str | None, title: str | None = None) -> None:
    if x is not None:
        ax.set_xlabel(x, fontsize=_LABEL_SIZE)
    if y is not None:
        ax.set_ylabel(y, fontsize=_LABEL_SIZE)
    if title is not None:
        ax.set_title(title, fontsize=_TITLE_SIZE)


def _message_figure(message: str) -> Figure:
    fig, axes = _figure(1, 1, 6.0, 1.6)
    ax = axes[0, 0]
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=_LABEL_SIZE, color="#555555", wrap=True)
    return fig


def _legend(fig: Figure, handles: Sequence[Any], *, side: Literal["bottom", "right"] = "bottom") -> None:
    """One legend for the whole figure, outside the panels.

    Below the panels it takes as many rows as the width needs, with the entries spread evenly over the rows
    and reading left to right, row by row.
    """
    handles = list(handles)
    if not handles:
        return
    if side == "right":
        loc, ncols = "outside right upper", 1
    else:
        per_row = max(1, min(len(handles), int(fig.get_figwidth() / 1.55)))
        nrows = math.ceil(len(handles) / per_row)
        loc, ncols = "outside lower center", math.ceil(len(handles) / nrows)
        # matplotlib fills a legend column by column (the first columns taking any extra entry), so lay the
        # rows out and hand the entries over column by column.
        rows = [handles[i : i + ncols] for i in range(0, len(handles), ncols)]
        handles = [row[c] for c in range(ncols) for row in rows if c < len(row)]
    fig.legend(handles=handles, loc=loc, ncols=ncols, fontsize=_LEGEND_SIZE, frameon=False)


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def _palette(palette: Palette | None, df: pd.DataFrame) -> Palette:
    cells = df["cell"].dropna().astype(str).unique() if "cell" in df else []
    strategies = df["strategy"].dropna().astype(str).unique() if "strategy" in df else []
    return (palette or Palette.build()).extended(cells, strategies)


def _task_metric(df: pd.DataFrame) -> str:
    if "metric" not in df or df["metric"].dropna().empty:
        return "value"
    return str(df["metric"].dropna().iloc[0])


def metric_label(metric: str) -> str:
    """Axis label of a task metric, with its direction."""
    if metric == "mse":
        return "test MSE (lower is better)"
    if metric == "accuracy":
        return "test accuracy (higher is better)"
    return f"test {metric}"


def plot_activation_derivatives(palette: Palette | None = None) -> Figure:
    """φ'(a) of the logistic sigmoid, tanh and ReLU, computed in closed form (nothing measured).

    σ'(a) = σ(a)(1 − σ(a)) ≤ 1/4, tanh'(a) = 1 − tanh²(a) ≤ 1, ReLU'(a) = 1[a > 0]: the bounds γ of
    Pascanu, Mikolov & Bengio (2013) that enter ‖∂h_i/∂h_{i−1}‖ ≤ γ σ_max(W_hh).
    """
    palette = palette or Palette.build()
    a = np.linspace(-6.0, 6.0, 1201)
    sigmoid = 1.0 / (1.0 + np.exp(-a))
    curves = {
        "rnn_sigmoid": (sigmoid * (1.0 - sigmoid), "logistic sigmoid: σ(a)(1 − σ(a))"),
        "rnn_tanh": (1.0 - np.tanh(a) ** 2, "tanh: 1 − tanh²(a)"),
        "rnn_relu": (np.where(a > 0, 1.0, 0.0), "ReLU: 1[a > 0]"),
    }
    fig, axes = _figure(1, 1, 7.0, 3.4)
    ax = axes[0, 0]
    for cell, (values, label) in curves.items():
        if cell == "rnn_relu":
            ax.plot(a[a <= 0], values[a <= 0], color=palette.cell_color(cell), lw=2.2, label=label)
            ax.plot(a[a > 0], values[a > 0], color=palette.cell_color(cell), lw=2.2)
        else:
            ax.plot(a, values, color=palette.cell_color(cell), lw=2.2, label=label)
    for gamma, text in ((1.0, "γ = 1 (tanh, ReLU)"), (0.25, "γ = 1/4 (sigmoid)")):
        ax.axhline(gamma, color="#555555", lw=0.9, ls=":")
        ax.text(-5.9, gamma + 0.02, text, fontsize=_TICK_SIZE, color="#555555", va="bottom")
    ax.set_xlim(-6, 6)
    ax.set_ylim(-0.03, 1.15)
    _label(ax, "pre-activation a", "derivative φ′(a)")
    ax.legend(fontsize=_LEGEND_SIZE, frameon=False, loc="center right")
    return fig


def probe_phases(flow: pd.DataFrame) -> pd.DataFrame:
    """Rows of each run's first probe (``phase`` = initialization) and last probe (after training, if later).

    Works on any per-probe table (gradient_flow.csv, decay_rates.csv); runs stopped early or diverged have
    their own last probe.
    """
    keys = [k for k in RUN_KEYS if k in flow]
    step = _numeric(flow, "probe_step")
    first = step.groupby([flow[k] for k in keys]).transform("min")
    last = step.groupby([flow[k] for k in keys]).transform("max")
    init = flow[step == first].assign(phase=INIT_PHASE)
    trained = flow[(step == last) & (last > first)].assign(phase=TRAINED_PHASE)
    return pd.concat([init, trained], ignore_index=True)


def probe_stages(probes: pd.DataFrame) -> pd.Series:
    """Every probe's stage: its run's first probe, last probe (if later), or one in between."""
    keys = [probes[k] for k in RUN_KEYS if k in probes]
    step = _numeric(probes, "probe_step")
    first, last = step.groupby(keys).transform("min"), step.groupby(keys).transform("max")
    stage = np.where(step == first, INIT_PHASE, np.where(step == last, TRAINED_PHASE, DURING_PHASE))
    return pd.Series(stage, index=probes.index, name="phase")


def gradient_decay_profile(flow: pd.DataFrame) -> pd.DataFrame:
    """Seed statistics of log10(‖∂L/∂h_{L−k}‖ / ‖∂L/∂h_L‖) per task, T, cell, strategy, phase and distance k.

    Each probe is normalized by its norm at distance 0 so that cells with different loss scales share one
    axis while keeping the slope (the decay per step). Zero norms (flushed denormals) and non-finite norms
    are dropped; columns ``mean``, ``min``, ``max`` are over seeds, ``n`` counts the seeds.
    """
    columns = ["task", "seq_len", "cell", "strategy", "phase", "distance", "mean", "min", "max", "n"]
    if flow.empty:
        return pd.DataFrame(columns=columns)
    df = probe_phases(flow)
    norm = _numeric(df, "grad_norm_h")
    df = df.assign(
        distance=_numeric(df, "distance"),
        log_norm=np.log10(norm.where((norm > 0) & np.isfinite(norm))),
    )
    probe = [k for k in RUN_KEYS if k in df] + ["phase"]
    reference = df.sort_values("distance").groupby(probe)["log_norm"].transform("first")
    df = df.assign(log_ratio=df["log_norm"] - reference).dropna(subset=["log_ratio", "distance"])
    group = ["task", "seq_len", "cell", "strategy", "phase", "distance"]
    stats = df.groupby(group)["log_ratio"].agg(["mean", "min", "max", "count"]).reset_index()
    return stats.rename(columns={"count": "n"})[columns]


def plot_gradient_flow(flow: pd.DataFrame, *, strategy: str | None = None, palette: Palette | None = None) -> Figure:
    """‖∂L/∂h_t‖ against the distance k = L − t, log scale, one line per cell (seed mean, band = seed range).

    Rows are the (task, T) pairs present, columns the first probe (initialization) and the last probe
    (after training). ``strategy`` selects one strategy (default: the first in palette order).
    BPTT (Pascanu et al. 2013): ∂L/∂h_{L−k} = ∂L/∂h_L Π J_i, so a straight line on this plot is a constant
    per-step factor; its slope is ``decay_per_step``.
    """
    if flow.empty:
        return _message_figure("No gradient probes in the study tables.")
    palette = _palette(palette, flow)
    strategies = palette.ordered_strategies(flow["strategy"].astype(str))
    chosen = strategy if strategy is not None else strategies[0]
    profile = gradient_decay_profile(flow[flow["strategy"].astype(str) == chosen])
    if profile.empty:
        return _message_figure(f"No finite gradient probes for strategy {chosen!r}.")
    pairs = profile[["task", "seq_len"]].drop_duplicates().sort_values(["task", "seq_len"])
    ordered_tasks = task_order(None, flow["task"].astype(str))
    pairs = pairs.assign(order=pairs["task"].map(ordered_tasks.index)).sort_values(["order", "seq_len"])
    phases = [p for p in (INIT_PHASE, TRAINED_PHASE) if p in set(profile["phase"])]
    fig, axes = _figure(len(pairs), len(phases), 4.4, 2.7)
    cells_seen: list[str] = []
    for row, (task, seq_len) in enumerate(zip(pairs["task"], pairs["seq_len"], strict=True)):
        for col, phase in enumerate(phases):
            ax = axes[row, col]
            panel = profile[(profile["task"] == task) & (profile["seq_len"] == seq_len) & (profile["phase"] == phase)]
            for cell in palette.ordered_cells(panel["cell"].astype(str)):
                line = panel[panel["cell"] == cell].sort_values("distance")
                color = palette.cell_color(cell)
                ax.plot(line["distance"], 10 ** line["mean"], color=color, lw=1.8)
                if (line["n"] > 1).any():
                    ax.fill_between(
                        line["distance"], 10 ** line["min"], 10 ** line["max"], color=color, alpha=0.18, lw=0
                    )
                cells_seen.append(cell)
            ax.set_yscale("log")
            _label(
                ax,
                "distance k = L − t (steps back)" if row == len(pairs) - 1 else None,
                r"$\Vert\partial L/\partial h_{L-k}\Vert\ /\ \Vert\partial L/\partial h_L\Vert$" if col == 0 else None,
                f"{task}, T = {seq_len} · {phase}",
            )
    handles = [Line2D([], [], color=palette.cell_color(c), lw=2, label=c) for c in palette.ordered_cells(cells_seen)]
    _legend(fig, handles)
    return fig


def _divergence_steps(norms: pd.DataFrame, accuracy: pd.DataFrame | None) -> dict[tuple[Any, ...], float]:
    """Step at which each run diverged: ``diverged_step`` of accuracy.csv, else its first non-finite step."""
    keys = [k for k in RUN_KEYS if k in norms]
    steps: dict[tuple[Any, ...], float] = {}
    if accuracy is not None and {"diverged", "diverged_step"} <= set(accuracy.columns):
        diverged = accuracy[as_bool(accuracy["diverged"])]
        for _, row in diverged.iterrows():
            steps[tuple(row[k] for k in keys)] = float(pd.to_numeric(row["diverged_step"], errors="coerce"))
    finite = as_bool(norms["finite"]) if "finite" in norms else pd.Series(True, index=norms.index)
    bad = norms[~finite | ~np.isfinite(_numeric(norms, "grad_norm_pre"))]
    for key, group in bad.groupby(keys):
        key = key if isinstance(key, tuple) else (key,)
        if key not in steps or not np.isfinite(steps[key]):
            steps[key] = float(_numeric(group, "step").min())
    return steps


def exploding_strategies(strategies: Sequence[str], bundles: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Strategies that put the network in the exploding regime, with a clipped counterpart when possible.

    The strategies whose bundle (or name) uses the ``scaled`` recurrent initialization; if there are none,
    every strategy (the caller then ranks runs by their pre-clip norms). If no selected strategy clips,
    the clipped strategies are added so that the figure compares with and without clipping.
    """
    traits = {s: StrategyTraits.of(s, bundles.get(s)) for s in strategies}
    chosen = [s for s in strategies if traits[s].init == "scaled"] or list(strategies)
    if not any(traits[s].clipped for s in chosen):
        chosen += [s for s in strategies if traits[s].clipped and s not in chosen]
    return chosen


def baseline_strategy(strategies: Sequence[str], bundles: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The unmitigated strategy: the first whose bundle changes nothing, else one named like a baseline."""
    for strategy in strategies:
        if strategy in bundles and StrategyTraits.of(strategy, bundles[strategy]).plain:
            return strategy
    for strategy in strategies:
        if strategy.lower() in ("baseline", "none", "default", "plain", "vanilla"):
            return strategy
    return strategies[0] if strategies else None


def sort_runs(df: pd.DataFrame, palette: Palette, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows in report order: task (config order), T, cell (palette order), strategy (config order), seed."""
    task_names = list(tasks) if tasks is not None else task_order(None, df["task"].astype(str))
    cells = palette.ordered_cells(df["cell"].astype(str)) if "cell" in df else []
    strategies = palette.ordered_strategies(df["strategy"].astype(str)) if "strategy" in df else []
    ranks = {
        "task": {v: i for i, v in enumerate(task_names)},
        "cell": {v: i for i, v in enumerate(cells)},
        "strategy": {v: i for i, v in enumerate(strategies)},
    }
    keys = [k for k in RUN_KEYS if k in df]

    def rank(column: pd.Series) -> pd.Series:
        if column.name in ranks:
            return column.astype(str).map(ranks[column.name]).fillna(len(ranks[column.name]))
        return pd.to_numeric(column, errors="coerce")

    return df.sort_values(keys, key=rank, kind="stable").reset_index(drop=True)


def plot_norm_traces(
    norms: pd.DataFrame,
    accuracy: pd.DataFrame | None = None,
    *,
    strategies: Sequence[str] | None = None,
    clip_norms: Mapping[str, float | None] | None = None,
    max_panels: int = 6,
    palette: Palette | None = None,
) -> Figure:
    """Pre-clip global gradient norm ‖g‖ against training step (log y), one line per run.

    Panels are the (task, T, cell) triples with the largest finite pre-clip norms (at most ``max_panels``);
    color is the strategy, divergence is marked by ✕ at the top of the panel and a dotted vertical line,
    and a clipping threshold c (Pascanu et al. 2013, Alg. 1: g ← c g/‖g‖ when ‖g‖ ≥ c) by a dashed line.
    """
    if norms.empty or "grad_norm_pre" not in norms:
        return _message_figure("No gradient-norm traces in the study tables.")
    palette = _palette(palette, norms)
    df = norms if strategies is None else norms[norms["strategy"].astype(str).isin(list(strategies))]
    if df.empty:
        return _message_figure("No gradient-norm traces for the selected strategies.")
    pre = _numeric(df, "grad_norm_pre")
    df = df.assign(pre=pre.where(np.isfinite(pre) & (pre > 0)), step=_numeric(df, "step"))
    panel_keys = ["task", "seq_len", "cell"]
    peaks = df.groupby(panel_keys)["pre"].max().fillna(-np.inf).sort_values(ascending=False)
    chosen = list(peaks.index[:max_panels])
    cell_rank = {c: i for i, c in enumerate(palette.ordered_cells(df["cell"].astype(str)))}
    chosen.sort(key=lambda k: (str(k[0]), k[1], cell_rank[str(k[2])]))
    divergence = _divergence_steps(df, accuracy)
    ncols = min(3, len(chosen))
    nrows = math.ceil(len(chosen) / ncols)
    fig, axes = _figure(nrows, ncols, 3.3, 2.6)
    used_strategies: list[str] = []
    any_divergence = any_clip = False
    for index, (task, seq_len, cell) in enumerate(chosen):
        ax = axes.flat[index]
        panel = df[(df["task"] == task) & (df["seq_len"] == seq_len) & (df["cell"] == cell)]
        for run_key, run in panel.groupby(list(RUN_KEYS)):
            strategy = str(run_key[3])
            color = palette.strategy_color(strategy)
            run = run.sort_values("step")
            ax.plot(run["step"], run["pre"], color=color, lw=1.0, alpha=0.85, ls=palette.strategy_linestyle(strategy))
            used_strategies.append(strategy)
            step = divergence.get(tuple(run_key))
            if step is not None and np.isfinite(step):
                any_divergence = True
                ax.axvline(step, color=color, lw=0.9, ls=":")
                ax.plot([step], [0.96], marker="X", ms=9, color=color, mec="white", transform=ax.get_xaxis_transform())
        for strategy in palette.ordered_strategies(panel["strategy"].astype(str)):
            threshold = (clip_norms or {}).get(strategy)
            if threshold is not None and np.isfinite(threshold):
                any_clip = True
                ax.axhline(threshold, color=palette.strategy_color(strategy), lw=1.1, ls="--")
        if panel["pre"].notna().any():
            ax.set_yscale("log")
        _label(
            ax,
            "training step",
            "pre-clip ‖g‖ (global L2)" if index % ncols == 0 else None,
            f"{task}, T = {seq_len} · {cell}",
        )
    _hide_unused(axes, len(chosen))
    handles: list[Any] = [
        Line2D([], [], color=palette.strategy_color(s), ls=palette.strategy_linestyle(s), lw=2, label=s)
        for s in palette.ordered_strategies(used_strategies)
    ]
    if any_clip:
        handles.append(Line2D([], [], color="#555555", ls="--", lw=1.1, label="clip threshold c"))
    if any_divergence:
        handles.append(Line2D([], [], color="#555555", marker="X", ls=":", lw=0.9, label="diverged (non-finite)"))
    _legend(fig, handles)
    return fig


def plot_metric_vs_length(
    summary: pd.DataFrame,
    *,
    hue: Literal["cell", "strategy"] = "cell",
    palette: Palette | None = None,
    task_names: Sequence[str] | None = None,
) -> Figure:
    """Seed-mean test metric against sequence length T, error bars = seed min–max, chance baseline dashed.

    Columns are tasks; lines are cells (``hue="cell"``) or strategies (``hue="strategy"``); rows are the
    values of the other dimension. Groups whose every seed diverged have no finite mean and leave a gap.
    """
    if summary.empty:
        return _message_figure("No runs for this comparison in the study grid.")
    palette = _palette(palette, summary)
    other = "strategy" if hue == "cell" else "cell"
    tasks = list(task_names) if task_names is not None else task_order(None, summary["task"].astype(str))
    tasks = [t for t in tasks if t in set(summary["task"].astype(str))]
    rows = (
        palette.ordered_strategies(summary["strategy"].astype(str))
        if other == "strategy"
        else palette.ordered_cells(summary["cell"].astype(str))
    )
    fig, axes = _figure(len(rows), len(tasks), 3.6, 2.6)
    hue_seen: list[str] = []
    for col, task in enumerate(tasks):
        task_df = summary[summary["task"].astype(str) == task]
        metric = _task_metric(task_df)
        lengths = sorted(pd.to_numeric(task_df["seq_len"]).unique())
        chance = task_df.groupby("seq_len")["chance"].mean().reindex(lengths) if "chance" in task_df else None
        for row, other_value in enumerate(rows):
            ax = axes[row, col]
            panel = task_df[task_df[other].astype(str) == other_value]
            values = (
                palette.ordered_cells(panel["cell"].astype(str))
                if hue == "cell"
                else palette.ordered_strategies(panel["strategy"].astype(str))
            )
            for value in values:
                line = panel[panel[hue].astype(str) == value].sort_values("seq_len")
                mean, low, high = (_numeric(line, c) for c in ("mean", "min", "max"))
                finite = np.isfinite(mean) & ((mean > 0) if metric == "mse" else True)
                if hue == "cell":
                    color, marker, ls = palette.cell_color(value), "o", "-"
                else:
                    color = palette.strategy_color(value)
                    marker, ls = palette.strategy_marker(value), palette.strategy_linestyle(value)
                x = pd.to_numeric(line["seq_len"])
                yerr = np.vstack([(mean - low).clip(lower=0), (high - mean).clip(lower=0)])
                yerr = np.where(np.isfinite(yerr), yerr, 0.0)
                ax.errorbar(
                    x[finite],
                    mean[finite],
                    yerr=yerr[:, finite.to_numpy()],
                    color=color,
                    marker=marker,
                    ls=ls,
                    lw=1.6,
                    ms=5,
                    capsize=3,
                )
                hue_seen.append(value)
            if chance is not None and chance.notna().any():
                if len(lengths) == 1:  # a line through one point has no length: draw it across the panel
                    ax.axhline(chance.iloc[0], color="#333333", ls="--", lw=1.1)
                else:
                    ax.plot(lengths, chance.to_numpy(), color="#333333", ls="--", lw=1.1)
            if metric == "mse":
                ax.set_yscale("log")
            elif metric == "accuracy":
                ax.set_ylim(-0.02, 1.04)
            ax.set_xticks(lengths)
            _label(
                ax,
                "sequence length T (steps)" if row == len(rows) - 1 else None,
                metric_label(metric),
                f"{task} · {other_value}",
            )
    if hue == "cell":
        handles: list[Any] = [
            Line2D([], [], color=palette.cell_color(c), marker="o", lw=1.6, label=c)
            for c in palette.ordered_cells(hue_seen)
        ]
    else:
        handles = [
            Line2D(
                [],
                [],
                color=palette.strategy_color(s),
                marker=palette.strategy_marker(s),
                ls=palette.strategy_linestyle(s),
                lw=1.6,
                label=s,
            )
            for s in palette.ordered_strategies(hue_seen)
        ]
    handles.append(Line2D([], [], color="#333333", ls="--", lw=1.1, label="chance baseline"))
    _legend(fig, handles)
    return fig


def plot_solved_heatmap(
    summary: pd.DataFrame, *, palette: Palette | None = None, task_names: Sequence[str] | None = None
) -> Figure:
    """Solved rate per cell × strategy, one panel per (task, T); each square reads "solved/seeds".

    A run is solved when its test error ≤ solved_fraction × chance error (docs/architecture.md); squares
    with diverged seeds add "k div."; combinations absent from the grid are blank.
    """
    if summary.empty:
        return _message_figure("No runs in the study grid.")
    palette = _palette(palette, summary)
    tasks = list(task_names) if task_names is not None else task_order(None, summary["task"].astype(str))
    tasks = [t for t in tasks if t in set(summary["task"].astype(str))]
    lengths = {t: sorted(pd.to_numeric(summary.loc[summary["task"] == t, "seq_len"]).unique()) for t in tasks}
    ncols = max(len(v) for v in lengths.values())
    cells = palette.ordered_cells(summary["cell"].astype(str))
    strategies = palette.ordered_strategies(summary["strategy"].astype(str))
    panel_w = 1.2 + 0.75 * len(strategies)
    panel_h = 1.0 + 0.42 * len(cells)
    fig, axes = _figure(len(tasks), ncols, panel_w, panel_h)
    cmap = sns.color_palette("cividis", as_cmap=True)
    for row, task in enumerate(tasks):
        for col in range(ncols):
            ax = axes[row, col]
            if col >= len(lengths[task]):
                ax.set_visible(False)
                continue
            seq_len = lengths[task][col]
            panel = summary[(summary["task"] == task) & (pd.to_numeric(summary["seq_len"]) == seq_len)]
            grid = panel.set_index(["cell", "strategy"])
            rate = pd.DataFrame(np.nan, index=cells, columns=strategies)
            text = pd.DataFrame("", index=cells, columns=strategies)
            for (cell, strategy), record in grid.iterrows():
                rate.loc[cell, strategy] = float(pd.to_numeric(record.get("solved_rate"), errors="coerce"))
                label = f"{_count(record.get('n_solved'))}/{_count(record.get('n_seeds'))}"
                diverged = _count(record.get("n_diverged"))
                if diverged not in ("0", "?"):
                    label += f"\n{diverged} div."
                text.loc[cell, strategy] = label
            ax.grid(False)
            ax.set_facecolor("#f2f2f2")
            sns.heatmap(
                rate,
                ax=ax,
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
                cbar=False,
                annot=text.to_numpy(),
                fmt="",
                annot_kws={"fontsize": 8.5},
                linewidths=1.5,
                linecolor="white",
                mask=rate.isna(),
            )
            ax.tick_params(axis="x", labelrotation=30, labelsize=_TICK_SIZE, length=0)
            ax.tick_params(axis="y", labelrotation=0, labelsize=_TICK_SIZE, length=0)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
            _label(ax, None, None, f"{task}, T = {seq_len}")
    colorbar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=axes, shrink=0.8, pad=0.02)
    colorbar.set_label("solved rate (fraction of seeds)", fontsize=_LABEL_SIZE)
    colorbar.ax.tick_params(labelsize=_TICK_SIZE)
    return fig


def _count(value: Any) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return "?" if pd.isna(number) else str(int(number))


def plot_decay_vs_prediction(decay: pd.DataFrame, *, palette: Palette | None = None) -> Figure:
    """Measured decay per step against Pascanu's prediction ln(γ_eff σ_max), one point per vanilla probe.

    Marker shape is the probe's stage (:func:`probe_stages`): initialization, during or after training.

    Pascanu, Mikolov & Bengio (2013): ‖∂L/∂h_k‖ ≤ (γ σ_max)^{t−k} ‖∂L/∂h_t‖, so the slope of
    ln‖∂L/∂h_t‖ against the distance should lie on or below ln(γ σ_max); with the observed mean |φ'| (γ_eff)
    in place of the worst case γ the prediction is a typical rate rather than a strict bound.
    """
    needed = {"decay_per_step", "bound_decay"}
    if decay.empty or not needed <= set(decay.columns):
        return _message_figure("No decay rates in the study tables.")
    measured, predicted = _numeric(decay, "decay_per_step"), _numeric(decay, "bound_decay")
    df = decay.assign(measured=measured, predicted=predicted)
    df = df[np.isfinite(df["measured"]) & np.isfinite(df["predicted"])]
    if df.empty:
        return _message_figure("No vanilla-cell probes with a finite measured and predicted decay.")
    palette = _palette(palette, df)
    df = df.assign(phase=probe_stages(df) if "probe_step" in df else INIT_PHASE)
    fig, axes = _figure(1, 1, 7.2, 4.6)
    ax = axes[0, 0]
    values = np.concatenate([df["measured"].to_numpy(), df["predicted"].to_numpy()])
    low, high = float(values.min()), float(values.max())
    pad = 0.08 * max(high - low, 0.05)
    low, high = low - pad, high + pad
    line = np.array([low, high])
    ax.fill_between(line, line, high, color="#CC6677", alpha=0.08, lw=0)
    ax.plot(line, line, color="#333333", lw=1.1, ls="--")
    markers = {INIT_PHASE: "o", DURING_PHASE: "s", TRAINED_PHASE: "^"}
    for cell in palette.ordered_cells(df["cell"].astype(str)):
        for phase, marker in markers.items():
            points = df[(df["cell"] == cell) & (df["phase"] == phase)]
            if not points.empty:
                ax.scatter(
                    points["predicted"],
                    points["measured"],
                    s=34,
                    marker=marker,
                    color=palette.cell_color(cell),
                    edgecolor="white",
                    linewidth=0.6,
                    alpha=0.9,
                )
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal", adjustable="box")
    _label(
        ax,
        r"predicted $\ln(\gamma_{\mathrm{eff}}\,\sigma_{\max}(W_{hh}))$ per step",
        r"measured slope of $\ln\Vert\partial L/\partial h_t\Vert$ per step",
    )
    handles: list[Any] = [
        Line2D([], [], color=palette.cell_color(c), marker="o", ls="", label=c)
        for c in palette.ordered_cells(df["cell"].astype(str))
    ]
    handles += [
        Line2D([], [], color="#555555", marker=m, ls="", mfc="none", label=p)
        for p, m in markers.items()
        if p in set(df["phase"])
    ]
    handles.append(Line2D([], [], color="#333333", ls="--", label="y = x"))
    handles.append(Patch(color="#CC6677", alpha=0.2, label="above the bound"))
    _legend(fig, handles, side="right")
    return fig

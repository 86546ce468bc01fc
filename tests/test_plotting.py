"""Report figures on small hand-made study tables: every function returns a labeled Figure that adapts to the grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures_tables import make_study_tables
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure

from rnn_gradients.report import figures as rp


@pytest.fixture(scope="module")
def tables() -> dict:
    return make_study_tables()


@pytest.fixture(scope="module")
def palette(tables: dict) -> rp.Palette:
    return rp.study_palette(tables["study_config"], tables["accuracy_summary"])


def visible_axes(fig: Figure) -> list:
    """The panels of a figure (colorbars excluded)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def legend_texts(fig: Figure) -> list[str]:
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


def test_palette_keeps_fixed_cell_colors_and_appends_unknown_cells() -> None:
    palette = rp.Palette.build(["gru", "my_cell", "rnn_tanh", "another"], ["b", "a"])
    assert palette.cells == (*rp.CELL_ORDER, "another", "my_cell")
    assert palette.cell_color("rnn_tanh") == rp.CELL_COLORS["rnn_tanh"]
    assert palette.cell_color("another") == rp.EXTRA_CELL_COLORS[0]
    assert palette.cell_color("my_cell") == rp.EXTRA_CELL_COLORS[1]
    assert palette.ordered_cells(["my_cell", "lstm", "rnn_relu"]) == ["rnn_relu", "lstm", "my_cell"]
    assert palette.ordered_strategies(["a", "b", "c"]) == ["b", "a", "c"]
    assert palette.strategy_color("b") == rp.STRATEGY_COLORS[0]
    assert palette.strategy_color("a") == rp.STRATEGY_COLORS[1]
    many = rp.Palette.build(strategies=[f"s{i}" for i in range(len(rp.STRATEGY_COLORS) + 1)])
    colors = {many.strategy_color(f"s{i}") for i in range(len(rp.STRATEGY_COLORS))}
    assert len(colors) == len(rp.STRATEGY_COLORS)
    wrapped = f"s{len(rp.STRATEGY_COLORS)}"
    assert many.strategy_color(wrapped) == many.strategy_color("s0")
    assert many.strategy_linestyle(wrapped) != many.strategy_linestyle("s0")


def test_study_palette_puts_config_strategies_first() -> None:
    config = {"strategies": {"clip": {"clip_norm": 1.0}, "baseline": {}}}
    table = pd.DataFrame({"cell": ["lstm", "odd"], "strategy": ["extra", "baseline"]})
    palette = rp.study_palette(config, table)
    assert palette.strategies == ("clip", "baseline", "extra")
    assert "odd" in palette.cells


def test_strategy_bundles_reads_mappings_and_lists() -> None:
    as_mapping = {"strategies": {"baseline": None, "clip": {"clip_norm": 1.0}}}
    as_list = {
        "strategies": ["baseline", {"name": "clip", "clip_norm": 1.0}, {"name": "ln", "params": {"norm": "layer"}}]
    }
    assert rp.strategy_bundles(as_mapping) == {"baseline": {}, "clip": {"clip_norm": 1.0}}
    assert rp.strategy_bundles(as_list) == {"baseline": {}, "clip": {"clip_norm": 1.0}, "ln": {"norm": "layer"}}
    assert rp.strategy_bundles({}) == {}
    assert rp.strategy_bundles(None) == {}


def test_strategy_traits_from_bundles_and_names() -> None:
    clipped = rp.StrategyTraits.of("whatever", {"clip_norm": 5, "init": "scaled"})
    assert clipped.clipped and clipped.clip_norm == 5.0 and clipped.init == "scaled" and not clipped.plain
    assert rp.StrategyTraits.of("baseline", {}).plain
    guessed = rp.StrategyTraits.of("scaled_clip_ln", None)
    assert guessed.clipped and guessed.init == "scaled" and guessed.norm == "layer"
    assert rp.StrategyTraits.of("batch_norm", None).norm == "batch"


def test_baseline_and_exploding_selection() -> None:
    bundles = {"clip": {"clip_norm": 1.0}, "plain": {}, "scaled": {"init": "scaled"}, "ln": {"norm": "layer"}}
    names = list(bundles)
    assert rp.baseline_strategy(names, bundles) == "plain"
    assert rp.baseline_strategy(["a", "baseline"], {}) == "baseline"
    assert rp.exploding_strategies(names, bundles) == ["scaled", "clip"]
    without_scaled = {k: v for k, v in bundles.items() if k != "scaled"}
    assert rp.exploding_strategies(list(without_scaled), without_scaled) == list(without_scaled)


def test_figure_png_is_a_png(palette: rp.Palette) -> None:
    png = rp.figure_png(rp.plot_activation_derivatives(palette))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_activation_derivatives_are_computed_with_their_bounds(palette: rp.Palette) -> None:
    fig = rp.plot_activation_derivatives(palette)
    (ax,) = visible_axes(fig)
    assert ax.get_xlabel() == "pre-activation a"
    assert "φ′(a)" in ax.get_ylabel()
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert len(labels) == 3 and any("sigmoid" in t for t in labels)
    sigmoid = next(line for line in ax.get_lines() if line.get_label().startswith("logistic"))
    assert np.max(sigmoid.get_ydata()) == pytest.approx(0.25, abs=1e-4)
    assert sigmoid.get_color() == rp.CELL_COLORS["rnn_sigmoid"]


def test_gradient_flow_has_a_row_per_task_length_and_a_line_per_cell(tables: dict, palette: rp.Palette) -> None:
    fig = rp.plot_gradient_flow(tables["gradient_flow"], strategy="baseline", palette=palette)
    axes = visible_axes(fig)
    assert len(axes) == 4 * 2
    for ax in axes:
        assert ax.get_yscale() == "log"
        assert len(ax.get_lines()) == 3
        assert any(isinstance(c, PolyCollection) for c in ax.collections)
    assert "partial" in axes[0].get_ylabel()
    assert axes[-1].get_xlabel().startswith("distance")
    assert axes[0].get_title() == "adding, T = 20 · initialization"
    assert legend_texts(fig) == ["rnn_tanh", "rnn_relu", "lstm"]


def test_gradient_flow_with_one_seed_unknown_cell_and_zero_norms() -> None:
    tables = make_study_tables(cells=("rnn_sigmoid", "my_cell"), seeds=(0,), diverge=None)
    flow = tables["gradient_flow"]
    assert (flow["grad_norm_h"] == 0).any() or flow["grad_norm_h"].min() < 1e-20
    fig = rp.plot_gradient_flow(flow)
    for ax in visible_axes(fig):
        assert not any(isinstance(c, PolyCollection) for c in ax.collections)
        assert all(np.isfinite(line.get_ydata()).all() for line in ax.get_lines())
    assert legend_texts(fig) == ["rnn_sigmoid", "my_cell"]


def test_profile_normalizes_each_probe_to_its_last_step(tables: dict) -> None:
    profile = rp.gradient_decay_profile(tables["gradient_flow"])
    at_zero = profile[profile["distance"] == 0]
    assert np.allclose(at_zero[["mean", "min", "max"]].to_numpy(), 0.0)
    assert set(profile["phase"]) == {rp.INIT_PHASE, rp.TRAINED_PHASE}


def test_norm_traces_mark_divergence_and_clip_threshold(tables: dict, palette: rp.Palette) -> None:
    bundles = rp.strategy_bundles(tables["study_config"])
    clip_norms = {s: rp.StrategyTraits.of(s, b).clip_norm for s, b in bundles.items()}
    fig = rp.plot_norm_traces(
        tables["gradient_norms"], tables["accuracy"], clip_norms=clip_norms, max_panels=4, palette=palette
    )
    axes = visible_axes(fig)
    assert len(axes) == 4
    assert all(ax.get_yscale() == "log" and ax.get_xlabel() == "training step" for ax in axes)
    diverged = next(ax for ax in axes if ax.get_title() == "adding, T = 40 · rnn_relu")
    assert any(line.get_marker() == "X" for line in diverged.get_lines())
    traces = [line for line in diverged.get_lines() if len(line.get_xdata()) > 2]
    assert len(traces) == 3 * 2
    assert all(np.isfinite(np.asarray(line.get_ydata(), dtype=float)).any() for line in traces)
    texts = legend_texts(fig)
    assert texts[:3] == ["baseline", "clip", "layer_norm"]
    assert "clip threshold c" in texts and "diverged (non-finite)" in texts


def test_norm_traces_without_optional_columns_or_accuracy(tables: dict) -> None:
    minimal = tables["gradient_norms"][[*rp.RUN_KEYS, "step", "grad_norm_pre"]]
    fig = rp.plot_norm_traces(minimal, None, strategies=["baseline"])
    assert legend_texts(fig)[0] == "baseline"
    assert "diverged (non-finite)" in legend_texts(fig)
    empty = rp.plot_norm_traces(minimal, None, strategies=["missing"])
    assert len(visible_axes(empty)) == 1 and not visible_axes(empty)[0].axison


def test_metric_vs_length_by_cell_draws_chance_and_scales(tables: dict, palette: rp.Palette) -> None:
    summary = tables["accuracy_summary"]
    fig = rp.plot_metric_vs_length(summary[summary["strategy"] == "baseline"], hue="cell", palette=palette)
    adding, order = visible_axes(fig)
    assert adding.get_yscale() == "log" and order.get_yscale() == "linear"
    assert adding.get_ylabel() == "test MSE (lower is better)"
    assert order.get_ylabel() == "test accuracy (higher is better)"
    assert adding.get_xlabel() == "sequence length T (steps)"
    assert list(adding.get_xticks()) == [20, 40]
    chance = [line for line in adding.get_lines() if line.get_linestyle() == "--"]
    assert np.allclose(chance[0].get_ydata(), 1 / 6)
    assert legend_texts(fig) == ["rnn_tanh", "rnn_relu", "lstm", "chance baseline"]


def test_metric_vs_length_draws_chance_for_a_single_length(tables: dict, palette: rp.Palette) -> None:
    summary = tables["accuracy_summary"]
    one_length = summary[(summary["strategy"] == "baseline") & (summary["seq_len"] == 20)]
    fig = rp.plot_metric_vs_length(one_length, hue="cell", palette=palette)
    adding = visible_axes(fig)[0]
    chance = [line for line in adding.get_lines() if line.get_linestyle() == "--"]
    assert len(chance) == 1 and np.allclose(chance[0].get_ydata(), 1 / 6)
    assert len(set(chance[0].get_xdata())) == 2  # spans the panel, not a zero-length segment at T = 20


def test_metric_vs_length_by_strategy_skips_groups_that_all_diverged(tables: dict, palette: rp.Palette) -> None:
    summary = tables["accuracy_summary"].copy()
    gone = (summary["cell"] == "rnn_relu") & (summary["seq_len"] == 40) & (summary["strategy"] == "baseline")
    summary.loc[gone, ["mean", "min", "max"]] = np.nan
    fig = rp.plot_metric_vs_length(summary, hue="strategy", palette=palette)
    axes = visible_axes(fig)
    assert len(axes) == 3 * 2
    relu_adding = next(ax for ax in axes if ax.get_title() == "adding · rnn_relu")
    baseline_line = relu_adding.get_lines()[0]
    assert list(baseline_line.get_xdata()) == [20]
    assert legend_texts(fig) == ["baseline", "clip", "layer_norm", "chance baseline"]


def test_solved_heatmap_annotates_counts_divergence_and_gaps(tables: dict, palette: rp.Palette) -> None:
    summary = tables["accuracy_summary"]
    summary = summary[~((summary["cell"] == "lstm") & (summary["strategy"] == "clip") & (summary["seq_len"] == 20))]
    fig = rp.plot_solved_heatmap(summary, palette=palette)
    axes = visible_axes(fig)
    assert len(axes) == 4
    texts = [t.get_text() for ax in axes for t in ax.texts]
    assert "2/2" in texts and "0/2\n1 div." in texts
    assert texts.count("2/2") + texts.count("0/2") + texts.count("0/2\n1 div.") == 4 * 9 - 2
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["baseline", "clip", "layer_norm"]
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)


def test_decay_scatter_plots_vanilla_probes_against_the_bound(tables: dict, palette: rp.Palette) -> None:
    decay = tables["decay_rates"].copy()
    decay.loc[decay.index[:3], "decay_per_step"] = np.nan
    fig = rp.plot_decay_vs_prediction(decay, palette=palette)
    (ax,) = visible_axes(fig)
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    vanilla = decay[decay["bound_decay"].notna() & decay["decay_per_step"].notna()]
    assert sum(len(c.get_offsets()) for c in points) == len(vanilla)
    assert len(points) == 2 * 3
    assert "predicted" in ax.get_xlabel() and "measured" in ax.get_ylabel()
    assert ax.get_xlim() == ax.get_ylim()
    assert "rnn_tanh" in legend_texts(fig) and "lstm" not in legend_texts(fig)


def test_empty_tables_give_a_message_instead_of_failing(tables: dict) -> None:
    for fig in (
        rp.plot_gradient_flow(tables["gradient_flow"].iloc[:0]),
        rp.plot_norm_traces(tables["gradient_norms"].iloc[:0]),
        rp.plot_metric_vs_length(tables["accuracy_summary"].iloc[:0]),
        rp.plot_solved_heatmap(tables["accuracy_summary"].iloc[:0]),
        rp.plot_decay_vs_prediction(tables["decay_rates"][tables["decay_rates"]["cell"] == "lstm"]),
    ):
        (ax,) = visible_axes(fig)
        assert not ax.axison and ax.texts


def test_sort_runs_follows_report_order(palette: rp.Palette) -> None:
    df = pd.DataFrame({
        "task": ["b", "a", "a", "a"], "seq_len": [10, 40, 10, 10], "cell": ["lstm", "lstm", "lstm", "rnn_tanh"],
        "strategy": ["clip", "clip", "clip", "clip"], "seed": [0, 0, 0, 0],
    })  # fmt: skip
    ordered = rp.sort_runs(df, palette, ["b", "a"])
    assert list(zip(ordered["task"], ordered["seq_len"], ordered["cell"], strict=True)) == [
        ("b", 10, "lstm"), ("a", 10, "rnn_tanh"), ("a", 10, "lstm"), ("a", 40, "lstm"),
    ]  # fmt: skip


def test_a_wrapped_legend_spreads_its_entries_evenly_and_reads_row_by_row() -> None:
    cells = ("rnn_tanh", "rnn_sigmoid", "rnn_relu", "lstm", "gru")
    tables = make_study_tables(cells=cells, strategies={"baseline": {}}, seeds=(0,), diverge=None)
    fig = rp.plot_metric_vs_length(tables["accuracy_summary"], hue="cell")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in legend.get_texts()}
    order = [*cells, "chance baseline"]
    assert sorted(boxes) == sorted(order)
    rows = [order[:3], order[3:]]
    for row in rows:
        assert len({round(boxes[label].y0) for label in row}) == 1
        assert [boxes[label].x0 for label in row] == sorted(boxes[label].x0 for label in row)
    assert boxes[rows[0][0]].y0 > boxes[rows[1][0]].y0

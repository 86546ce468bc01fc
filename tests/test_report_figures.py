"""The report's figures on small hand-made study tables: what each panel shows, every seed, no diverged values."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from fixtures_tables import make_study_tables
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from test_report_results import results_of

from rnn_gradients.report.figures import (
    figure_png,
    plot_activation_derivatives,
    plot_gradient_flow,
    plot_norm_traces,
    plot_theory,
    png_width,
    theory_points,
    trace_strategies,
)
from rnn_gradients.report.outcome_figures import plot_metric_vs_length, plot_solved_heatmap
from rnn_gradients.report.palette import CELL_COLORS
from rnn_gradients.report.results import Comparison, Results


@pytest.fixture(scope="module")
def results() -> Results:
    return results_of(make_study_tables())


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def panels(fig: Figure) -> list:
    """The visible panels of a figure (colorbars excluded)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def legend_texts(fig: Figure) -> list[str]:
    """The legend's entries in reading order: row by row, left to right."""
    fig.canvas.draw()
    texts = [text for legend in fig.legends for text in legend.get_texts()]
    boxes = {id(t): t.get_window_extent() for t in texts}
    return [t.get_text() for t in sorted(texts, key=lambda t: (-round(boxes[id(t)].y0), boxes[id(t)].x0))]


def plotted_y(ax) -> np.ndarray:
    """Every y value drawn on a panel as data: lines (data coordinates only) and scatter points."""
    values = [np.asarray(line.get_ydata(), float) for line in ax.get_lines() if line.get_transform() == ax.transData]
    values += [c.get_offsets()[:, 1] for c in ax.collections if isinstance(c, PathCollection)]
    return np.concatenate(values) if values else np.array([])


def test_figure_png_is_a_png_and_releases_the_figure(results: Results) -> None:
    fig = plot_activation_derivatives(results)
    assert plt.fignum_exists(fig.number)
    png = figure_png(fig, dpi=100)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and not plt.fignum_exists(fig.number)
    assert png_width(png, dpi=100) == round(int.from_bytes(png[16:20], "big") * 0.96)


def test_activation_derivatives_are_computed_with_their_bounds(results: Results) -> None:
    (ax,) = panels(plot_activation_derivatives(results))
    assert ax.get_xlabel() == "pre-activation a" and "φ′(a)" in ax.get_ylabel()
    sigmoid = [line for line in ax.get_lines() if to_hex(line.get_color()) == CELL_COLORS["rnn_sigmoid"].lower()]
    assert max(np.max(line.get_ydata()) for line in sigmoid) == pytest.approx(0.25, abs=1e-4)
    assert ax.get_legend().get_texts()[0].get_text().startswith("logistic sigmoid")


def test_gradient_flow_shows_the_control_per_task_and_phase(results: Results) -> None:
    fig = plot_gradient_flow(results)
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == [
        "adding, T = 40 · initialization",
        "adding, T = 40 · after training",
        "temporal_order, T = 40 · initialization",
        "temporal_order, T = 40 · after training",
    ]
    for ax in axes:
        assert len(ax.get_lines()) == 3  # one per cell: the mean of the seeds
        assert any(isinstance(c, PolyCollection) for c in ax.collections)  # the seeds' range
        assert all(label.startswith("10") for label in (t.get_text() for t in ax.get_yticklabels()) if label)
    assert legend_texts(fig) == ["rnn_tanh", "rnn_relu", "lstm"]
    one_seed = results_of(make_study_tables(cells=("rnn_sigmoid", "gru"), seeds=(0,), diverge=None))
    for ax in panels(plot_gradient_flow(one_seed)):
        assert not any(isinstance(c, PolyCollection) for c in ax.collections)


def test_gradient_flow_is_absent_without_a_control_or_finite_probes() -> None:
    no_control = make_study_tables(strategies={"clip": {"clip_norm": 1.0}}, seeds=(0,), diverge=None)
    assert plot_gradient_flow(results_of(no_control)) is None
    every_run_diverged = make_study_tables(seeds=(0,), diverge=lambda *key: True, diverge_step=0)
    assert plot_gradient_flow(results_of(every_run_diverged)) is None


def test_norm_traces_mark_divergence_and_clip_threshold(results: Results) -> None:
    assert trace_strategies(results) == ["baseline", "clip", "layer_norm"]  # no scaled strategy: every strategy
    fig = plot_norm_traces(results)
    axes = panels(fig)
    assert len(axes) == 6 and all(ax.get_yscale() == "log" for ax in axes)
    diverged = next(ax for ax in axes if ax.get_title() == "adding, T = 40 · rnn_relu")
    assert any(line.get_marker() == "X" for line in diverged.get_lines())
    traces = [line for line in diverged.get_lines() if len(line.get_xdata()) > 2]
    assert len(traces) == 3 * 2  # every seed of every strategy
    threshold = [line for line in diverged.get_lines() if line.get_linestyle() == "--"]
    assert len(threshold) == 1 and threshold[0].get_ydata()[0] == 1.0
    assert legend_texts(fig)[:3] == ["baseline", "clip", "layer_norm"]
    assert "clip threshold c" in legend_texts(fig) and any("diverged" in t for t in legend_texts(fig))


def test_norm_traces_follow_the_scaled_strategies_with_a_clipped_one() -> None:
    strategies = {"none": {}, "scaled": {"init": "scaled", "spectral_norm": 4.0}, "clip": {"clip_norm": 1.0}}
    results = results_of(make_study_tables(strategies=strategies, seeds=(0,), diverge=None))
    assert trace_strategies(results) == ["scaled", "clip"]
    assert legend_texts(plot_norm_traces(results))[:2] == ["scaled", "clip"]


def test_metric_figure_never_plots_a_diverged_value(results: Results) -> None:
    fig = plot_metric_vs_length(results, results.comparison("gates"))
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == ["adding", "temporal_order"]
    adding, order = axes
    values = plotted_y(adding)
    assert values.size and np.nanmax(values) < 1.0  # the diverged run left 1e24; MSE values are below 1/6
    marks = [line for line in adding.get_lines() if line.get_marker() == "X"]
    assert len(marks) == 1 and [t.get_text() for t in adding.texts] == ["1"]
    assert not [line for line in order.get_lines() if line.get_marker() == "X"]
    assert "✕ n: seeds diverged (no value)" in legend_texts(fig)


def test_metric_figure_shows_every_seed_and_chance(results: Results) -> None:
    fig = plot_metric_vs_length(results, results.comparison("clipping"))
    axes = panels(fig)
    assert len(axes) == 3 * 2  # rows: cells; columns: tasks
    adding = next(ax for ax in axes if ax.get_title() == "adding · rnn_tanh")
    assert adding.get_yscale() == "log" and adding.get_ylabel() == "test MSE\n(lower is better)"
    assert [t.get_text() for t in adding.get_xticklabels()] == ["20", "40"]
    seeds = [c for c in adding.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in seeds) == 2 * 2 * 2  # strategies × lengths × seeds
    chance = [c for c in adding.collections if isinstance(c, LineCollection)]
    assert chance and np.allclose([seg[0][1] for c in chance for seg in c.get_segments()], 1 / 6)
    order = next(ax for ax in axes if ax.get_title() == "temporal_order · lstm")
    assert order.get_ylim() == (-0.02, 1.04)
    assert legend_texts(fig)[:2] == ["baseline", "clip"] and "one seed" in legend_texts(fig)


def test_metric_figure_is_absent_without_a_comparison_or_values() -> None:
    every_run_diverged = results_of(make_study_tables(seeds=(0,), diverge=lambda *key: True, diverge_step=0))
    assert plot_metric_vs_length(every_run_diverged, every_run_diverged.comparison("clipping")) is None
    assert plot_metric_vs_length(every_run_diverged, None) is None


def test_solved_heatmap_reads_k_of_n_with_divergence_and_gaps(results: Results) -> None:
    fig = plot_solved_heatmap(results)
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == [f"{t}, T = {n}" for t in ("adding", "temporal_order") for n in (20, 40)]
    texts = [t.get_text() for ax in axes for t in ax.texts]
    assert len(texts) == 4 * 9 and "0/2\n✕1" in texts and texts.count("2/2") > 0
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    uneven = make_study_tables(
        tasks={
            "adding": {"seq_lens": [20, 40], "metric": "mse", "chance": 1 / 6, "extra": 0},
            "temporal_order": {"seq_lens": [20], "metric": "accuracy", "chance": 0.25, "extra": 0},
        },
        seeds=(0,),
        diverge=None,
    )
    assert len(panels(plot_solved_heatmap(results_of(uneven)))) == 3  # the fourth panel has no length: hidden


def test_theory_figure_sets_the_measured_decay_against_both_predictions(results: Results) -> None:
    fig = plot_theory(results)
    bound_ax, meanfield_ax = panels(fig)
    for ax in (bound_ax, meanfield_ax):
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert sum(len(c.get_offsets()) for c in points) == len(theory_points(results)) > 0
        assert ax.get_xlim() == ax.get_ylim()
    assert bound_ax.get_title() == "Pascanu's bound" and meanfield_ax.get_title() == "mean-field estimate"
    assert bound_ax.get_xlabel().startswith("bound") and meanfield_ax.get_xlabel().startswith("mean field")
    assert "rnn_tanh" in legend_texts(fig) and "lstm" not in legend_texts(fig)
    no_columns = Results(**{**results.__dict__, "decay_rates": results.decay_rates.drop(columns="meanfield_decay")})
    assert plot_theory(no_columns) is None  # tables without both predictions: nothing to draw


def test_theory_figure_is_absent_without_vanilla_cells() -> None:
    gated = results_of(make_study_tables(cells=("lstm", "gru"), seeds=(0,), diverge=None))
    assert theory_points(gated).empty and plot_theory(gated) is None


def test_names_holding_math_are_drawn_as_text() -> None:
    strategies = {"none": {}, "$\\alpha$_{": {"clip_norm": 1.0}}
    results = results_of(make_study_tables(strategies=strategies, seeds=(0,), diverge=None))
    comparison = results.comparison("clipping")
    assert comparison == Comparison("strategy", list(results.cells), ["none", "$\\alpha$_{"])
    fig = plot_metric_vs_length(results, comparison)
    assert "$\\alpha$_{" in legend_texts(fig)
    assert figure_png(fig)[:4] == b"\x89PNG"  # the math parser would fail on "_{"
    assert figure_png(plot_solved_heatmap(results))[:4] == b"\x89PNG"

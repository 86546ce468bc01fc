"""The report's view of the study tables: dtypes, orderings, strategy facts from the bundles, statistics over seeds."""

from __future__ import annotations

import pandas as pd
import pytest
from fixtures_tables import make_study_tables, write_study_tables

from rnn_gradients.engine.cells import CELLS
from rnn_gradients.report.palette import CELL_COLORS, STRATEGY_MARKERS, TOL_MUTED, Palette
from rnn_gradients.report.results import Results


def results_of(tables: dict) -> Results:
    return Results.from_tables(
        tables["study_config"],
        tables["accuracy"],
        tables["gradient_norms"],
        tables["gradient_flow"],
        tables["decay_rates"],
    )


@pytest.fixture(scope="module")
def results() -> Results:
    # adding and temporal_order at T = 20, 40; rnn_tanh, rnn_relu, lstm; baseline, clip, layer_norm; seeds 0, 1;
    # rnn_relu/baseline on adding T = 40 seed 1 diverges at step 37 (its last value: 1e24).
    return results_of(make_study_tables())


def test_load_reads_the_tables_with_their_dtypes(tmp_path) -> None:
    strategies = {"null": {}, "nan": {"clip_norm": 1.0}, "True": {"norm": "layer"}}  # names pandas would misread
    write_study_tables(tmp_path, strategies=strategies, diverge=("adding", 40, "rnn_relu", "null", 1))
    results = Results.load(tmp_path)
    accuracy = results.accuracy
    assert list(results.strategies) == ["null", "nan", "True"] and set(accuracy["strategy"]) == set(strategies)
    assert accuracy["solved"].dtype == bool and accuracy["diverged"].dtype == bool
    assert str(accuracy["diverged_step"].dtype) == "Int64" and accuracy["diverged_step"].isna().sum() == 71
    assert accuracy["seq_len"].dtype.kind == "i" and accuracy["value"].dtype.kind == "f"
    assert results.gradient_norms["clipped"].dtype == bool and results.gradient_norms["finite"].dtype == bool
    assert results.control == "null"


def test_orderings_follow_the_config_and_cells(results: Results) -> None:
    assert results.tasks == ("adding", "temporal_order") and results.longest == {"adding": 40, "temporal_order": 40}
    assert results.cells == ("rnn_tanh", "rnn_relu", "lstm")
    assert list(results.strategies) == ["baseline", "clip", "layer_norm"] and results.control == "baseline"
    assert results.vanilla_cells == ["rnn_tanh", "rnn_relu"] and results.gated_cells == ["lstm"]
    assert results.n_seeds == (2, 2)
    shuffled = results.in_order(results.accuracy.sample(frac=1.0, random_state=0))
    pd.testing.assert_frame_equal(shuffled, results.in_order(results.accuracy))
    assert list(shuffled["cell"].iloc[:6]) == ["rnn_tanh"] * 6 and list(shuffled["seed"].iloc[:2]) == [0, 1]


def test_strategy_facts_come_from_the_bundles_never_from_names() -> None:
    strategies = {"noclip": {}, "clip_free": {"norm": "layer"}, "x": {"clip_value": 0.5}, "baseline": {"chrono": True}}
    tables = make_study_tables(cells=("lstm",), strategies=strategies, seeds=(0,), diverge=None)
    results = results_of(tables)
    assert results.control == "noclip" and not results.strategies["noclip"].clipped
    assert results.strategies_where("clipped") == ["x"]
    assert results.strategies_where("normalized") == ["clip_free"]
    assert results.strategies_where("control") == ["noclip"]


def test_a_config_without_a_control_has_none() -> None:
    tables = make_study_tables(strategies={"baseline": {"norm": "layer"}, "clip": {"clip_norm": 1.0}}, diverge=None)
    results = results_of(tables)
    assert results.control is None and results.with_control(["clip"]) == ["clip"]
    assert results.comparison("activations") is None and results.comparison("gates") is None
    clipping = results.comparison("clipping")
    assert clipping is not None and clipping.strategies == ["clip"]


def test_tables_that_disagree_with_the_config_are_refused() -> None:
    tables = make_study_tables(diverge=None)
    tables["accuracy"].loc[0, "strategy"] = "stray"
    with pytest.raises(ValueError, match=r"accuracy.csv: strategy 'stray' is not in study_config.json"):
        results_of(tables)


def test_probe_phases(results: Results) -> None:
    decay = results.decay_rates
    run = decay[(decay["task"] == "adding") & (decay["seq_len"] == 20) & (decay["cell"] == "lstm")]
    run = run[(run["strategy"] == "clip") & (run["seed"] == 0)]
    assert list(zip(run["probe_step"], run["phase"], strict=True)) == [(0, "init"), (30, "during"), (60, "trained")]
    # The diverged run stops probing at step 37: its probes are at 0 and 30, the last one "trained".
    stopped = decay[(decay["cell"] == "rnn_relu") & (decay["strategy"] == "baseline") & (decay["seed"] == 1)]
    stopped = stopped[(stopped["task"] == "adding") & (stopped["seq_len"] == 40)]
    assert list(stopped["phase"]) == ["init", "trained"]


def test_a_diverged_run_has_no_value(results: Results) -> None:
    runs = results.runs()
    diverged = runs[runs["diverged"]]
    assert len(diverged) == 1 and diverged["value"].isna().all()
    assert results.accuracy.loc[diverged.index, "value"].iloc[0] == 1e24  # the table keeps what the run left
    combinations = results.combinations().set_index(["task", "seq_len", "cell", "strategy"])
    relu = combinations.loc[("adding", 40, "rnn_relu", "baseline")]
    healthy = runs[(runs["task"] == "adding") & (runs["seq_len"] == 40) & (runs["cell"] == "rnn_relu")]
    healthy = healthy[(healthy["strategy"] == "baseline") & ~healthy["diverged"]]
    assert (relu["n_seeds"], relu["n_valued"], relu["n_diverged"], relu["n_solved"]) == (2, 1, 1, 0)
    assert relu["mean"] == relu["min"] == relu["max"] == healthy["value"].iloc[0]
    assert relu["verdict"] == "failed"
    assert (combinations["n_valued"] == 2).sum() == len(combinations) - 1


def test_palette_follows_cells_and_config_order(results: Results) -> None:
    palette = results.palette
    assert palette.cells == {c: CELL_COLORS[c] for c in results.cells}
    assert list(CELL_COLORS) == list(CELLS)
    assert list(palette.strategies.values()) == list(TOL_MUTED[:3])
    many = Palette.of([], [f"s{i}" for i in range(len(TOL_MUTED) + 1)])
    pairs = {(many.strategies[s], many.markers[s]) for s in many.strategies}
    assert len(pairs) == len(TOL_MUTED) + 1 and many.markers["s0"] == STRATEGY_MARKERS[0]
    assert Palette.of(["my_cell"], []).cells["my_cell"] == "#7F7F7F"

"""The report's sentences, tables and appendix on small hand-made study tables, checked against hand computations."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_tables import DEFAULT_STRATEGIES, make_study_tables
from test_report_results import results_of

from rnn_gradients.report import conclusions as conclusions_module
from rnn_gradients.report.conclusions import conclusions
from rnn_gradients.report.format import code, escape, fraction, markdown_table, num, signed, spread
from rnn_gradients.report.provenance import config_yaml, package_versions, reproducibility_facts
from rnn_gradients.report.results import Results
from rnn_gradients.report.tables import accuracy_table, decay_table, gradnorm_table, strategies_table, tasks_table
from rnn_gradients.report.text import (
    activations_sentence,
    clipping_sentence,
    codes,
    exploding_paragraph,
    flow_sentence,
    gates_sentence,
    init_spectrum_sentence,
    normalization_sentence,
    overview_sentence,
)
from rnn_gradients.report.theory import gaps_sentence, gaps_table, theory_points, theory_sentence, theory_table
from rnn_gradients.study.grid import RUN_KEYS

GATED_ONLY = {"cells": ("lstm", "gru"), "strategies": {"none": {}, "chrono": {"chrono": True}}}


@pytest.fixture(scope="module")
def results() -> Results:
    # adding and temporal_order at T = 20, 40; rnn_tanh, rnn_relu, lstm; baseline, clip, layer_norm; seeds 0, 1;
    # rnn_relu/baseline on adding T = 40 seed 1 diverges at step 37.
    return results_of(make_study_tables())


@pytest.fixture(scope="module")
def bare() -> Results:
    """One vanilla cell, one strategy (the control), one seed, nothing diverges."""
    return results_of(make_study_tables(cells=("rnn_tanh",), strategies={"plain": {}}, seeds=(0,), diverge=None))


def with_solved(results: Results, solved: dict[tuple, bool]) -> Results:
    """``results`` with the ``solved`` flag of some runs (task, T, cell, strategy, seed) replaced."""
    accuracy = results.accuracy.copy()
    for key, flag in solved.items():
        match = pd.Series(True, index=accuracy.index)
        for column, value in zip(RUN_KEYS, key, strict=True):
            match &= accuracy[column] == value
        accuracy.loc[match, "solved"] = flag
    return dataclasses.replace(results, accuracy=accuracy)


def test_formatters() -> None:
    assert num(None) == num(float("nan")) == num(float("inf")) == num(pd.NA) == "–"
    assert num(0.123456) == "0.123" and num(1234.5, 6) == "1234.5" and num(-0.038, 2) == "−0.038"
    assert signed(-0.25) == "−0.250" and signed(0.0123) == "+0.012" and signed(np.nan) == "–"
    assert fraction(3.0, np.int64(5)) == "3/5"
    assert spread([-0.5, -0.6, np.nan], signed) == "−0.550 [−0.600, −0.500]" and spread([0.2, 0.2]) == "0.2"
    assert spread([np.nan]) == "–"
    assert codes([]) == "none" and codes(["a", "b", "c"]) == "<code>a</code>, <code>b</code> and <code>c</code>"


def test_escape_leaves_no_markup() -> None:
    hostile = "<img src=x onerror=alert(1)> [a](javascript:alert(1)) @fig-x $x$ | `c` *e* _u_"
    escaped = escape(hostile)
    assert re.fullmatch(r"(?:[A-Za-z0-9 ]|&#\d+;)*", escaped)
    assert "<" not in escaped and "@" not in escaped and "|" not in escaped and "`" not in escaped
    assert code("clip_norm") == "<code>clip&#95;norm</code>"


def test_markdown_table_right_aligns_only_numeric_columns() -> None:
    text = markdown_table(pd.DataFrame({"cell": [code("lstm"), code("gru")], "value": ["0.5 [0.4, 0.6]", "−0.250"]}))
    header, rule, *rows = text.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == ["cell", "value"]
    left, right = rule.strip("|").split("|")
    assert left.startswith(":") and not left.endswith(":") and right.endswith(":") and not right.startswith(":")
    assert len(rows) == 2


def test_overview_counts_seeds_and_names_the_control(results: Results, bare: Results) -> None:
    text = overview_sentence(results)
    assert text.startswith(
        "The study trains 3 cell types (<code>rnn&#95;tanh</code>, <code>rnn&#95;relu</code> and <code>lstm</code>) "
        "under 3 mitigation strategies (<code>baseline</code>, <code>clip</code> and <code>layer&#95;norm</code>) on "
        "2 tasks, with 2 seeds per combination: 72 training runs in all."
    )
    assert "The control, against which every remedy is compared, is <code>baseline</code>" in text
    assert "as uncertain otherwise" in text
    single = overview_sentence(bare)
    assert "1 cell type (<code>rnn&#95;tanh</code>) under 1 mitigation strategy" in single and "1 seed per" in single
    assert "With one seed per combination, every result below rests on a single run" in single


def test_a_study_without_a_control_says_so_instead_of_picking_one() -> None:
    no_control = results_of(make_study_tables(strategies={"ln": {"norm": "layer"}, "clip": {"clip_norm": 1.0}}))
    assert "The study has no control" in overview_sentence(no_control)
    assert flow_sentence(no_control).startswith("The study has no control, so there is no unmitigated gradient flow")
    assert activations_sentence(no_control).startswith("The study has no control")
    assert gates_sentence(no_control).startswith("The study has no control")
    assert normalization_sentence(no_control).startswith(
        "@fig-normalization shows <code>ln</code> for <code>rnn&#95;tanh</code>, <code>rnn&#95;relu</code> and "
        "<code>lstm</code>, the cells they train; the study has no control to compare with."
    )
    lines = conclusions(no_control).splitlines()
    assert lines[1].startswith("- **adding, T = 40** (MSE, chance 0.167). No control;")
    assert not any("ln</code>" in line and "rescued" in line for line in lines)
    assert "Vanishing" not in conclusions(no_control)


def test_tables(results: Results) -> None:
    tasks = tasks_table(results)
    assert list(tasks["task"]) == ["<code>adding</code>", "<code>temporal&#95;order</code>"]
    assert list(tasks["chance"]) == ["0.167", "0.25"] and list(tasks["solved if error ≤"]) == ["0.0167", "0.075"]
    strategies = strategies_table(results)
    assert list(strategies.columns) == ["strategy", "clip_norm", "norm"]
    assert strategies.values.tolist() == [
        ["<code>baseline</code>", "", ""],
        ["<code>clip</code>", "1&#46;0", ""],
        ["<code>layer&#95;norm</code>", "", "layer"],
    ]
    decay = decay_table(results)
    assert list(decay.columns) == ["task", "T", "cell", "strategy", "at initialization", "after training"]
    assert len(decay) == 2 * 2 * 3 * 3
    first = results.decay_rates
    first = first[(first["task"] == "adding") & (first["seq_len"] == 20) & (first["cell"] == "rnn_tanh")]
    first = first[(first["strategy"] == "baseline") & (first["phase"] == "init")]["decay_per_step"]
    assert decay.iloc[0]["at initialization"] == spread(first, signed) and "[" in decay.iloc[0]["at initialization"]


def test_accuracy_table_skips_diverged_values(results: Results) -> None:
    table = accuracy_table(results)
    assert list(table.columns) == [
        "task", "T", "cell", "strategy", "mean ± sd", "range", "solved", "solve rate, 75 % interval", "verdict",
        "diverged",
    ]  # fmt: skip
    rows = table.set_index(["task", "T", "cell", "strategy"])
    lone = rows.loc[("adding", "40", "<code>rnn&#95;relu</code>", "<code>baseline</code>")]
    runs = results.runs()
    healthy = runs[(runs["task"] == "adding") & (runs["seq_len"] == 40) & (runs["cell"] == "rnn_relu")]
    healthy = healthy[(healthy["strategy"] == "baseline") & ~healthy["diverged"]]["value"].iloc[0]
    assert lone["mean ± sd"] == num(healthy) == lone["range"]  # not the 1e24 the diverged seed left
    assert (lone["solved"], lone["diverged"]) == ("0/2", "1/2")
    assert (lone["solve rate, 75 % interval"], lone["verdict"]) == ("0.00–0.40", "failed")
    assert sum("±" in v for v in table["mean ± sd"]) == len(table) - 1
    every_run_diverged = results_of(make_study_tables(seeds=(0,), diverge=lambda *key: True, diverge_step=0))
    single = accuracy_table(every_run_diverged)
    assert list(single.columns) == [
        "task", "T", "cell", "strategy", "value", "solved", "solve rate, 75 % interval", "verdict", "diverged",
    ]  # fmt: skip
    assert set(single["value"]) == {"–"} and set(single["diverged"]) == {"1/1"}


def test_gradnorm_table_counts_non_finite_steps(results: Results) -> None:
    table = gradnorm_table(results)
    assert len(table) == 72 and table.columns[-1] == "non-finite"
    run = table[(table["task"] == "adding") & (table["T"] == "40") & (table["seed"] == "1")]
    run = run[(run["cell"] == "<code>rnn&#95;relu</code>") & (run["strategy"] == "<code>baseline</code>")].iloc[0]
    assert run["steps"] == "60" and run["non-finite"] == str(60 - 37 + 1) and run["clipped"] == "0 %"


def test_init_spectrum_sentence_quotes_the_medians(results: Results) -> None:
    text = init_spectrum_sentence(results)
    # The fixture's σ_max is constant per cell and ρ = 0.55 σ_max: rnn_relu 1.9 and 1.045.
    assert "<code>rnn&#95;relu</code> $\\rho$ = 1.04, $\\sigma_{\\max}$ = 1.9" in text
    empty = dataclasses.replace(results, decay_rates=results.decay_rates.iloc[0:0])
    assert init_spectrum_sentence(empty) is None


def test_exploding_paragraph_lists_the_diverged_runs(results: Results, bare: Results) -> None:
    text = exploding_paragraph(results)
    assert text.startswith("@fig-traces follows the pre-clip gradient norm during training for every strategy")
    assert text.endswith(
        "1/72 runs diverged (the training loop met a NaN or infinite loss or gradient), 1 of them without clipping: "
        "<code>rnn&#95;relu</code> under <code>baseline</code> on adding, T = 40: seed 1 at step 37."
    )
    assert exploding_paragraph(bare).endswith("None of the 4 runs diverged.")
    every_run_diverged = results_of(make_study_tables(seeds=(0, 1), diverge=lambda *key: True, diverge_step=0))
    text = exploding_paragraph(every_run_diverged)
    assert text.startswith("No run has a finite pre-clip gradient norm, so there is no figure")
    assert "@fig-traces" not in text and "seeds 0 and 1, each at step 0" in text


def test_a_remedy_scoped_to_some_cells_is_compared_for_those_cells_only() -> None:
    # layer_norm trains the vanilla cells only: its sentence and the control's count beside it leave the lstm out
    scoped = dict(DEFAULT_STRATEGIES, layer_norm={"norm": "layer", "cells": ["rnn_tanh", "rnn_relu"]})
    results = results_of(make_study_tables(strategies=scoped))
    assert results.comparison("normalization").cells == ["rnn_tanh", "rnn_relu"]
    assert results.comparison("clipping").cells == ["rnn_tanh", "rnn_relu", "lstm"]
    sentence = normalization_sentence(results)
    assert "for <code>rnn&#95;tanh</code> and <code>rnn&#95;relu</code>, the cells they train." in sentence
    # T = 40: only the lstm solves, so without it neither strategy solves a run (2 tasks x 2 cells x 2 seeds)
    assert sentence.endswith("these cells together: <code>baseline</code> 0/8; <code>layer&#95;norm</code> 0/8.")


def test_remedy_sentences_count_solved_runs(results: Results) -> None:
    # At T = 40 only lstm solves (2 seeds per task): 4 of 12 runs per strategy over both tasks and three cells.
    assert activations_sentence(results) == (
        "@fig-activations compares <code>rnn&#95;tanh</code> and <code>rnn&#95;relu</code> under the control "
        "<code>baseline</code>. Seeds solved at the longest length of each task: on adding (T = 40): "
        "<code>rnn&#95;tanh</code> 0/2, <code>rnn&#95;relu</code> 0/2; on temporal&#95;order (T = 40): "
        "<code>rnn&#95;tanh</code> 0/2, <code>rnn&#95;relu</code> 0/2."
    )
    assert normalization_sentence(results).endswith(
        "these cells together: <code>baseline</code> 4/12; <code>layer&#95;norm</code> 4/12."
    )
    assert gates_sentence(results).endswith("gated cells solved 4/4 runs and vanilla cells solved 0/8 runs.")
    share = results.gradient_norms.loc[results.gradient_norms["strategy"] == "clip", "clipped"].mean()
    assert 0 < share < 1
    assert clipping_sentence(results).endswith(
        f"The clipped strategies rescaled {num(100 * share)} % of their training steps; with clipping 0/24 runs "
        "diverged; without clipping 1/48 runs diverged."
    )


def test_sections_say_plainly_what_is_absent(bare: Results) -> None:
    assert activations_sentence(bare) == (
        "This grid cannot compare activations: it has no `rnn_relu` cell (vanilla cells: <code>rnn&#95;tanh</code>)."
    )
    assert normalization_sentence(bare).startswith("This grid has no normalization strategy")
    assert clipping_sentence(bare).startswith("This grid has no clipping strategy")
    assert gates_sentence(bare) == "This grid has no gated cell (cells: <code>rnn&#95;tanh</code>)."
    relu_only = results_of(make_study_tables(cells=("rnn_relu",), seeds=(0,), diverge=None))
    assert "it has no tanh or sigmoid RNN (vanilla cells: <code>rnn&#95;relu</code>)" in activations_sentence(relu_only)
    gated = results_of(make_study_tables(**GATED_ONLY, seeds=(0,), diverge=None))
    assert activations_sentence(gated).startswith("This grid has no vanilla cell")
    assert gates_sentence(gated).startswith("@fig-gates shows <code>lstm</code> and <code>gru</code> under the control")
    assert theory_sentence(gated).startswith("The study has no vanilla cell") and "@fig-theory" not in theory_sentence(
        gated
    )


def test_flow_sentence_refers_to_the_figure_only_when_it_is_drawn(bare: Results) -> None:
    assert flow_sentence(bare).startswith("@fig-flow shows the measured gradient norms")
    assert "<code>plain</code>" in flow_sentence(bare)
    every_run_diverged = results_of(make_study_tables(seeds=(0,), diverge=lambda *key: True, diverge_step=0))
    text = flow_sentence(every_run_diverged)
    assert "@fig-flow" not in text and "there is no figure of the gradient flow" in text


def hand_decay(results: Results) -> pd.DataFrame:
    keys = {"task": "adding", "seq_len": 20, "strategy": "plain"}
    rows = [  # measured, bound, mean field
        {**keys, "cell": "rnn_tanh", "seed": 0, "phase": "init", "decay_per_step": -0.5, "bound": 0.1, "mf": -0.45},
        {**keys, "cell": "rnn_tanh", "seed": 0, "phase": "trained", "decay_per_step": -0.3, "bound": 0.2, "mf": -0.6},
        {**keys, "cell": "rnn_tanh", "seed": 1, "phase": "init", "decay_per_step": -0.2, "bound": -0.1, "mf": -0.25},
        {**keys, "cell": "rnn_relu", "seed": 0, "phase": "init", "decay_per_step": 0.05, "bound": 0.3, "mf": 0.0},
        {**keys, "cell": "lstm", "seed": 0, "phase": "init", "decay_per_step": -0.01, "bound": None, "mf": None},
        {**keys, "cell": "rnn_relu", "seed": 1, "phase": "init", "decay_per_step": None, "bound": 0.2, "mf": 0.1},
    ]
    frame = pd.DataFrame(rows).rename(columns={"bound": "bound_decay", "mf": "meanfield_decay"})
    return frame.astype({"decay_per_step": float, "bound_decay": float, "meanfield_decay": float})


def test_theory_sentence_matches_a_hand_computation(bare: Results) -> None:
    hand = dataclasses.replace(bare, decay_rates=hand_decay(bare))
    points = theory_points(hand)
    assert len(points) == 4  # the gated probe and the one without a measurement do not qualify
    # slack (bound − measured): 0.6, 0.5, 0.1, 0.25 -> median 0.375; mean-field errors at init 0.05, 0.05, 0.05,
    # after training 0.3 (|−0.3 − (−0.6)|)
    text = theory_sentence(hand)
    assert "4/4 probes of 3 vanilla runs hold Pascanu's bound — as they must" in text
    assert "loose by 0.38 per step at the median (from 0.1 to 0.6)" in text
    assert "misses the measured slope by a median of 0.05 (largest 0.05) per step at initialization" in text
    assert "and by 0.3 (largest 0.3) after training" in text
    assert "its largest error is +0.30 per step (<code>rnn&#95;tanh</code> under <code>plain</code>" in text
    broken = hand_decay(bare)
    broken.loc[0, "bound_decay"] = -0.6  # a probe above the bound: the sentence says so
    assert "3/4 probes of 3 vanilla runs hold Pascanu's bound (1 do not" in theory_sentence(
        dataclasses.replace(bare, decay_rates=broken)
    )
    table = theory_table(hand)
    assert list(table["cell"]) == ["<code>rnn&#95;tanh</code>"] * 2 + ["<code>rnn&#95;relu</code>"]
    assert list(table["bound holds"]) == ["2/2", "1/1", "1/1"]
    gated = dataclasses.replace(bare, decay_rates=hand_decay(bare).query("cell == 'lstm'"))
    assert theory_points(gated).empty and theory_table(gated) is None


def test_train_test_gaps_are_shown_only_beyond_sampling_noise(bare: Results) -> None:
    accuracy = bare.accuracy.assign(error_se=0.01, train_error=bare.accuracy["error"], train_error_se=0.01)
    agreeing = dataclasses.replace(bare, accuracy=accuracy)
    assert gaps_table(agreeing) is None and "agree within three standard errors" in gaps_sentence(agreeing)
    first = accuracy.index[~accuracy["diverged"]][0]
    accuracy.loc[first, "train_error"] = accuracy.loc[first, "error"] - 0.5
    gapped = dataclasses.replace(bare, accuracy=accuracy)
    table = gaps_table(gapped)
    assert len(table) == 1 and table["difference (z)"].iloc[0] == signed(0.5 / np.sqrt(2 * 0.01**2), 1)
    assert "@tbl-gaps" in gaps_sentence(gapped)


def test_conclusions_with_one_seed_say_so(bare: Results) -> None:
    lines = conclusions(bare).splitlines()
    assert lines[0] == (
        "- **One seed.** Every combination was trained with one seed, so each statement below rests on a single run "
        "per combination."
    )
    assert lines[1].startswith("- **adding, T = 40** (MSE, chance 0.167). Under the control <code>plain</code>:")


def test_conclusions_claim_majorities_and_name_the_rescue(results: Results) -> None:
    lines = conclusions(results).splitlines()
    assert lines[0].startswith(
        "- **Seeds.** A statement below asserts only verdicts that the seeds settle: a combination (k/n: seeds solved "
        "of seeds trained) is solved or failed when the 75 % Wilson interval"
    )
    # two seeds, capped at two, at 75 %: a coin-flip combination is settled whenever they agree, 2 x 1/4
    assert lines[0].endswith(
        "settled, one way or the other, with probability 50 % by this rule (its first 2 seeds alone: 50 %), so "
        "another set of seeds can read such a combination otherwise."
    )
    assert lines[1] == (
        "- **adding, T = 40** (MSE, chance 0.167). Under the control <code>baseline</code>: solved by "
        "<code>lstm</code> (2/2); failed by <code>rnn&#95;tanh</code> (0/2) and <code>rnn&#95;relu</code> (0/2). "
        "No strategy rescues <code>rnn&#95;tanh</code> or <code>rnn&#95;relu</code>."
    )
    assert lines[3].startswith("- **Vanishing.** At initialization under <code>baseline</code>")
    assert lines[4] == "- **Exploding.** 1/48 runs without clipping diverged; 0/24 runs with clipping diverged."
    assert lines[5].startswith("- **Theory.** ") and len(lines) == 6
    rescued = with_solved(
        results, {("adding", 40, "rnn_tanh", "clip", 0): True, ("adding", 40, "rnn_tanh", "clip", 1): True}
    )
    assert (
        conclusions(rescued)
        .splitlines()[1]
        .endswith(
            "No strategy rescues <code>rnn&#95;relu</code>; <code>rnn&#95;tanh</code> is rescued by <code>clip</code> "
            "(2/2)."
        )
    )


def test_conclusions_call_an_unsettled_result_uncertain(results: Results) -> None:
    split = with_solved(
        results,
        {("adding", 40, "rnn_tanh", "baseline", 0): True, ("adding", 40, "rnn_tanh", "layer_norm", 1): True},
    )
    line = conclusions(split).splitlines()[1]
    assert "uncertain for <code>rnn&#95;tanh</code> (1/2)" in line
    assert "solved by <code>rnn&#95;tanh</code>" not in line and "failed by <code>rnn&#95;tanh</code>" not in line
    # the control's verdict on rnn_tanh is not settled, so no remedy is said to rescue it
    assert line.endswith("No strategy rescues <code>rnn&#95;relu</code>.")
    assert "layer&#95;norm" not in line


def test_conclusions_vanishing_factor_is_the_mean_of_slope_times_length(results: Results) -> None:
    decay = results.decay_rates
    start = decay[(decay["phase"] == "init") & (decay["strategy"] == "baseline") & (decay["seq_len"] == 40)]
    exponent = (start["decay_per_step"] * start["seq_len"] / np.log(10)).groupby(start["cell"]).agg(["mean", "min"])
    line = conclusions_module.vanishing_line(results)
    for cell in ("rnn_tanh", "rnn_relu", "lstm"):
        mean, low = (f"{exponent.loc[cell, column]:.1f}".replace("-", "−") for column in ("mean", "min"))
        assert f"{code(cell)} 10^{mean}^ (10^{low}^ to " in line


def test_reproducibility_facts_and_config_yaml(results: Results) -> None:
    text = reproducibility_facts(
        results,
        renderer="offline <b>",
        tables=Path("/t"),
        commit="abc",
        dirty=True,
        machine="M",
        versions={"torch": "2.13.0"},
    )
    lines = text.splitlines()
    assert lines[:4] == [
        "- **Renderer:** offline &#60;b&#62;.",
        "- **Study tables:** <code>&#47;t</code>.",
        "- **Git commit:** <code>abc</code> (with uncommitted changes).",
        "- **Machine rendering this page:** M.",
    ]
    assert lines[4] == "- **Runs:** torch 2&#46;13&#46;0, device cpu, torch threads 1."
    assert lines[-1] == "- **Packages:** torch 2&#46;13&#46;0."
    kwargs = {"renderer": "r", "tables": Path("/t"), "dirty": False, "machine": "M", "versions": {}}
    assert "- **Git commit:** none (not a git checkout)." in reproducibility_facts(results, commit=None, **kwargs)
    assert package_versions(["pandas", "no-such-package-xyz"]) == {
        "pandas": pd.__version__,
        "no-such-package-xyz": None,
    }
    assert "no&#45;such&#45;package&#45;xyz not installed" in reproducibility_facts(
        results, commit=None, **kwargs | {"versions": {"no-such-package-xyz": None}}
    )
    shown = config_yaml(results)
    assert shown.startswith("```yaml\n") and shown.endswith("```")
    assert "baseline: {}" in shown and "clip: {clip_norm: 1.0}" in shown and "layer_norm: {norm: layer}" in shown
    fenced = dataclasses.replace(results, config={**results.config, "note": "a ```` run"})
    assert config_yaml(fenced).startswith("`````yaml\n")

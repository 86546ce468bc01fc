"""The report's sentences and tables on small hand-made study tables: numbers checked against hand computations."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_tables import make_study_tables

from rnn_gradients.report import text as nr


def study_of(tables: dict) -> nr.Study:
    return nr.Study.from_tables(
        config=tables["study_config"],
        accuracy=tables["accuracy"],
        summary=tables["accuracy_summary"],
        norms=tables["gradient_norms"],
        flow=tables["gradient_flow"],
        decay=tables["decay_rates"],
    )


@pytest.fixture(scope="module")
def study() -> nr.Study:
    # adding and temporal_order at T = 20, 40; rnn_tanh, rnn_relu, lstm; baseline, clip, layer_norm; seeds 0, 1;
    # rnn_relu/baseline on adding T = 40 seed 1 diverges at step 37.
    return study_of(make_study_tables())


@pytest.fixture(scope="module")
def bare() -> nr.Study:
    """One vanilla cell, one unmitigated strategy, one seed, nothing diverges."""
    return study_of(make_study_tables(cells=("rnn_tanh",), strategies={"plain": {}}, seeds=(0,), diverge=None))


def test_small_formatters() -> None:
    assert nr.names([]) == "none" and nr.names(["a"]) == "`a`"
    assert nr.names(["a", "b", "c"]) == "`a`, `b` and `c`"
    assert nr.num(None) == nr.num(float("nan")) == nr.num(float("inf")) == "–"
    assert nr.num(0.123456) == "0.123" and nr.num(1234.5, 6) == "1234.5"
    assert nr.of(3.0, np.int64(5)) == "3 of 5"
    assert nr.slope(-0.25) == "−0.250" and nr.slope(0.0123) == "+0.012" and nr.slope(np.nan) == "–"


def test_markdown_table_right_aligns_only_numeric_columns() -> None:
    text = nr.markdown_table(pd.DataFrame({"cell": ["`lstm`", "`gru`"], "value": ["0.5 ± 0.1", "−0.250"]}))
    header, rule, *rows = text.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == ["cell", "value"]
    left, right = rule.strip("|").split("|")
    assert left.startswith(":") and not left.endswith(":") and right.endswith(":") and not right.startswith(":")
    assert len(rows) == 2


def test_study_orders_the_grid_and_reads_booleans(study: nr.Study) -> None:
    assert study.baseline == "baseline" and study.strategies == ["baseline", "clip", "layer_norm"]
    assert study.cells == ["rnn_tanh", "rnn_relu", "lstm"]
    assert study.vanilla == ["rnn_tanh", "rnn_relu"] and study.gated == ["lstm"]
    assert study.tasks == ["adding", "temporal_order"] and study.longest == {"adding": 40, "temporal_order": 40}
    assert study.accuracy["diverged"].dtype == bool and int(study.accuracy["diverged"].sum()) == 1
    assert study.clipped_strategies() == ["clip"]


def test_overview_counts_and_plurals(study: nr.Study, bare: nr.Study) -> None:
    assert nr.overview_sentence(study).startswith(
        "The study trains 3 cell types (`rnn_tanh`, `rnn_relu` and `lstm`) under 3 mitigation strategies "
        "(`baseline`, `clip` and `layer_norm`) on 2 tasks, with 2 seeds per combination: 72 training runs in all."
    )
    assert nr.overview_sentence(bare).startswith(
        "The study trains 1 cell type (`rnn_tanh`) under 1 mitigation strategy (`plain`) on 2 tasks, with 1 seed "
        "per combination: 4 training runs in all."
    )


def test_tasks_table_has_chance_and_threshold_per_task(study: nr.Study) -> None:
    table = nr.tasks_table(study)
    assert list(table["task"]) == ["`adding`", "`temporal_order`"]
    assert list(table["T"]) == ["20, 40", "20, 40"] and list(table["metric"]) == ["mse", "accuracy"]
    # Chance: MSE 1/6 for adding; accuracy 1/4 for temporal order, whose threshold is 0.1 · (1 − 1/4).
    assert list(table["chance"]) == ["0.167", "0.25"] and list(table["solved if error ≤"]) == ["0.0167", "0.075"]


def test_decay_table_has_one_row_per_combination(study: nr.Study) -> None:
    table = nr.decay_table(study)
    assert list(table.columns) == ["task", "T", "cell", "strategy", "at initialization", "after training"]
    assert len(table) == 2 * 2 * 3 * 3 and not table[["task", "T", "cell", "strategy"]].duplicated().any()
    assert all(re.fullmatch(r"[+−]\d\.\d{3}", v) for v in table[["at initialization", "after training"]].stack())
    first = table.iloc[0]
    assert (first["task"], first["T"], first["cell"], first["strategy"]) == ("adding", "20", "`rnn_tanh`", "`baseline`")
    decay = study.decay
    init = decay[
        (decay["task"] == "adding")
        & (decay["seq_len"] == 20)
        & (decay["cell"] == "rnn_tanh")
        & (decay["strategy"] == "baseline")
        & (decay["probe_step"] == 0)
    ]
    assert first["at initialization"] == nr.slope(init["decay_per_step"].mean())


def test_init_spectrum_sentence_quotes_the_medians(study: nr.Study) -> None:
    text = nr.init_spectrum_sentence(study)
    assert text is not None
    # The fixture's σ_max is constant per cell and ρ = 0.55 σ_max: rnn_relu 1.9 and 1.045.
    assert "`rnn_relu` $\\rho = 1.04$, $\\sigma_{\\max} = 1.9$" in text and "`lstm` $\\rho = 0.55$" in text
    empty = dataclasses.replace(study, decay=study.decay.iloc[0:0])
    assert nr.init_spectrum_sentence(empty) is None


def test_exploding_paragraph_lists_the_diverged_run(study: nr.Study, bare: nr.Study) -> None:
    text = nr.exploding_paragraph(study)
    assert "for every strategy, since none uses the scaled initialization" in text
    assert "1 of 72 runs were flagged as diverged by the training loop; 1 of 1 of those used no clipping." in text
    assert text.endswith("Diverged runs: `rnn_relu`/`baseline` on adding T = 40 seed 1 at step 37.")
    assert nr.exploding_paragraph(bare).endswith("None of the 4 runs diverged.")


def test_strategies_table_shows_only_non_default_settings(study: nr.Study) -> None:
    table = nr.strategies_table(study)
    assert list(table.columns) == ["strategy", "clip_norm", "norm"]
    assert table.values.tolist() == [["`baseline`", "", ""], ["`clip`", "1.0", ""], ["`layer_norm`", "", "layer"]]


def test_remedy_sentences_count_solved_runs(study: nr.Study) -> None:
    # At T = 40 only lstm solves (2 seeds per task): 4 of 12 runs per strategy over both tasks and three cells.
    assert nr.activations_sentence(study) == (
        "@fig-activations compares `rnn_tanh` and `rnn_relu` under `baseline`. Seeds solved at the longest length "
        "of each task: on adding (T = 40) `rnn_tanh` 0 of 2, `rnn_relu` 0 of 2; "
        "on temporal_order (T = 40) `rnn_tanh` 0 of 2, `rnn_relu` 0 of 2."
    )
    assert nr.normalization_sentence(study).endswith("all cells together: `baseline` 4 of 12; `layer_norm` 4 of 12.")
    assert nr.gates_sentence(study).endswith("gated cells solved 4 of 4 runs and vanilla cells solved 0 of 8 runs.")
    assert set(nr.normalization_rows(study)["strategy"]) == {"baseline", "layer_norm"}
    assert set(nr.clipping_rows(study)["strategy"]) == {"baseline", "clip"}
    assert set(nr.gate_rows(study)["strategy"]) == {"baseline"}
    assert set(nr.activation_rows(study)["cell"]) == {"rnn_tanh", "rnn_relu"}


def test_clipping_sentence_share_matches_the_steps(study: nr.Study) -> None:
    steps = study.norms[study.norms["strategy"] == "clip"]
    share = 100 * steps["clipped"].astype(bool).mean()
    assert 0 < share < 100
    assert nr.clipping_sentence(study) == (
        f"@fig-clipping compares `clip` with `baseline`. The clipped strategies rescaled {nr.num(share, 3)} % of "
        "their training steps; with clipping 0 of 24 runs diverged; without clipping 1 of 48 runs diverged."
    )


def test_sections_say_plainly_what_is_absent(bare: nr.Study) -> None:
    assert nr.activations_sentence(bare) == (
        "This grid cannot compare activations: it has no `rnn_relu` cell (vanilla cells: `rnn_tanh`)."
    )
    assert nr.normalization_sentence(bare).startswith("This grid has no normalization strategy")
    assert nr.clipping_sentence(bare).startswith("This grid has no clipping strategy")
    assert nr.gates_sentence(bare) == "This grid has no gated cell (cells: `rnn_tanh`)."
    for rows in (nr.activation_rows, nr.normalization_rows, nr.clipping_rows, nr.gate_rows):
        assert rows(bare) is None
    relu_only = study_of(make_study_tables(cells=("rnn_relu",), seeds=(0,), diverge=None))
    assert "it has no tanh or sigmoid RNN (vanilla cells: `rnn_relu`)" in nr.activations_sentence(relu_only)
    no_baseline_probes = dataclasses.replace(bare, flow=bare.flow.iloc[0:0])
    assert nr.flow_strategy(no_baseline_probes) is None
    assert nr.flow_sentence(no_baseline_probes) == "No gradient probes of the unmitigated strategy are in the tables."
    assert nr.flow_strategy(bare) == "plain" and "under the `plain` strategy" in nr.flow_sentence(bare)


def hand_decay() -> pd.DataFrame:
    keys = {"task": "adding", "seq_len": 20, "strategy": "plain"}
    rows = [
        {**keys, "cell": "rnn_tanh", "seed": 0, "probe_step": 0, "decay_per_step": -0.5, "bound_decay": -0.4},
        {**keys, "cell": "rnn_tanh", "seed": 0, "probe_step": 10, "decay_per_step": -0.3, "bound_decay": -0.35},
        {**keys, "cell": "rnn_tanh", "seed": 1, "probe_step": 0, "decay_per_step": -0.2, "bound_decay": -0.1},
        {**keys, "cell": "rnn_relu", "seed": 0, "probe_step": 0, "decay_per_step": 0.05, "bound_decay": 0.1},
        {**keys, "cell": "lstm", "seed": 0, "probe_step": 0, "decay_per_step": -0.01, "bound_decay": None},
        {**keys, "cell": "rnn_relu", "seed": 1, "probe_step": 0, "decay_per_step": None, "bound_decay": 0.2},
    ]
    return pd.DataFrame(rows)


def test_theory_sentence_matches_a_hand_computation(bare: nr.Study) -> None:
    measured = np.array([-0.5, -0.3, -0.2, 0.05])
    predicted = np.array([-0.4, -0.35, -0.1, 0.1])
    below = 100 * np.mean(measured <= predicted)  # 3 of 4
    corr = np.corrcoef(measured, predicted)[0, 1]
    gap = np.median(measured - predicted)
    check = nr.TheoryCheck.of(hand_decay())
    assert check is not None and (check.n_probes, check.n_runs) == (4, 3)
    assert check.below == pytest.approx(0.75) and check.corr == pytest.approx(corr) and check.gap == pytest.approx(gap)
    text = nr.theory_sentence(dataclasses.replace(bare, decay=hand_decay()))
    assert text == (
        f"4 probes of 3 vanilla runs qualify. {nr.num(below, 3)} % of them lie on or below the line; the Pearson "
        f"correlation between measured and predicted rates is {nr.num(corr, 2)}, and the median of measured − "
        f"predicted is {gap:+.3f} per step."
    )
    # By hand: 3 of 4 below; r = 0.1519 / sqrt(0.1569 · 0.1619) ≈ 0.953; gaps −0.1, 0.05, −0.1, −0.05.
    assert "75 %" in text and "rates is 0.95," in text and "is -0.075 per step" in text


def test_theory_sentence_without_variation_or_probes(bare: nr.Study) -> None:
    flat = hand_decay().assign(bound_decay=-0.2)
    assert np.isnan(nr.TheoryCheck.of(flat).corr)
    assert "the correlation is undefined" in nr.theory_sentence(dataclasses.replace(bare, decay=flat))
    gated = hand_decay().assign(bound_decay=None)
    assert nr.TheoryCheck.of(gated) is None
    assert nr.theory_sentence(dataclasses.replace(bare, decay=gated)).startswith("No vanilla-cell probe")


def test_conclusions_name_the_solved_counts(study: nr.Study) -> None:
    lines = nr.conclusions(study).splitlines()
    assert lines[0] == (
        "- **adding, T = 40** (mse, chance 0.167): under `baseline`, seeds solved — `rnn_tanh` 0 of 2, "
        "`rnn_relu` 0 of 2, `lstm` 2 of 2. `rnn_tanh` solved no seed under any strategy; "
        "`rnn_relu` solved no seed under any strategy."
    )
    assert lines[1].startswith("- **temporal_order, T = 40** (accuracy, chance 0.25)")
    assert lines[2].startswith("- **Vanishing.** At initialization under `baseline`")
    assert lines[3] == "- **Exploding.** 1 of 48 runs without clipping diverged; 0 of 24 runs with clipping diverged."
    assert lines[4].startswith("- **Theory.** ") and "(correlation " in lines[4]
    assert len(lines) == 5


def test_conclusions_name_the_remedy_that_rescued_a_cell(study: nr.Study) -> None:
    summary = study.summary.copy()
    rescued = (
        (summary["task"] == "adding")
        & (summary["seq_len"] == 40)
        & (summary["cell"] == "rnn_tanh")
        & (summary["strategy"] == "clip")
    )
    summary.loc[rescued, ["n_solved", "solved_rate"]] = [1, 0.5]
    text = nr.conclusions(dataclasses.replace(study, summary=summary))
    assert "`rnn_tanh` did best with `clip` (1 of 2); `rnn_relu` solved no seed under any strategy." in text


def test_conclusions_vanishing_factor_is_the_mean_of_slope_times_length(study: nr.Study) -> None:
    decay = study.decay
    start = decay[(decay["probe_step"] == 0) & (decay["strategy"] == "baseline") & (decay["seq_len"] == 40)]
    exponent = (start["decay_per_step"] * start["seq_len"] / np.log(10)).groupby(start["cell"]).mean()
    text = nr.conclusions(study)
    for cell in ("rnn_tanh", "rnn_relu", "lstm"):
        assert f"`{cell}` $10^{{{exponent[cell]:.1f}}}$" in text


def test_accuracy_table_shows_plus_minus_only_with_a_finite_sd(study: nr.Study, bare: nr.Study) -> None:
    table = nr.accuracy_table(study)
    assert list(table.columns) == ["task", "T", "cell", "strategy", "mean ± sd", "range", "solved", "diverged"]
    rows = table.set_index(["task", "T", "cell", "strategy"])
    lone = rows.loc[("adding", "40", "`rnn_relu`", "`baseline`")]
    value = study.accuracy.query("task == 'adding' and seq_len == 40 and cell == 'rnn_relu' and strategy == 'baseline'")
    finite = value["value"].dropna()
    assert len(finite) == 1
    assert lone["mean ± sd"] == nr.num(finite.iloc[0]) and lone["range"] == nr.num(finite.iloc[0])
    assert (lone["solved"], lone["diverged"]) == ("0/2", "1/2")
    both = rows.loc[("adding", "40", "`rnn_tanh`", "`baseline`")]
    assert re.fullmatch(r"\S+ ± \S+", both["mean ± sd"]) and "–" in both["range"]
    assert sum("±" in v for v in table["mean ± sd"]) == len(table) - 1
    single = nr.accuracy_table(bare)
    assert list(single.columns) == ["task", "T", "cell", "strategy", "value", "solved", "diverged"]
    assert not single["value"].str.contains("±").any()


def test_gradnorm_table_counts_non_finite_steps(study: nr.Study) -> None:
    table = nr.gradnorm_table(study)
    assert len(table) == 72 and table.columns[-1] == "non-finite"
    row = table[
        (table["task"] == "adding") & (table["T"] == "40") & (table["cell"] == "`rnn_relu`") & (table["seed"] == "1")
    ]
    baseline = row[row["strategy"] == "`baseline`"].iloc[0]
    # Steps 37..60 of the diverged run are non-finite; the clip strategy clips every step of a ReLU run above 1.
    assert baseline["steps"] == "60" and baseline["non-finite"] == str(60 - 37 + 1) and baseline["clipped"] == "0 %"
    assert set(table.loc[table["strategy"] != "`baseline`", "non-finite"]) == {"0"}


def test_reproducibility_facts_and_config_yaml(study: nr.Study) -> None:
    accuracy = pd.DataFrame(
        {"wall_time_s": [3600.0, 90.0], "ms_per_step": [10.0, 20.0], "device": ["cpu", "cpu"], "threads": [1, 1]}
    )
    text = nr.reproducibility_facts(
        accuracy,
        renderer="offline",
        tables=Path("/t"),
        commit="abc",
        dirty=True,
        machine="M",
        versions={"torch": "2.13.0"},
    )
    assert text.splitlines() == [
        "- **Renderer:** offline.",
        "- **Study tables:** `/t`.",
        "- **Git commit:** `abc` (with uncommitted changes).",
        "- **Machine rendering this page:** M.",
        "- **Runs:** device cpu, torch threads 1.",
        "- **Total training compute:** 1 h 1.5 min of wall time over 2 runs (sum of `wall_time_s`; median 15 ms per "
        "step).",
        "- **Packages:** torch 2.13.0.",
    ]
    kwargs = {"renderer": "r", "tables": Path("/t"), "dirty": False, "machine": "M", "versions": {}}
    assert "- **Git commit:** none (not a git checkout)." in nr.reproducibility_facts(accuracy, commit=None, **kwargs)
    assert nr.package_versions(["pandas", "no-such-package-xyz"]) == {
        "pandas": pd.__version__,
        "no-such-package-xyz": "not installed",
    }
    shown = nr.config_yaml(study.config, study.bundles)
    assert shown.startswith("```yaml\n") and shown.endswith("```")
    assert "baseline: {}" in shown and "clip: {clip_norm: 1.0}" in shown and "layer_norm: {norm: layer}" in shown

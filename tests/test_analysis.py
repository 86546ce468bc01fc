"""Decay rates and accuracy summaries, checked against numbers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rnn_gradients.study.analysis import DECAY_COLUMNS, RUN_KEYS, SUMMARY_COLUMNS, decay_rates, summarize_accuracy


def _flow(cell: str, length: int, rate: float, probe_step: int = 0, gamma: float = 0.5, sigma: float = 1.2):
    """Rows of gradient_flow.csv for one probe whose ‖∂L/∂h_t‖ = 2·exp(rate·(L − t)) exactly."""
    t = np.arange(1, length + 1)
    distance = length - t
    return pd.DataFrame(
        {
            "task": "adding",
            "seq_len": length,
            "cell": cell,
            "strategy": "none",
            "seed": 0,
            "probe_step": probe_step,
            "t": t,
            "distance": distance,
            "grad_norm_h": 2.0 * np.exp(rate * distance),
            "loss": 0.2,
            "spectral_radius": 0.9,
            "sigma_max": sigma,
            "gamma_eff": gamma,
        }
    )


def test_decay_of_an_exact_exponential_is_its_rate():
    flow = pd.concat([_flow("rnn_tanh", 30, -0.25, 0), _flow("rnn_tanh", 30, 0.1, 50), _flow("lstm", 12, -0.02)])
    rates = decay_rates(flow)
    assert list(rates.columns) == [*RUN_KEYS, "probe_step", *DECAY_COLUMNS]
    assert len(rates) == 3
    tanh = rates[rates["cell"] == "rnn_tanh"].set_index("probe_step")
    assert tanh.loc[0, "decay_per_step"] == pytest.approx(-0.25, rel=1e-12)
    assert tanh.loc[50, "decay_per_step"] == pytest.approx(0.1, rel=1e-12)
    assert tanh.loc[0, "predicted_decay"] == pytest.approx(math.log(0.5 * 1.2))
    assert tanh.loc[0, "n_points"] == 30
    lstm = rates[rates["cell"] == "lstm"].iloc[0]
    assert lstm["decay_per_step"] == pytest.approx(-0.02, rel=1e-12)
    assert math.isnan(lstm["predicted_decay"])  # Pascanu's bound is for vanilla cells only
    assert (lstm["gamma_eff"], lstm["sigma_max"], lstm["spectral_radius"]) == (0.5, 1.2, 0.9)


def test_underflowed_and_non_finite_norms_are_left_out_of_the_fit():
    flow = _flow("rnn_tanh", 20, -0.5)
    flow.loc[flow["distance"] >= 15, "grad_norm_h"] = 0.0  # underflow far back in time
    flow.loc[flow["distance"] == 3, "grad_norm_h"] = np.nan
    row = decay_rates(flow).iloc[0]
    assert row["n_points"] == 14
    assert row["decay_per_step"] == pytest.approx(-0.5, rel=1e-12)


def test_a_single_usable_point_has_no_slope_and_no_prediction_without_gamma():
    flow = _flow("rnn_relu", 4, -0.3, gamma=np.nan)
    flow.loc[flow["distance"] > 0, "grad_norm_h"] = 0.0
    row = decay_rates(flow).iloc[0]
    assert row["n_points"] == 1
    assert math.isnan(row["decay_per_step"])
    assert math.isnan(row["predicted_decay"])


def test_accuracy_summary_over_seeds():
    values = [0.10, 0.02, 0.06]
    accuracy = pd.DataFrame(
        {
            "task": "adding",
            "seq_len": 20,
            "cell": "lstm",
            "strategy": "none",
            "seed": [0, 1, 2],
            "metric": "mse",
            "value": values,
            "chance": 1 / 6,
            "solved": [False, True, True],
            "diverged": [False, False, False],
        }
    )
    single = accuracy.iloc[[0]].assign(cell="rnn_tanh", diverged=True)
    summary = summarize_accuracy(pd.concat([single, accuracy], ignore_index=True))
    assert list(summary.columns) == ["task", "seq_len", "cell", "strategy", *SUMMARY_COLUMNS]
    assert list(summary["cell"]) == ["lstm", "rnn_tanh"]
    lstm = summary.iloc[0]
    assert lstm["n_seeds"] == 3
    assert lstm["mean"] == pytest.approx(0.06)
    assert lstm["std"] == pytest.approx(0.04)  # sample std: sqrt((0.04² + 0.04² + 0) / 2)
    assert (lstm["min"], lstm["max"]) == (0.02, 0.10)
    assert (lstm["n_solved"], lstm["solved_rate"]) == (2, pytest.approx(2 / 3))
    assert (lstm["n_diverged"], lstm["diverged_rate"]) == (0, 0.0)
    tanh = summary.iloc[1]
    assert tanh["n_seeds"] == 1 and math.isnan(tanh["std"])
    assert (tanh["n_diverged"], tanh["diverged_rate"]) == (1, 1.0)
    assert (tanh["metric"], tanh["chance"]) == ("mse", pytest.approx(1 / 6))

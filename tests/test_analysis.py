"""Decay rates, their two predictions and accuracy summaries: numbers computed by hand, and real networks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from rnn_gradients.engine.datasets import make_dataset
from rnn_gradients.engine.model import SequenceModel
from rnn_gradients.engine.probes import probe
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.study.analysis import (
    DECAY_COLUMNS,
    SUMMARY_COLUMNS,
    bound_holds,
    decay_rates,
    summarize_accuracy,
    train_test_gaps,
)
from rnn_gradients.study.grid import RUN_KEYS
from rnn_gradients.study.verdicts import wilson_interval


def _flow(
    cell: str,
    length: int,
    rate: float,
    probe_step: int = 0,
    *,
    task: str = "adding",
    strategy: str = "none",
    sigma: float = 1.2,
    sigma_rms: float = 0.6,
    rms_dphi: float = 0.5,
):
    """Rows of gradient_flow.csv for one probe whose ‖∂ℓ/∂h_t‖ = 2·exp(rate·(L − t)) exactly."""
    t = np.arange(1, length + 1)
    distance = length - t
    return pd.DataFrame(
        {
            "task": task,
            "seq_len": length,
            "cell": cell,
            "strategy": strategy,
            "seed": 0,
            "probe_step": probe_step,
            "t": t,
            "distance": distance,
            "grad_norm_h": 2.0 * np.exp(rate * distance),
            "loss": 0.2,
            "spectral_radius": 0.9,
            "sigma_max": sigma,
            "sigma_rms": sigma_rms,
            "rms_dphi": rms_dphi,
        }
    )


def test_decay_of_an_exact_exponential_is_its_rate_and_the_predictions_follow_the_formulas():
    flow = pd.concat(
        [
            _flow("rnn_tanh", 30, -0.25, 0),
            _flow("rnn_tanh", 30, 0.1, 50),
            _flow("rnn_sigmoid", 30, -1.9, 0),
            _flow("lstm", 12, -0.02, rms_dphi=np.nan),
        ]
    )
    rates = decay_rates(flow)
    assert list(rates.columns) == [*RUN_KEYS, "probe_step", *DECAY_COLUMNS]
    assert len(rates) == 4
    tanh = rates[rates["cell"] == "rnn_tanh"].set_index("probe_step")
    assert tanh.loc[0, "decay_per_step"] == pytest.approx(-0.25, rel=1e-12)
    assert tanh.loc[50, "decay_per_step"] == pytest.approx(0.1, rel=1e-12)
    assert tanh.loc[0, "bound_decay"] == pytest.approx(math.log(1.0 * 1.2))  # γ = 1 for tanh
    assert tanh.loc[0, "meanfield_decay"] == pytest.approx(math.log(0.6 * 0.5))
    assert tanh.loc[0, "n_points"] == 30
    sigmoid = rates[rates["cell"] == "rnn_sigmoid"].iloc[0]
    assert sigmoid["bound_decay"] == pytest.approx(math.log(0.25 * 1.2))  # γ = 1/4 for the logistic sigmoid
    lstm = rates[rates["cell"] == "lstm"].iloc[0]
    assert lstm["decay_per_step"] == pytest.approx(-0.02, rel=1e-12)
    assert math.isnan(lstm["bound_decay"]) and math.isnan(lstm["meanfield_decay"])  # vanilla cells only
    assert (lstm["sigma_max"], lstm["sigma_rms"], lstm["spectral_radius"]) == (1.2, 0.6, 0.9)


def test_no_prediction_with_normalization_or_for_a_task_read_out_at_every_step():
    flow = pd.concat(
        [
            _flow("rnn_tanh", 10, -0.3, strategy="ln"),
            _flow("rnn_tanh", 10, -0.3, strategy="none"),
            _flow("rnn_tanh", 10, -0.3, task="copy"),
        ]
    )
    rates = decay_rates(flow, normalized_strategies=["ln"]).set_index(["task", "strategy"])
    assert math.isnan(rates.loc[("adding", "ln"), "bound_decay"])
    assert math.isnan(rates.loc[("adding", "ln"), "meanfield_decay"])
    assert math.isnan(rates.loc[("copy", "none"), "bound_decay"])  # copy reads every step
    assert np.isfinite(rates.loc[("adding", "none"), "bound_decay"])


def test_underflowed_and_non_finite_norms_are_left_out_of_the_fit():
    flow = _flow("rnn_tanh", 20, -0.5)
    flow.loc[flow["distance"] >= 15, "grad_norm_h"] = 0.0  # underflow far back in time
    flow.loc[flow["distance"] == 3, "grad_norm_h"] = np.nan
    row = decay_rates(flow).iloc[0]
    assert row["n_points"] == 14
    assert row["decay_per_step"] == pytest.approx(-0.5, rel=1e-12)


def test_a_single_usable_point_has_no_slope():
    flow = _flow("rnn_relu", 4, -0.3, rms_dphi=np.nan)
    flow.loc[flow["distance"] > 0, "grad_norm_h"] = 0.0
    row = decay_rates(flow).iloc[0]
    assert row["n_points"] == 1
    assert math.isnan(row["decay_per_step"])
    assert math.isnan(row["meanfield_decay"])


def _random_network_decay(cell: str, seed: int, *, hidden: int = 64, length: int = 60) -> pd.Series:
    """The decay rates of one probe of a freshly initialized vanilla network on adding sequences, in float64."""
    generator = torch.Generator().manual_seed(seed)
    task = get_task("adding")
    model = SequenceModel(cell, 2, hidden, 1, readout="last", generator=generator).double()
    dataset = make_dataset("adding", length, seed, train_size=1, val_size=1, test_size=128)
    x, y = (tensor.double() for tensor in task.to_tensors(dataset.test))
    result = probe(model, task, x, y, step=0)
    t = np.arange(1, length + 1)
    flow = pd.DataFrame(
        {
            "task": "adding",
            "seq_len": length,
            "cell": cell,
            "strategy": "none",
            "seed": seed,
            "probe_step": 0,
            "t": t,
            "distance": length - t,
            "grad_norm_h": result.grad_norm_h,
            "loss": result.loss,
            "spectral_radius": result.spectral_radius,
            "sigma_max": result.sigma_max,
            "sigma_rms": result.sigma_rms,
            "rms_dphi": result.rms_dphi,
        }
    )
    return decay_rates(flow).iloc[0]


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_sigmoid", "rnn_relu"])
def test_on_random_vanilla_networks_the_decay_never_exceeds_the_bound(cell):
    rows = pd.DataFrame([_random_network_decay(cell, seed, hidden=16, length=30) for seed in range(5)])
    assert bound_holds(rows).all()
    assert len(bound_holds(rows)) == 5


@pytest.mark.parametrize(("cell", "tolerance"), [("rnn_tanh", 0.1), ("rnn_sigmoid", 0.1), ("rnn_relu", 0.15)])
def test_at_initialization_the_mean_field_estimate_predicts_the_decay(cell, tolerance):
    for seed in range(3):
        row = _random_network_decay(cell, seed)
        assert abs(row["decay_per_step"] - row["meanfield_decay"]) <= tolerance, (seed, row.to_dict())
        # and the bound is far from it: it speaks of the worst direction, not of a typical gradient
        assert row["bound_decay"] - row["decay_per_step"] > 2 * tolerance


def test_accuracy_summary_over_seeds_leaves_diverged_runs_out_of_the_metric():
    values = [0.10, 0.02, 0.06, 1e24]
    accuracy = pd.DataFrame(
        {
            "task": "adding",
            "seq_len": 20,
            "cell": "lstm",
            "strategy": "none",
            "seed": [0, 1, 2, 3],
            "metric": "mse",
            "value": values,
            "chance": 1 / 6,
            "solved": [False, True, True, False],
            "diverged": [False, False, False, True],
        }
    )
    single = accuracy.iloc[[0]].assign(cell="rnn_tanh", diverged=True)
    summary = summarize_accuracy(pd.concat([single, accuracy], ignore_index=True), confidence=0.9)
    assert list(summary.columns) == ["task", "seq_len", "cell", "strategy", *SUMMARY_COLUMNS]
    assert list(summary["cell"]) == ["lstm", "rnn_tanh"]
    lstm = summary.iloc[0]
    assert (lstm["n_seeds"], lstm["n_valued"]) == (4, 3)
    assert lstm["mean"] == pytest.approx(0.06)
    assert lstm["std"] == pytest.approx(0.04)  # sample std: sqrt((0.04² + 0.04² + 0) / 2)
    assert (lstm["min"], lstm["max"]) == (0.02, 0.10)  # the diverged seed's 1e24 is not a metric value
    assert (lstm["n_solved"], lstm["solved_rate"]) == (2, pytest.approx(2 / 4))
    assert (lstm["n_diverged"], lstm["diverged_rate"]) == (1, pytest.approx(1 / 4))
    # 2 of 4: the 90 % Wilson interval straddles one half
    assert (lstm["solved_low"], lstm["solved_high"]) == pytest.approx(wilson_interval(2, 4, 0.9))
    assert lstm["verdict"] == "uncertain"
    tanh = summary.iloc[1]
    assert (tanh["n_seeds"], tanh["n_valued"]) == (1, 0)
    assert math.isnan(tanh["mean"]) and math.isnan(tanh["std"])
    assert (tanh["n_diverged"], tanh["diverged_rate"]) == (1, 1.0)
    assert (tanh["metric"], tanh["chance"]) == ("mse", pytest.approx(1 / 6))
    assert tanh["verdict"] == "uncertain"  # one seed settles nothing at 90 %


def test_train_test_gaps_flag_only_differences_beyond_sampling_noise():
    accuracy = pd.DataFrame(
        {
            "task": "adding",
            "seq_len": 20,
            "cell": ["lstm", "gru"],
            "strategy": "none",
            "seed": 0,
            "error": [0.90, 0.052],
            "error_se": [0.01, 0.01],
            "train_error": [0.02, 0.050],
            "train_error_se": [0.01, 0.01],
        }
    )
    gaps = train_test_gaps(accuracy)
    assert list(gaps["cell"]) == ["lstm"]
    assert gaps["gap_z"].iloc[0] == pytest.approx(0.88 / math.sqrt(2 * 0.01**2))

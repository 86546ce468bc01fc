"""Derived quantities shared by the study tables and the report: gradient decay rates and accuracy summaries.

This module is the single place where they are computed; :mod:`rnn_gradients.study.tables` writes them and the report
imports the same functions, so a table and a figure can never disagree.

Decay rate. For a vanilla RNN h_t = φ(W_hh h_{t−1} + W_xh x_t + b), back-propagation through time gives
∂L/∂h_k = ∂L/∂h_t · Π_{i=k+1..t} diag(φ'(a_i)) W_hh, hence, with |φ'| ≤ γ and σ_max = ‖W_hh‖₂,

    ‖∂L/∂h_k‖ ≤ (γ σ_max)^{t−k} ‖∂L/∂h_t‖

(Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks", ICML), so
ln‖∂L/∂h_t‖ stays below a line of slope ln(γ σ_max) in the distance d = L − t from the last input: the
gradient vanishes exponentially when γ σ_max < 1.
The measured ``decay_per_step`` is the least-squares slope of ln‖∂L/∂h_t‖ against d (negative: vanishing,
positive: exploding); ``predicted_decay`` = ln(γ_eff σ_max) uses γ_eff, the mean |φ'| observed in the probe.
The bound holds for vanilla cells only; gated cells (LSTM, GRU) have no such prediction and get an empty value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnn_gradients.engine.cells import GATED_CELLS
from rnn_gradients.study.grid import GRID_KEYS, RUN_KEYS

PROBE_SCALARS: tuple[str, ...] = ("gamma_eff", "sigma_max", "spectral_radius")
DECAY_COLUMNS: tuple[str, ...] = ("decay_per_step", "predicted_decay", *PROBE_SCALARS, "n_points")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "metric",
    "chance",
    "n_seeds",
    "mean",
    "std",
    "min",
    "max",
    "n_solved",
    "solved_rate",
    "n_diverged",
    "diverged_rate",
)


def decay_rates(flow: pd.DataFrame) -> pd.DataFrame:
    """One row per run × probe step: the measured and the predicted decay of ‖∂L/∂h_t‖ per time step.

    ``flow`` holds ``probe_step, distance, grad_norm_h, gamma_eff, sigma_max, spectral_radius`` and any of the run
    keys (rows of ``gradient_flow.csv``). The fit uses the points with a finite, positive ‖∂L/∂h_t‖ (a gradient
    that underflowed to 0 has no logarithm); ``n_points`` says how many, and the slope is empty below two
    distinct distances. Returns the keys, then ``decay_per_step, predicted_decay, gamma_eff, sigma_max,
    spectral_radius, n_points``, sorted by the keys.
    """
    keys = [*(key for key in RUN_KEYS if key in flow.columns), "probe_step"]
    norm = flow["grad_norm_h"].to_numpy(dtype=float)
    usable = np.isfinite(norm) & (norm > 0)
    points = flow.loc[usable, keys].copy()
    points["x"] = flow.loc[usable, "distance"].to_numpy(dtype=float)
    points["y"] = np.log(norm[usable])
    by_probe = points.groupby(keys, sort=True)
    # centered sums: the slope Σ(x − x̄)(y − ȳ) / Σ(x − x̄)² without the cancellation of the raw-moment formula
    dx = points["x"] - by_probe["x"].transform("mean")
    dy = points["y"] - by_probe["y"].transform("mean")
    points["sxy"], points["sxx"] = dx * dy, dx * dx
    fit = points.groupby(keys, sort=True).agg(sxy=("sxy", "sum"), sxx=("sxx", "sum"), n_points=("y", "size"))

    result = flow.groupby(keys, sort=True)[list(PROBE_SCALARS)].first().join(fit, how="left")
    result["n_points"] = result["n_points"].fillna(0).astype(int)
    sxx = result["sxx"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        result["decay_per_step"] = np.where(sxx > 0, result["sxy"].to_numpy(dtype=float) / sxx, np.nan)
        product = (result["gamma_eff"] * result["sigma_max"]).to_numpy(dtype=float)
        predicted = np.where(product > 0, np.log(product), np.nan)
    result = result.reset_index()
    if "cell" in result.columns:
        predicted = np.where(result["cell"].isin(GATED_CELLS), np.nan, predicted)
    result["predicted_decay"] = predicted
    return result[[*keys, *DECAY_COLUMNS]]


def summarize_accuracy(accuracy: pd.DataFrame) -> pd.DataFrame:
    """One row per task × T × cell × strategy, aggregated over seeds (rows of ``accuracy.csv``).

    ``mean, std, min, max`` describe the runs' final ``value`` (the task's metric: test MSE, or accuracy);
    ``std`` is the sample standard deviation (ddof = 1), empty for a single seed; NaN values are skipped.
    ``solved_rate`` = n_solved / n_seeds and ``diverged_rate`` = n_diverged / n_seeds.
    """
    grouped = accuracy.groupby(list(GRID_KEYS), sort=True)
    result = grouped.agg(
        metric=("metric", "first"),
        chance=("chance", "first"),
        n_seeds=("seed", "size"),
        mean=("value", "mean"),
        std=("value", "std"),
        min=("value", "min"),
        max=("value", "max"),
        n_solved=("solved", "sum"),
        n_diverged=("diverged", "sum"),
    )
    result["n_solved"] = result["n_solved"].astype(int)
    result["n_diverged"] = result["n_diverged"].astype(int)
    result["solved_rate"] = result["n_solved"] / result["n_seeds"]
    result["diverged_rate"] = result["n_diverged"] / result["n_seeds"]
    return result.reset_index()[[*GRID_KEYS, *SUMMARY_COLUMNS]]

"""Derived quantities shared by the study tables and the report: gradient decay rates and accuracy summaries.

This module is the single place where they are computed; :mod:`rnn_gradients.study.tables` writes them and the
report reads the tables, so a table and a figure can never disagree.

Decay rate. ``decay_per_step`` is the least-squares slope of ln‖∂ℓ/∂h_t‖ against the distance d = L − t from the
last input (negative: vanishing, positive: exploding), one per probe. For a vanilla RNN
h_t = φ(W_hh h_{t−1} + W_xh x_t + b) read out at the last step, back-propagation through time gives
∂ℓ/∂h_k = ∂ℓ/∂h_t · Π_{i=k+1..t} diag(φ'(a_i)) W_hh, and two predictions of that slope follow:

- ``bound_decay`` = ln(γ σ_max(W_hh)), γ = sup|φ'| (1 for tanh and ReLU, 1/4 for the sigmoid): Pascanu, Mikolov &
  Bengio's (2013) bound ‖∂ℓ/∂h_k‖ ≤ (γ σ_max)^{t−k} ‖∂ℓ/∂h_t‖. It holds for every sequence and step, so
  ln‖∂ℓ/∂h_t‖ − d·ln(γ σ_max) never increases with d, and the fitted slope can never exceed ln(γ σ_max).
- ``meanfield_decay`` = ln(σ_rms(W_hh) · rms φ'), σ_rms = ‖W_hh‖_F/√H and rms φ' = √mean φ'(a)²: the per-step
  factor of a *typical* gradient in signal-propagation (mean-field) theory (Pennington, Schoenholz & Ganguli
  2017; Chen, Pennington & Schoenholz 2018), exact in expectation for random W_hh independent of the gradient.

Both are given only where their derivation holds: vanilla cells without normalization (a norm layer changes the
Jacobian) on tasks read out at the last step (a task that reads every step adds a gradient at every step).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from rnn_gradients.engine.cells import DERIVATIVE_BOUND
from rnn_gradients.engine.tasks import TASKS, get_task
from rnn_gradients.study.grid import GRID_KEYS, RUN_KEYS
from rnn_gradients.study.verdicts import verdict, wilson_interval

PROBE_SCALARS: tuple[str, ...] = ("sigma_max", "sigma_rms", "spectral_radius", "rms_dphi")
DECAY_COLUMNS: tuple[str, ...] = ("decay_per_step", "bound_decay", "meanfield_decay", *PROBE_SCALARS, "n_points")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "metric",
    "chance",
    "n_seeds",
    "n_valued",
    "mean",
    "std",
    "min",
    "max",
    "n_solved",
    "solved_rate",
    "solved_low",
    "solved_high",
    "verdict",
    "n_diverged",
    "diverged_rate",
)


def theory_applies(cell: str, task: str, normalized: bool) -> bool:
    """Whether Pascanu's bound and the mean-field estimate describe this run's gradient (module docstring)."""
    return cell in DERIVATIVE_BOUND and not normalized and task in TASKS and get_task(task).readout == "last"


def decay_rates(flow: pd.DataFrame, normalized_strategies: Collection[str] = ()) -> pd.DataFrame:
    """One row per run × probe step: the measured decay of ‖∂ℓ/∂h_t‖ per time step and its two predictions.

    ``flow`` holds the run keys, ``probe_step, distance, grad_norm_h`` and the probe scalars (rows of
    ``gradient_flow.csv``); ``normalized_strategies`` names the strategies with layer or batch normalization.
    The fit uses the points with a finite, positive ‖∂ℓ/∂h_t‖ (a gradient that underflowed to 0 has no
    logarithm); ``n_points`` says how many, and the slope is empty below two distinct distances. Returns the
    keys, then :data:`DECAY_COLUMNS`, sorted by the keys.
    """
    keys = [*RUN_KEYS, "probe_step"]
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

    result = flow.groupby(keys, sort=True)[list(PROBE_SCALARS)].first().join(fit, how="left").reset_index()
    result["n_points"] = result["n_points"].fillna(0).astype(int)
    sxx = result["sxx"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        result["decay_per_step"] = np.where(sxx > 0, result["sxy"].to_numpy(dtype=float) / sxx, np.nan)
    applies = [
        theory_applies(cell, task, strategy in normalized_strategies)
        for cell, task, strategy in zip(result["cell"], result["task"], result["strategy"], strict=True)
    ]
    gamma = result["cell"].map(DERIVATIVE_BOUND).to_numpy(dtype=float)
    result["bound_decay"] = np.where(applies, _log(gamma * result["sigma_max"].to_numpy(dtype=float)), np.nan)
    meanfield = result["sigma_rms"].to_numpy(dtype=float) * result["rms_dphi"].to_numpy(dtype=float)
    result["meanfield_decay"] = np.where(applies, _log(meanfield), np.nan)
    return result[[*keys, *DECAY_COLUMNS]]


def _log(values: np.ndarray) -> np.ndarray:
    """ln of the positive entries, NaN elsewhere (a zero factor has no finite logarithm)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)


def summarize_accuracy(accuracy: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """One row per task × T × cell × strategy, aggregated over seeds (rows of ``accuracy.csv``).

    ``mean, std, min, max`` describe the final ``value`` (the task's metric: test MSE, or accuracy) of the runs
    that did not diverge (``n_valued`` of the ``n_seeds``): a diverged run's metric says nothing about what the
    strategy learns, and it is counted in ``n_diverged`` instead. ``std`` is the sample standard deviation
    (ddof = 1), empty below two values. ``solved_rate`` = n_solved / n_seeds, ``diverged_rate`` likewise;
    ``solved_low``/``solved_high`` bound the solve rate by the Wilson interval at ``confidence`` and ``verdict`` is
    drawn from it (:func:`rnn_gradients.study.verdicts.verdict`: solved, failed or uncertain).
    """
    valued = accuracy["value"].where(~accuracy["diverged"].astype(bool) & np.isfinite(accuracy["value"]))
    grouped = accuracy.assign(valued=valued).groupby(list(GRID_KEYS), sort=True)
    result = grouped.agg(
        metric=("metric", "first"),
        chance=("chance", "first"),
        n_seeds=("seed", "size"),
        n_valued=("valued", "count"),
        mean=("valued", "mean"),
        std=("valued", "std"),
        min=("valued", "min"),
        max=("valued", "max"),
        n_solved=("solved", "sum"),
        n_diverged=("diverged", "sum"),
    )
    result["n_solved"] = result["n_solved"].astype(int)
    result["n_diverged"] = result["n_diverged"].astype(int)
    result["solved_rate"] = result["n_solved"] / result["n_seeds"]
    counts = list(zip(result["n_solved"], result["n_seeds"], strict=True))
    bounds = [wilson_interval(k, n, confidence) for k, n in counts]
    result["solved_low"] = [low for low, _ in bounds]
    result["solved_high"] = [high for _, high in bounds]
    result["verdict"] = [verdict(k, n, confidence) for k, n in counts]
    result["diverged_rate"] = result["n_diverged"] / result["n_seeds"]
    return result.reset_index()[[*GRID_KEYS, *SUMMARY_COLUMNS]]


def train_test_gaps(accuracy: pd.DataFrame, z: float = 3.0) -> pd.DataFrame:
    """The runs whose final training and test errors differ by more than sampling noise explains.

    Both errors are means over as many sequences; their difference is flagged when it exceeds ``z`` standard
    errors of the difference, √(se_train² + se_test²). Returns those rows of ``accuracy`` with a column ``gap_z``
    (the difference in standard errors), sorted by the run keys.
    """
    se = np.sqrt(accuracy["train_error_se"] ** 2 + accuracy["error_se"] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = (accuracy["error"] - accuracy["train_error"]) / se
    flagged = accuracy.assign(gap_z=gap)[np.isfinite(gap) & (gap.abs() > z)]
    return flagged.sort_values(list(RUN_KEYS)).reset_index(drop=True)


def bound_holds(decay: pd.DataFrame, tolerance: float = 1e-9) -> pd.Series:
    """Per probe where the bound applies: whether the measured decay is at most ``bound_decay`` (+ tolerance
    for float rounding)."""
    rows = decay[np.isfinite(decay["bound_decay"]) & np.isfinite(decay["decay_per_step"])]
    return rows["decay_per_step"] <= rows["bound_decay"] + tolerance

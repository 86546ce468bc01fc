"""The theory check: the measured decay of ‖∂ℓ/∂h_t‖ per step against its two predictions, and train against test.

``decay_rates.csv`` gives, for every probe of a vanilla cell without normalization on a task read out at the last
step (:func:`~rnn_gradients.study.analysis.theory_applies`), the measured slope and

- ``bound_decay`` = ln(γ σ_max(W_hh)): Pascanu's bound, which the measured slope can never exceed; how far below it
  the slope lies (its *slack*) says how loose the worst-case direction is for a typical gradient;
- ``meanfield_decay`` = ln(σ_rms(W_hh) · rms φ'): the mean-field estimate of a typical gradient's decay, exact in
  expectation for random weights independent of the gradient, i.e. at initialization; training correlates W_hh
  with the gradients, and the estimate's error then says how far a trained network has left that regime.

The generalization check: the final model's error on as many training sequences as the test set has, beside its
test error, for the runs where they differ by more than sampling noise explains
(:func:`~rnn_gradients.study.analysis.train_test_gaps`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnn_gradients.engine.cells import VANILLA_CELLS
from rnn_gradients.report.format import MISSING, code, escape, fraction, num, signed, spread
from rnn_gradients.report.results import Results
from rnn_gradients.study.analysis import bound_holds, train_test_gaps

PREDICTIONS = ("bound_decay", "meanfield_decay")
TOLERANCE = 1e-9
"""A probe holds the bound when its measured slope is at most ``bound_decay`` + this (float rounding)."""
PHASE_WORDS = {"init": "at initialization", "during": "during training", "trained": "after training"}


def theory_points(results: Results) -> pd.DataFrame:
    """The probes with a finite measured decay and both predictions (vanilla cells without normalization on tasks
    read out at the last step), with ``slack`` = bound − measured and ``meanfield_error`` = measured − mean-field."""
    decay = results.decay_rates
    if not set(PREDICTIONS) <= set(decay.columns):
        return decay.iloc[0:0].assign(slack=[], meanfield_error=[])
    finite = np.isfinite(decay["decay_per_step"]) & np.isfinite(decay["bound_decay"])
    finite &= np.isfinite(decay["meanfield_decay"])
    points = decay[finite]
    return points.assign(
        slack=points["bound_decay"] - points["decay_per_step"],
        meanfield_error=points["decay_per_step"] - points["meanfield_decay"],
    )


def theory_table(results: Results) -> pd.DataFrame | None:
    """Per vanilla cell and phase (initialization, after training): probes, the bound holding (k/n), the measured
    slope, the two predictions and the mean-field estimate's error, as mean [min, max] over the probes."""
    points = theory_points(results)
    if points.empty:
        return None
    rows = []
    for cell in [c for c in VANILLA_CELLS if c in set(points["cell"])]:
        for phase in ("init", "trained"):
            part = points[(points["cell"] == cell) & (points["phase"] == phase)]
            if part.empty:
                continue
            holds = bound_holds(part, TOLERANCE)
            rows.append(
                {
                    "cell": code(cell),
                    "probes": PHASE_WORDS[phase],
                    "n": str(len(part)),
                    "bound holds": fraction(holds.sum(), len(holds)),
                    "measured": spread(part["decay_per_step"], signed),
                    "bound ln(γσ_max)": spread(part["bound_decay"], signed),
                    "mean field ln(σ_rms·rms φ′)": spread(part["meanfield_decay"], signed),
                    "measured − mean field": spread(part["meanfield_error"], signed),
                }
            )
    return pd.DataFrame(rows)


def _phase_error(points: pd.DataFrame, phase: str) -> str:
    part = points[points["phase"] == phase]["meanfield_error"].abs()
    return f"{num(part.median(), 2)} (largest {num(part.max(), 2)})" if len(part) else MISSING


def theory_sentence(results: Results) -> str:
    """What the theory check found, from the numbers; or why there is nothing to check."""
    points = theory_points(results)
    if points.empty:
        if not results.vanilla_cells:
            return (
                "The study has no vanilla cell, and both predictions are stated for vanilla cells only (a gated "
                "cell's Jacobian is not $\\operatorname{diag}(\\phi')\\,W_{hh}$), so there is nothing to check here."
            )
        return (
            "No probe qualifies: the predictions need a vanilla cell without normalization on a task read out at "
            "the last step, with a finite measured decay (a run that diverged before its probe, or whose gradient "
            "underflowed everywhere, has none), so there is nothing to check."
        )
    holds = bound_holds(points, TOLERANCE)
    n_runs = len(points.drop_duplicates(["task", "seq_len", "cell", "strategy", "seed"]))
    bound = (
        f"{fraction(holds.sum(), len(holds))} probes of {n_runs} vanilla runs hold Pascanu's bound"
        + (" — as they must" if holds.all() else f" ({len(holds) - holds.sum()} do not: a bug, see @tbl-theory)")
        + f"; the bound is loose by {num(points['slack'].median(), 2)} per step at the median (from "
        f"{num(points['slack'].min(), 2)} to {num(points['slack'].max(), 2)}): over a distance of 20 steps the "
        f"typical gradient keeps a factor $e^{{{num(-20 * points['slack'].median(), 2)}}}$ of what the bound allows."
    )
    init, trained = points[points["phase"] == "init"], points[points["phase"] == "trained"]
    meanfield = (
        f"The mean-field estimate misses the measured slope by a median of {_phase_error(points, 'init')} per step "
        "at initialization"
        + (f" and by {_phase_error(points, 'trained')} after training" if len(trained) else "")
        + "."
    )
    if len(trained) and len(init):
        worst = trained.assign(error=trained["meanfield_error"].abs()).sort_values("error").iloc[-1]
        meanfield += (
            f" Training moves W_hh away from the random matrices the estimate assumes: its largest error is "
            f"{signed(worst['meanfield_error'], 2)} per step ({code(worst['cell'])} under {code(worst['strategy'])} "
            f"on {escape(worst['task'])}, T = {int(worst['seq_len'])}, seed {int(worst['seed'])}), where the measured "
            f"slope is {signed(worst['decay_per_step'], 2)} and the estimate {signed(worst['meanfield_decay'], 2)}."
        )
    return (
        "@fig-theory sets the measured slope against both predictions, and @tbl-theory summarizes them per cell. "
        + bound
        + " "
        + meanfield
    )


def theory_line(results: Results) -> str | None:
    """The conclusions' line on the theory check."""
    points = theory_points(results)
    if points.empty:
        return None
    holds = bound_holds(points, TOLERANCE)
    trained = points[points["phase"] == "trained"]
    return (
        f"- **Theory.** Pascanu's bound held in {fraction(holds.sum(), len(holds))} vanilla-cell probes, loose by a "
        f"median of {num(points['slack'].median(), 2)} per step; the mean-field estimate "
        "$\\ln(\\sigma_{\\text{rms}}\\,\\operatorname{rms}\\phi')$ came within a median of "
        f"{_phase_error(points, 'init')} per step of the measured decay at initialization"
        + (f" and {_phase_error(points, 'trained')} after training" if len(trained) else "")
        + "."
    )


# ---- train against test -------------------------------------------------------------------------------------


def gap_rows(results: Results) -> pd.DataFrame:
    """The runs whose final training and test errors differ beyond sampling noise (|z| > 3), in report order."""
    columns = {"train_error", "train_error_se", "error_se"}
    if not columns <= set(results.accuracy.columns):
        return results.accuracy.iloc[0:0]
    runs = results.accuracy[~results.accuracy["diverged"]]
    return results.in_order(train_test_gaps(runs))


def gaps_sentence(results: Results) -> str:
    """Whether the final training and test errors agree within sampling noise, run by run."""
    gaps = gap_rows(results)
    n = int((~results.accuracy["diverged"]).sum())
    if gaps.empty:
        return (
            f"In all {n} runs that did not diverge, the final model's errors on the test set and on as many "
            "training sequences agree within three standard errors of their difference: the test metric reports "
            "what the network learned, not an artifact of evaluation."
        )
    return (
        f"In {fraction(len(gaps), n)} runs that did not diverge, the final model's errors on the training "
        "sequences and on the test set differ by more than three standard errors of their difference; "
        "@tbl-gaps lists them side by side (error: MSE, or 1 − accuracy)."
    )


def gaps_table(results: Results) -> pd.DataFrame | None:
    """The runs of :func:`gap_rows`, training and test error side by side with their difference in standard errors."""
    gaps = gap_rows(results)
    if gaps.empty:
        return None
    return pd.DataFrame(
        {
            "task": gaps["task"].map(escape),
            "T": gaps["seq_len"].astype(str),
            "cell": gaps["cell"].map(code),
            "strategy": gaps["strategy"].map(code),
            "seed": gaps["seed"].astype(str),
            "training error": [
                f"{num(e)} ± {num(s, 2)}" for e, s in zip(gaps["train_error"], gaps["train_error_se"], strict=True)
            ],
            "test error": [f"{num(e)} ± {num(s, 2)}" for e, s in zip(gaps["error"], gaps["error_se"], strict=True)],
            "difference (z)": gaps["gap_z"].map(lambda z: signed(z, 1)),
        }
    )


def _with_se(values: pd.Series, errors: pd.Series) -> list[str]:
    """ "0.0512 ± 0.0031": each value with its standard error."""
    return [f"{num(v)} ± {num(e, 2)}" for v, e in zip(values, errors, strict=True)]

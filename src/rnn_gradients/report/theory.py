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
from rnn_gradients.report.i18n import msg
from rnn_gradients.report.results import Results
from rnn_gradients.study.analysis import bound_holds, train_test_gaps

PREDICTIONS = ("bound_decay", "meanfield_decay")
TOLERANCE = 1e-9
"""A probe holds the bound when its measured slope is at most ``bound_decay`` + this (float rounding)."""
BOUND = "ln(γσ_max)"
MEANFIELD = "ln(σ_rms·rms φ′)"
"""The two predictions in a table header (plain text: a header holds no math)."""
MEANFIELD_MATH = "$\\ln(\\sigma_{\\text{rms}}\\,\\operatorname{rms}\\phi')$"
JACOBIAN = "$\\operatorname{diag}(\\phi')\\,W_{hh}$"


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
                    msg("table.cell"): code(cell),
                    msg("table.probes"): msg(f"phase.{phase}"),
                    "n": str(len(part)),
                    msg("table.bound_holds"): fraction(holds.sum(), len(holds)),
                    msg("table.measured"): spread(part["decay_per_step"], signed),
                    msg("table.bound", formula=BOUND): spread(part["bound_decay"], signed),
                    msg("table.meanfield", formula=MEANFIELD): spread(part["meanfield_decay"], signed),
                    msg("table.meanfield_error"): spread(part["meanfield_error"], signed),
                }
            )
    return pd.DataFrame(rows)


def _phase_error(points: pd.DataFrame, phase: str) -> str:
    part = points[points["phase"] == phase]["meanfield_error"].abs()
    return msg("theory.error", median=num(part.median(), 2), largest=num(part.max(), 2)) if len(part) else MISSING


def theory_sentence(results: Results) -> str:
    """What the theory check found, from the numbers; or why there is nothing to check."""
    points = theory_points(results)
    if points.empty:
        if not results.vanilla_cells:
            return msg("theory.no_vanilla", jacobian=JACOBIAN)
        return msg("theory.no_probe")
    holds = bound_holds(points, TOLERANCE)
    n_runs = len(points.drop_duplicates(["task", "seq_len", "cell", "strategy", "seed"]))
    held = fraction(holds.sum(), len(holds))
    bound = (
        msg("theory.bound_holds", probes=held, runs=n_runs)
        if holds.all()
        else msg("theory.bound_fails", probes=held, runs=n_runs, failed=len(holds) - holds.sum())
    )
    bound += msg(
        "theory.slack",
        median=num(points["slack"].median(), 2),
        low=num(points["slack"].min(), 2),
        high=num(points["slack"].max(), 2),
        factor=f"e^{num(-20 * points['slack'].median(), 2)}^",
    )
    init, trained = points[points["phase"] == "init"], points[points["phase"] == "trained"]
    meanfield = (
        msg("theory.meanfield_both", init=_phase_error(points, "init"), trained=_phase_error(points, "trained"))
        if len(trained)
        else msg("theory.meanfield_init", init=_phase_error(points, "init"))
    )
    if len(trained) and len(init):
        worst = trained.assign(error=trained["meanfield_error"].abs()).sort_values("error").iloc[-1]
        meanfield += " " + msg(
            "theory.worst",
            error=signed(worst["meanfield_error"], 2),
            cell=code(worst["cell"]),
            strategy=code(worst["strategy"]),
            task=escape(worst["task"]),
            seq_len=int(worst["seq_len"]),
            seed=int(worst["seed"]),
            measured=signed(worst["decay_per_step"], 2),
            estimate=signed(worst["meanfield_decay"], 2),
        )
    return msg("theory.intro") + " " + bound + " " + meanfield


def theory_line(results: Results) -> str | None:
    """The conclusions' line on the theory check."""
    points = theory_points(results)
    if points.empty:
        return None
    holds = bound_holds(points, TOLERANCE)
    trained = points[points["phase"] == "trained"]
    values = {
        "probes": fraction(holds.sum(), len(holds)),
        "slack": num(points["slack"].median(), 2),
        "estimate": MEANFIELD_MATH,
        "init": _phase_error(points, "init"),
    }
    if len(trained):
        return msg("conclusions.theory_both", trained=_phase_error(points, "trained"), **values)
    return msg("conclusions.theory_init", **values)


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
        return msg("gaps.none", n=n)
    return msg("gaps.some", k=len(gaps), n=n)


def gaps_table(results: Results) -> pd.DataFrame | None:
    """The runs of :func:`gap_rows`, training and test error side by side with their difference in standard errors."""
    gaps = gap_rows(results)
    if gaps.empty:
        return None
    return pd.DataFrame(
        {
            msg("table.task"): gaps["task"].map(escape),
            "T": gaps["seq_len"].astype(str),
            msg("table.cell"): gaps["cell"].map(code),
            msg("table.strategy"): gaps["strategy"].map(code),
            msg("table.seed"): gaps["seed"].astype(str),
            msg("table.training_error"): _with_se(gaps["train_error"], gaps["train_error_se"]),
            msg("table.test_error"): _with_se(gaps["error"], gaps["error_se"]),
            msg("table.difference_z"): gaps["gap_z"].map(lambda z: signed(z, 1)),
        }
    )


def _with_se(values: pd.Series, errors: pd.Series) -> list[str]:
    """ "0.0512 ± 0.0031": each value with its standard error."""
    return [f"{num(v)} ± {num(e, 2)}" for v, e in zip(values, errors, strict=True)]

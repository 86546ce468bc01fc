"""The report's tables: DataFrames of display strings (names escaped, numbers formatted), one per table of the report.

:func:`~rnn_gradients.report.format.markdown_table` writes them; a function returns None when its table would be
empty, and the report then shows no table. Statistics over seeds follow :meth:`Results.combinations`: values are
over the seeds that did not diverge, and solved and diverged seeds are given as k/n.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnn_gradients.engine.strategies import STRATEGY_KEYS
from rnn_gradients.report.format import MISSING, code, escape, fraction, num, signed, spread
from rnn_gradients.report.results import Results
from rnn_gradients.study.config import SCOPE_KEY
from rnn_gradients.study.grid import GRID_KEYS, RUN_KEYS

TASK_DESCRIPTIONS = {
    "adding": "Two channels: values from U[0, 1] and a marker channel with two 1s; output the sum of the "
    "two marked values at the last step (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).",
    "copy": "Ten symbols from an alphabet of 8, then blanks and a delimiter; reproduce the ten symbols at "
    "the end (Arjovsky et al. 2016).",
    "temporal_order": "Two relevant symbols (A or B) hidden among distractors; classify the order AA, AB, "
    "BA or BB at the last step (Hochreiter & Schmidhuber 1997, exp. 6a).",
    "first_symbol": "Recall the first symbol (0 or 1) after T distractor steps.",
}


def _keys(rows: pd.DataFrame, keys: tuple[str, ...] = GRID_KEYS) -> dict[str, list[str]]:
    """The key columns of a display table: task and T as text, cell and strategy as code, seed as a number."""
    shown = {"task": escape, "seq_len": str, "cell": code, "strategy": code, "seed": str}
    names = {"seq_len": "T"}
    return {names.get(k, k): [shown[k](v) for v in rows[k]] for k in keys}


def tasks_table(results: Results) -> pd.DataFrame:
    """One row per task: what must be remembered, its lengths T, metric, chance level(s) and solve threshold(s)."""
    rows = []
    for task in results.tasks:
        runs = results.accuracy[results.accuracy["task"] == task]
        rows.append(
            {
                "task": code(task),
                "what must be remembered": TASK_DESCRIPTIONS.get(task, MISSING),
                "T": ", ".join(str(t) for t in sorted(runs["seq_len"].unique())),
                "metric": escape(runs["metric"].iloc[0]),
                "chance": ", ".join(sorted({num(c) for c in runs["chance"]})),
                "solved if error ≤": ", ".join(num(t) for t in sorted(runs["solve_threshold"].dropna().unique()))
                or MISSING,
            }
        )
    return pd.DataFrame(rows)


def strategies_table(results: Results) -> pd.DataFrame:
    """One row per strategy with the settings that differ from the control's (blank where a setting is default),
    and the cells it trains where it is restricted to some (a partial grid)."""
    scopes = {name: results.config["strategies"][name].get(SCOPE_KEY) for name in results.strategies}
    rows = pd.DataFrame(
        [
            {
                "strategy": code(name),
                **{k: escape(v) for k, v in strategy.params().items()},
                **({SCOPE_KEY: ", ".join(map(code, scopes[name]))} if scopes[name] else {}),
            }
            for name, strategy in results.strategies.items()
        ]
    )
    columns = ["strategy", *[k for k in (*STRATEGY_KEYS, SCOPE_KEY) if k in rows]]
    return rows.reindex(columns=columns).fillna("")


def decay_table(results: Results) -> pd.DataFrame | None:
    """One row per combination: the decay per step at initialization and after training, the seeds' mean and range
    (:func:`~rnn_gradients.report.format.spread`); None without probes."""
    decay = results.decay_rates[results.decay_rates["phase"].isin(["init", "trained"])]
    if decay.empty:
        return None
    slopes = decay.groupby([*GRID_KEYS, "phase"])["decay_per_step"].agg(lambda v: spread(v, signed)).unstack("phase")
    rows = results.in_order(slopes.reindex(columns=["init", "trained"]).fillna(MISSING).reset_index())
    return pd.DataFrame({**_keys(rows), "at initialization": rows["init"], "after training": rows["trained"]})


def accuracy_table(results: Results) -> pd.DataFrame:
    """Test metric per combination over the seeds that did not diverge: mean ± sd (± only with a finite sd) or the
    single value, the range when there are several seeds, then seeds solved and seeds diverged as k/n."""
    rows = results.combinations()
    several = rows["n_seeds"].max() > 1
    values = [
        MISSING if n == 0 else f"{num(m)} ± {num(s, 2)}" if pd.notna(s) else num(m)
        for m, s, n in zip(rows["mean"], rows["std"], rows["n_valued"], strict=True)
    ]
    columns: dict[str, list[str]] = {**_keys(rows), "mean ± sd" if several else "value": values}
    if several:
        columns["range"] = [
            num(a) if num(a) == num(b) else f"{num(a)}–{num(b)}" for a, b in zip(rows["min"], rows["max"], strict=True)
        ]
    columns["solved"] = [fraction(k, n) for k, n in zip(rows["n_solved"], rows["n_seeds"], strict=True)]
    columns["diverged"] = [fraction(k, n) for k, n in zip(rows["n_diverged"], rows["n_seeds"], strict=True)]
    return pd.DataFrame(columns)


def gradnorm_table(results: Results) -> pd.DataFrame | None:
    """Per run: training steps, median and maximum finite pre-clip norm, share of steps clipped, and the number of
    steps with a non-finite gradient or loss; None without steps."""
    norms = results.gradient_norms
    if norms.empty:
        return None
    finite = np.isfinite(norms["grad_norm_pre"])
    stats = (
        norms.assign(pre=norms["grad_norm_pre"].where(finite), bad=~(norms["finite"] & finite))
        .groupby(list(RUN_KEYS))
        .agg(
            steps=("step", "count"),
            median=("pre", "median"),
            peak=("pre", "max"),
            clipped=("clipped", "mean"),
            nonfinite=("bad", "sum"),
        )
    )
    rows = results.in_order(stats.reset_index())
    return pd.DataFrame(
        {
            **_keys(rows, RUN_KEYS),
            "steps": rows["steps"].astype(str),
            "median ‖g‖": rows["median"].map(num),
            "max ‖g‖": rows["peak"].map(num),
            "clipped": rows["clipped"].map(lambda x: f"{100 * x:.0f} %"),
            "non-finite": rows["nonfinite"].astype(int).astype(str),
        }
    )

"""The report's tables: DataFrames of display strings (names escaped, numbers formatted), one per table of the report.

:func:`~rnn_gradients.report.format.markdown_table` writes them; a function returns None when its table would be
empty, and the report then shows no table. Statistics over seeds follow :meth:`Results.combinations`: values are
over the seeds that did not diverge, and solved and diverged seeds are given as k/n.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnn_gradients.engine.strategies import STRATEGY_KEYS
from rnn_gradients.report.format import MISSING, code, escape, fixed, fraction, num, numbers, percent, signed, spread
from rnn_gradients.report.i18n import catalogue, current_language, msg
from rnn_gradients.report.results import Results
from rnn_gradients.study.config import LENGTHS_KEY, SCOPE_KEY
from rnn_gradients.study.grid import GRID_KEYS, RUN_KEYS


def metric_name(metric: str) -> str:
    """A task's metric in words ("MSE", "accuracy"); a metric the catalogue does not know, as written (escaped)."""
    key = f"metric.{metric}"
    return msg(key) if key in catalogue(current_language()) else escape(metric)


def task_description(task: str) -> str:
    """What the network must remember in a task; :data:`MISSING` for a task the catalogue does not describe."""
    key = f"task.{task}"
    return msg(key) if key in catalogue(current_language()) else MISSING


def _keys(rows: pd.DataFrame, keys: tuple[str, ...] = GRID_KEYS) -> dict[str, list[str]]:
    """The key columns of a display table: task and T as text, cell and strategy as code, seed as a number."""
    shown = {"task": escape, "seq_len": str, "cell": code, "strategy": code, "seed": str}
    return {("T" if k == "seq_len" else msg(f"table.{k}")): [shown[k](v) for v in rows[k]] for k in keys}


def tasks_table(results: Results) -> pd.DataFrame:
    """One row per task: what must be remembered, its lengths T, metric, chance level(s) and solve threshold(s)."""
    rows = []
    for task in results.tasks:
        runs = results.accuracy[results.accuracy["task"] == task]
        thresholds = [num(t) for t in sorted(runs["solve_threshold"].dropna().unique())]
        rows.append(
            {
                msg("table.task"): code(task),
                msg("table.remembered"): task_description(task),
                "T": ", ".join(str(t) for t in sorted(runs["seq_len"].unique())),
                msg("table.metric"): metric_name(runs["metric"].iloc[0]),
                msg("table.chance"): numbers(sorted({num(c) for c in runs["chance"]})),
                msg("table.solved_if"): numbers(thresholds) or MISSING,
            }
        )
    return pd.DataFrame(rows)


def strategies_table(results: Results) -> pd.DataFrame:
    """One row per strategy with the settings that differ from the control's (blank where a setting is default),
    and the cells it trains where it is restricted to some (a partial grid). Setting names are config keys and
    stay as written in every language."""
    strategy = msg("table.strategy")
    scopes = {name: results.config["strategies"][name].get(SCOPE_KEY) for name in results.strategies}
    lengths = {name: results.config["strategies"][name].get(LENGTHS_KEY, "all") for name in results.strategies}
    rows = pd.DataFrame(
        [
            {
                strategy: code(name),
                **{k: escape(v) for k, v in bundle.params().items()},
                **({SCOPE_KEY: ", ".join(map(code, scopes[name]))} if scopes[name] else {}),
                **({LENGTHS_KEY: escape(lengths[name])} if lengths[name] != "all" else {}),
            }
            for name, bundle in results.strategies.items()
        ]
    )
    columns = [strategy, *[k for k in (*STRATEGY_KEYS, SCOPE_KEY, LENGTHS_KEY) if k in rows]]
    return rows.reindex(columns=columns).fillna("")


def decay_table(results: Results) -> pd.DataFrame | None:
    """One row per combination: the decay per step at initialization and after training, the seeds' mean and range
    (:func:`~rnn_gradients.report.format.spread`); None without probes."""
    decay = results.decay_rates[results.decay_rates["phase"].isin(["init", "trained"])]
    if decay.empty:
        return None
    slopes = decay.groupby([*GRID_KEYS, "phase"])["decay_per_step"].agg(lambda v: spread(v, signed)).unstack("phase")
    rows = results.in_order(slopes.reindex(columns=["init", "trained"]).fillna(MISSING).reset_index())
    return pd.DataFrame({**_keys(rows), msg("phase.init"): rows["init"], msg("phase.trained"): rows["trained"]})


def accuracy_table(results: Results) -> pd.DataFrame:
    """Test metric per combination over the seeds that did not diverge: mean ± sd (± only with a finite sd) or the
    single value, the range when there are several seeds, then seeds solved as k/n, the solve rate's Wilson
    interval and the verdict drawn from it, and seeds diverged as k/n."""
    rows = results.combinations()
    several = rows["n_seeds"].max() > 1
    values = [
        MISSING if n == 0 else f"{num(m)} ± {num(s, 2)}" if pd.notna(s) else num(m)
        for m, s, n in zip(rows["mean"], rows["std"], rows["n_valued"], strict=True)
    ]
    columns: dict[str, list[str]] = {**_keys(rows), msg("table.mean_sd" if several else "table.value"): values}
    if several:
        columns[msg("table.range")] = [
            num(a) if num(a) == num(b) else f"{num(a)}–{num(b)}" for a, b in zip(rows["min"], rows["max"], strict=True)
        ]
    columns[msg("table.solved")] = [fraction(k, n) for k, n in zip(rows["n_solved"], rows["n_seeds"], strict=True)]
    columns[msg("table.solve_rate", confidence=percent(results.confidence))] = [
        f"{fixed(low, 2)}–{fixed(high, 2)}" for low, high in zip(rows["solved_low"], rows["solved_high"], strict=True)
    ]
    columns[msg("table.verdict")] = [msg(f"verdict.{v}") for v in rows["verdict"]]
    columns[msg("table.diverged")] = [fraction(k, n) for k, n in zip(rows["n_diverged"], rows["n_seeds"], strict=True)]
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
            msg("table.steps"): rows["steps"].astype(str),
            msg("table.median_norm"): rows["median"].map(num),
            msg("table.max_norm"): rows["peak"].map(num),
            msg("table.clipped"): rows["clipped"].map(lambda x: f"{100 * x:.0f} %"),
            msg("table.non_finite"): rows["nonfinite"].astype(int).astype(str),
        }
    )

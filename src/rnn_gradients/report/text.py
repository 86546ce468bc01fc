"""The report's words and tables, built from the study tables (docs/architecture.md, "Study tables").

Every function here is a function of the study tables (and, for the appendix, of facts about the machine passed in
by the caller): it returns a DataFrame of display strings or a Markdown string, so that the cells of
``report/report.qmd`` only select data, call one function and display the result. Figures stay in ``plotting.py``.

The sentences quote the quantities of Pascanu, Mikolov & Bengio (2013): the per-step decay rate of
ln‖∂L/∂h_t‖ against the distance k, its prediction ln(γ_eff · σ_max(W_hh)), and the spectral radius ρ(W_hh).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from rnn_gradients.engine.strategies import STRATEGY_KEYS, Strategy
from rnn_gradients.report import figures as rp

NUMERIC = r"^[\s\d.,+\-−–%/±→e]*$"
GATED = ("lstm", "gru")
TASK_DESCRIPTIONS = {
    "adding": "Two channels: values from U[0, 1] and a marker channel with two 1s; output the sum of the "
    "two marked values at the last step (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).",
    "copy": "Ten symbols from an alphabet of 8, then blanks and a delimiter; reproduce the ten symbols at "
    "the end (Arjovsky et al. 2016).",
    "temporal_order": "Two relevant symbols (A or B) hidden among distractors; classify the order AA, AB, "
    "BA or BB at the last step (Hochreiter & Schmidhuber 1997, exp. 6a).",
    "first_symbol": "Recall the first symbol (0 or 1) after T distractor steps.",
}
REPORTED_PACKAGES = (
    "rnn-gradients", "torch", "numpy", "pandas", "matplotlib", "seaborn", "snakemake", "nbclient", "jupytext",
    "pypandoc-binary",
)  # fmt: skip


def markdown_table(df: pd.DataFrame) -> str:
    """A pipe table; columns that hold only numbers (as formatted text) are right-aligned."""
    df = df.astype(str)
    align = ["right" if df[c].str.match(NUMERIC).all() else "left" for c in df.columns]
    return df.to_markdown(index=False, disable_numparse=True, colalign=align)


def names(items: Iterable[str]) -> str:
    """`a`, `b` and `c` — or "none" for no items."""
    quoted = [f"`{i}`" for i in items]
    return " and ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else "".join(quoted) or "none"


def num(x: float | None, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits; an en dash for a missing or non-finite value."""
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def of(solved: float, total: float) -> str:
    """ "3 of 5"."""
    return f"{int(solved)} of {int(total)}"


def slope(x: float) -> str:
    """A decay rate per step with its sign and a typographic minus: "+0.012", "−0.250"; "–" if not finite."""
    return "–" if not np.isfinite(x) else f"{x:+.3f}".replace("-", "−")


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


@dataclass(frozen=True)
class Study:
    """The study tables plus the orderings every section shares.

    ``baseline`` is the unmitigated strategy (None if the grid has none); it leads every legend and table, the
    other strategies keep config order. ``longest`` maps each task to its longest sequence length T.
    """

    config: Mapping[str, Any]
    accuracy: pd.DataFrame
    summary: pd.DataFrame
    norms: pd.DataFrame
    flow: pd.DataFrame
    decay: pd.DataFrame
    bundles: Mapping[str, Mapping[str, Any]]
    palette: rp.Palette
    baseline: str | None
    tasks: list[str]
    cells: list[str]
    strategies: list[str]
    traits: Mapping[str, rp.StrategyTraits]
    longest: Mapping[str, int]

    @classmethod
    def from_tables(
        cls,
        config: Mapping[str, Any],
        accuracy: pd.DataFrame,
        summary: pd.DataFrame,
        norms: pd.DataFrame,
        flow: pd.DataFrame,
        decay: pd.DataFrame,
    ) -> Study:
        """Derive orderings and strategy traits; ``solved``/``diverged`` of ``accuracy`` become booleans."""
        bundles = rp.strategy_bundles(config)
        config_palette = rp.study_palette(config, summary)
        baseline = rp.baseline_strategy(config_palette.ordered_strategies(summary["strategy"]), bundles)
        palette = rp.Palette.build(
            summary["cell"], [s for s in [baseline, *config_palette.strategies] if s is not None]
        )
        strategies = palette.ordered_strategies(summary["strategy"])
        accuracy = accuracy.assign(solved=rp.as_bool(accuracy["solved"]), diverged=rp.as_bool(accuracy["diverged"]))
        return cls(
            config=config,
            accuracy=accuracy,
            summary=summary,
            norms=norms,
            flow=flow,
            decay=decay,
            bundles=bundles,
            palette=palette,
            baseline=baseline,
            tasks=rp.task_order(config, summary["task"]),
            cells=palette.ordered_cells(summary["cell"]),
            strategies=strategies,
            traits={s: rp.StrategyTraits.of(s, bundles.get(s)) for s in strategies},
            longest=summary.groupby("task")["seq_len"].max().to_dict(),
        )

    @property
    def vanilla(self) -> list[str]:
        """The vanilla (ungated) cells of the grid, in palette order."""
        return [c for c in self.cells if c in rp.VANILLA_CELLS]

    @property
    def gated(self) -> list[str]:
        """The gated cells (LSTM, GRU) of the grid, in palette order."""
        return [c for c in self.cells if c in GATED]

    def at_longest(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``df`` at the longest sequence length of their task."""
        return df[df["seq_len"] == df["task"].map(self.longest)]

    def runs(self) -> pd.DataFrame:
        """``accuracy`` with a boolean column ``clipped``: whether the run's strategy clips its gradient."""
        return self.accuracy.assign(clipped=self.accuracy["strategy"].map(lambda s: self.traits[s].clipped))

    def clipped_strategies(self) -> list[str]:
        """Strategies that clip the gradient (by norm or by value)."""
        return [s for s in self.strategies if self.traits[s].clipped]


def overview_sentence(study: Study) -> str:
    """How many cells, strategies, tasks, seeds and runs the study holds."""
    n_cells, n_strategies, n_tasks = len(study.cells), len(study.strategies), len(study.tasks)
    n_seeds = study.accuracy["seed"].nunique()
    return (
        f"The study trains {n_cells} cell type{_plural(n_cells, '', 's')} ({names(study.cells)}) under "
        f"{n_strategies} mitigation strateg{_plural(n_strategies, 'y', 'ies')} ({names(study.strategies)}) on "
        f"{n_tasks} task{_plural(n_tasks, '', 's')}, with "
        f"{n_seeds} seed{_plural(n_seeds, '', 's')} per combination: "
        f"{len(study.accuracy)} training runs in all. @tbl-tasks lists the tasks; each is a synthetic long-dependency "
        "problem whose answer depends on inputs about $T$ steps before the read-out, so $T$ sets how far back "
        "the gradient must travel."
    )


def tasks_table(study: Study) -> pd.DataFrame:
    """One row per task: what must be remembered, its lengths T, metric, chance level(s) and solve threshold(s)."""
    rows = []
    for task in study.tasks:
        part = study.summary[study.summary["task"] == task]
        runs = study.accuracy[study.accuracy["task"] == task]
        chance = part.groupby("seq_len")["chance"].first()
        threshold = pd.to_numeric(runs["solve_threshold"], errors="coerce").dropna().unique()
        rows.append(
            {
                "task": f"`{task}`",
                "what must be remembered": TASK_DESCRIPTIONS.get(task, "—"),
                "T": ", ".join(str(t) for t in sorted(part["seq_len"].unique())),
                "metric": str(part["metric"].iloc[0]),
                "chance": ", ".join(sorted({num(c) for c in chance})),
                "solved if error ≤": ", ".join(num(t) for t in sorted(threshold)) or "–",
            }
        )
    return pd.DataFrame(rows)


def init_spectrum_sentence(study: Study) -> str | None:
    """Median ρ(W_hh) and σ_max(W_hh) per cell at initialization; None without initialization probes."""
    init = rp.probe_phases(study.decay)
    init = init[init["phase"] == rp.INIT_PHASE]
    if init.empty:
        return None
    parts = []
    for cell in study.cells:
        rows = init[init["cell"] == cell]
        if not rows.empty:
            rho = pd.to_numeric(rows["spectral_radius"], errors="coerce").median()
            sigma = pd.to_numeric(rows["sigma_max"], errors="coerce").median()
            parts.append(f"`{cell}` $\\rho = {num(rho)}$, $\\sigma_{{\\max}} = {num(sigma)}$")
    return (
        "Measured at initialization (median over all strategies, tasks and seeds), the recurrent matrices of "
        "this study had " + "; ".join(parts) + ". The bound is stated for the vanilla cells only: a gated "
        "cell's Jacobian is not $\\operatorname{diag}(\\phi')\\,W_{hh}$."
    )


def flow_rows(study: Study) -> pd.DataFrame:
    """Gradient-flow probes at the longest length of each task."""
    return study.at_longest(study.flow)


def flow_strategy(study: Study) -> str | None:
    """The strategy whose gradient flow the report shows: the baseline, if it has probes at the longest T."""
    return study.baseline if study.baseline in set(flow_rows(study)["strategy"]) else None


def flow_sentence(study: Study) -> str:
    """The sentence introducing the gradient-flow figure, or why it is missing."""
    strategy = flow_strategy(study)
    if strategy is None:
        return "No gradient probes of the unmitigated strategy are in the tables."
    return (
        f"@fig-flow shows the measured gradient norms of the hidden states under the `{strategy}` strategy "
        "at the longest sequence length of each task, at initialization (the probe before the first update) "
        "and after training (each run's last probe). A straight line on the logarithmic axis is a constant "
        "per-step factor; its slope is the decay rate of @tbl-decay."
    )


def decay_table(study: Study) -> pd.DataFrame:
    """One row per (task, T, cell, strategy): mean decay per step over seeds at initialization and after training."""
    phases = rp.probe_phases(study.decay).assign(
        decay_per_step=lambda d: pd.to_numeric(d["decay_per_step"], errors="coerce")
    )
    means = (
        phases.groupby(["task", "seq_len", "cell", "strategy", "phase"])["decay_per_step"]
        .mean()
        .unstack("phase")
        .reindex(columns=[rp.INIT_PHASE, rp.TRAINED_PHASE])
    )
    rows = rp.sort_runs(means.reset_index(), study.palette, study.tasks)
    return pd.DataFrame(
        {
            "task": rows["task"],
            "T": rows["seq_len"].astype(str),
            "cell": "`" + rows["cell"] + "`",
            "strategy": "`" + rows["strategy"] + "`",
            "at initialization": rows[rp.INIT_PHASE].map(slope),
            "after training": rows[rp.TRAINED_PHASE].map(slope),
        }
    )


def trace_strategies(study: Study) -> list[str]:
    """The strategies of the gradient-norm traces figure (see ``plotting.exploding_strategies``)."""
    return rp.exploding_strategies(study.strategies, study.bundles)


def clip_norms(study: Study) -> dict[str, float | None]:
    """Each strategy's clipping threshold on the global norm (None if it does not clip by norm)."""
    return {s: study.traits[s].clip_norm for s in study.strategies}


def exploding_paragraph(study: Study) -> str:
    """Which runs the traces figure follows, and every run the training loop flagged as diverged."""
    selected = trace_strategies(study)
    scaled = [s for s in study.strategies if study.traits[s].init == "scaled"]
    runs = study.runs()
    diverged = runs[runs["diverged"]]
    rule = (
        f"the strategies with the scaled recurrent initialization ({names(scaled)})"
        if scaled
        else "every strategy, since none uses the scaled initialization; the panels are the task, length and "
        "cell with the largest pre-clip gradient norms"
    )
    text = f"@fig-traces follows the pre-clip gradient norm during training for {rule}"
    added = [s for s in selected if s not in scaled] if scaled else []
    text += f", with the clipped strategies {names(added)} for comparison. " if added else ". "
    if diverged.empty:
        return text + f"None of the {len(runs)} runs diverged."
    unclipped = diverged[~diverged["clipped"]]
    return (
        text + f"{of(len(diverged), len(runs))} runs were flagged as diverged by the training loop; "
        f"{of(len(unclipped), len(diverged))} of those used no clipping. Diverged runs: "
        + "; ".join(
            f"`{r.cell}`/`{r.strategy}` on {r.task} T = {r.seq_len} seed {r.seed} at step {num(r.diverged_step, 6)}"
            for r in rp.sort_runs(diverged, study.palette, study.tasks).itertuples()
        )
        + "."
    )


def strategies_table(study: Study) -> pd.DataFrame:
    """One row per strategy with the settings that differ from the defaults (blank where a setting is default)."""
    rows = pd.DataFrame(
        [
            {
                "strategy": f"`{s}`",
                **{k: str(v) for k, v in Strategy.from_dict(s, study.bundles.get(s)).params().items()},
            }
            for s in study.strategies
        ]
    )
    return rows.reindex(columns=["strategy", *[k for k in STRATEGY_KEYS if k in rows]]).fillna("")


def activation_rows(study: Study) -> pd.DataFrame | None:
    """Baseline summary rows of the vanilla cells; None unless ReLU and a saturating cell are both present."""
    if not ("rnn_relu" in study.vanilla and [c for c in study.vanilla if c != "rnn_relu"]):
        return None
    summary = study.summary
    return summary[summary["cell"].isin(study.vanilla) & (summary["strategy"] == study.baseline)]


def activations_sentence(study: Study) -> str:
    """Seeds solved by each vanilla cell at the longest T of each task, or which cell the grid lacks."""
    rows = activation_rows(study)
    if rows is None:
        has_relu = "rnn_relu" in study.vanilla
        return (
            "This grid cannot compare activations: it has "
            + ("no `rnn_relu` cell" if not has_relu else "no tanh or sigmoid RNN")
            + f" (vanilla cells: {names(study.vanilla)})."
        )
    long = rp.sort_runs(study.at_longest(rows), study.palette, study.tasks)
    sentences = [
        f"on {task} (T = {part['seq_len'].iloc[0]}) "
        + ", ".join(f"`{r.cell}` {of(r.n_solved, r.n_seeds)}" for r in part.itertuples())
        for task, part in long.groupby("task", sort=False)
    ]
    return (
        f"@fig-activations compares {names(study.vanilla)} under `{study.baseline}`. Seeds solved at the longest "
        "length of each task: " + "; ".join(sentences) + "."
    )


def _with_baseline(study: Study, strategies: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([s for s in [study.baseline, *strategies] if s is not None]))


def normalization_rows(study: Study) -> pd.DataFrame | None:
    """Summary rows of the normalized strategies and the baseline; None without a normalization strategy."""
    normed = [s for s in study.strategies if study.traits[s].norm != "none"]
    if not normed:
        return None
    return study.summary[study.summary["strategy"].isin(_with_baseline(study, normed))]


def normalization_sentence(study: Study) -> str:
    """Runs solved at the longest T by each normalized strategy and the baseline, or that there is none."""
    rows = normalization_rows(study)
    if rows is None:
        return "This grid has no normalization strategy (no strategy sets `norm` to `layer` or `batch`)."
    normed = [s for s in study.strategies if study.traits[s].norm != "none"]
    compare = [s for s in [study.baseline, *normed] if s is not None]
    long = study.at_longest(rows).groupby("strategy")[["n_solved", "n_seeds"]].sum()
    return (
        f"@fig-normalization compares {names(normed)} with `{study.baseline}` for every cell. Runs solved at the "
        "longest length of each task, all cells together: "
        + "; ".join(f"`{s}` {of(long.loc[s, 'n_solved'], long.loc[s, 'n_seeds'])}" for s in compare if s in long.index)
        + "."
    )


def clipping_rows(study: Study) -> pd.DataFrame | None:
    """Summary rows of the clipped strategies and the baseline; None without a clipping strategy."""
    clipped = study.clipped_strategies()
    if not clipped:
        return None
    return study.summary[study.summary["strategy"].isin(_with_baseline(study, clipped))]


def _divergence_by_clipping(study: Study) -> pd.DataFrame:
    return study.runs().groupby("clipped")["diverged"].agg(["sum", "count"])


def clipping_sentence(study: Study) -> str:
    """Share of training steps the clipped strategies rescaled and divergences with and without clipping."""
    clipped = study.clipped_strategies()
    if not clipped:
        return "This grid has no clipping strategy (no strategy sets `clip_norm` or `clip_value`)."
    steps = study.norms[study.norms["strategy"].isin(clipped)]
    share = rp.as_bool(steps["clipped"]).mean() if not steps.empty else np.nan
    by_clip = _divergence_by_clipping(study)
    divergence = "; ".join(
        f"{'with' if flag else 'without'} clipping "
        f"{of(by_clip.loc[flag, 'sum'], by_clip.loc[flag, 'count'])} runs diverged"
        for flag in (True, False)
        if flag in by_clip.index
    )
    return (
        f"@fig-clipping compares {names(clipped)} with `{study.baseline}`. The clipped strategies rescaled "
        f"{num(100 * share, 3)} % of their training steps; {divergence}."
    )


def gate_rows(study: Study) -> pd.DataFrame | None:
    """Baseline summary rows of every cell; None without a gated cell."""
    if not study.gated:
        return None
    return study.summary[study.summary["strategy"] == study.baseline]


def gates_sentence(study: Study) -> str:
    """Runs solved at the longest T by gated and by vanilla cells under the baseline, or that there is no gate."""
    rows = gate_rows(study)
    if rows is None:
        return f"This grid has no gated cell (cells: {names(study.cells)})."
    long = study.at_longest(rows).assign(gated=lambda d: d["cell"].isin(study.gated))
    totals = long.groupby("gated")[["n_solved", "n_seeds"]].sum()
    parts = [
        f"{'gated' if flag else 'vanilla'} cells solved "
        f"{of(totals.loc[flag, 'n_solved'], totals.loc[flag, 'n_seeds'])} runs"
        for flag in (True, False)
        if flag in totals.index
    ]
    return (
        f"@fig-gates puts {names(study.gated)} beside the vanilla cells under `{study.baseline}`. At the longest "
        "length of each task, " + " and ".join(parts) + "."
    )


@dataclass(frozen=True)
class TheoryCheck:
    """Measured decay per step against ln(γ_eff σ_max(W_hh)) (Pascanu et al. 2013) over the qualifying probes.

    ``below`` is the fraction with measured ≤ predicted; ``corr`` the Pearson correlation (NaN unless more than
    two probes and both columns vary); ``gap`` the median of measured − predicted.
    """

    n_probes: int
    n_runs: int
    below: float
    corr: float
    gap: float

    @classmethod
    def of(cls, decay: pd.DataFrame) -> TheoryCheck | None:
        """None when no probe has both a finite measured and a finite predicted decay."""
        check = theory_probes(decay)
        if check.empty:
            return None
        varies = len(check) > 2 and np.ptp(check["predicted"]) > 1e-9 and np.ptp(check["measured"]) > 1e-9
        return cls(
            n_probes=len(check),
            n_runs=check[["task", "seq_len", "cell", "strategy", "seed"]].drop_duplicates().shape[0],
            below=float((check["measured"] <= check["predicted"]).mean()),
            corr=float(check["measured"].corr(check["predicted"])) if varies else np.nan,
            gap=float((check["measured"] - check["predicted"]).median()),
        )


def theory_probes(decay: pd.DataFrame) -> pd.DataFrame:
    """Probes with a finite ``measured`` and ``predicted`` decay per step (in practice: vanilla cells only)."""
    check = decay.assign(
        measured=pd.to_numeric(decay["decay_per_step"], errors="coerce"),
        predicted=pd.to_numeric(decay["bound_decay"], errors="coerce"),
    )
    return check[np.isfinite(check["measured"]) & np.isfinite(check["predicted"])]


def theory_sentence(study: Study) -> str:
    """How many probes lie on or below Pascanu's prediction, the correlation and the median gap."""
    check = TheoryCheck.of(study.decay)
    if check is None:
        return (
            "No vanilla-cell probe has both a finite measured and a finite predicted decay, so nothing can be checked."
        )
    return (
        f"{check.n_probes} probes of {check.n_runs} "
        f"vanilla runs qualify. {num(100 * check.below, 3)} % of them lie on or below the line; "
        + (
            f"the Pearson correlation between measured and predicted rates is {num(check.corr, 2)}, "
            if np.isfinite(check.corr)
            else "the correlation is undefined (the predictions or measurements do not vary), "
        )
        + f"and the median of measured − predicted is {check.gap:+.3f} per step."
    )


def _task_conclusion(study: Study, task: str) -> str | None:
    part = study.at_longest(study.summary[study.summary["task"] == task])
    if part.empty:
        return None
    seq_len, metric = int(part["seq_len"].iloc[0]), part["metric"].iloc[0]
    base = rp.sort_runs(part[part["strategy"] == study.baseline], study.palette, study.tasks)
    results = ", ".join(f"`{r.cell}` {of(r.n_solved, r.n_seeds)}" for r in base.itertuples())
    line = (
        f"- **{task}, T = {seq_len}** ({metric}, chance {num(part['chance'].iloc[0])}): under `{study.baseline}`, "
        f"seeds solved — {results}."
    )
    rescued = []
    for cell in study.vanilla:
        own = part[part["cell"] == cell].sort_values("solved_rate", ascending=False, kind="stable")
        if own.empty:
            continue
        best = own.iloc[0]
        if best["n_solved"] > 0 and best["strategy"] != study.baseline:
            rescued.append(f"`{cell}` did best with `{best['strategy']}` ({of(best['n_solved'], best['n_seeds'])})")
        elif best["n_solved"] == 0:
            rescued.append(f"`{cell}` solved no seed under any strategy")
    return line + (" " + "; ".join(rescued) + "." if rescued else "")


def conclusions(study: Study) -> str:
    """A Markdown list: per task, the baseline's solved seeds per cell and each vanilla cell's best remedy; then
    the vanishing factor e^(slope·T) at initialization, divergences with and without clipping, and the theory check.
    """
    lines = [line for task in study.tasks if (line := _task_conclusion(study, task)) is not None]
    start = rp.probe_phases(study.decay)
    start = study.at_longest(start[(start["phase"] == rp.INIT_PHASE) & (start["strategy"] == study.baseline)])
    if not start.empty:
        reach = pd.to_numeric(start["decay_per_step"], errors="coerce") * start["seq_len"] / np.log(10)
        per_cell = reach.groupby(start["cell"]).mean()
        factors = ", ".join(f"`{c}` $10^{{{per_cell[c]:.1f}}}$" for c in study.palette.ordered_cells(per_cell.index))
        lines.append(
            f"- **Vanishing.** At initialization under `{study.baseline}`, the fitted decay per step puts the gradient "
            f"reaching back over the longest sequence of each task at this fraction of its value at the last step "
            f"(e^(slope·T), mean over tasks and seeds; below about $10^{{-38}}$ float32 holds only zeros, so the "
            f"smallest factors are extrapolated): {factors}."
        )
    if study.accuracy["diverged"].any() or study.clipped_strategies():
        by_clip = _divergence_by_clipping(study)
        parts = [
            f"{of(by_clip.loc[flag, 'sum'], by_clip.loc[flag, 'count'])} runs {'with' if flag else 'without'} "
            "clipping diverged"
            for flag in (False, True)
            if flag in by_clip.index
        ]
        lines.append("- **Exploding.** " + "; ".join(parts) + ".")
    check = TheoryCheck.of(study.decay)
    if check is not None:
        lines.append(
            f"- **Theory.** {num(100 * check.below, 3)} % of the vanilla-cell probes decay at least as fast as "
            f"$\\ln(\\gamma_{{\\text{{eff}}}}\\,\\sigma_{{\\max}})$ predicts"
            + (f" (correlation {num(check.corr, 2)})." if np.isfinite(check.corr) else ".")
        )
    return "\n".join(lines) if lines else "The tables hold no runs to conclude from."


def accuracy_table(study: Study) -> pd.DataFrame:
    """Test metric per (task, T, cell, strategy): mean ± sd (± only with a finite sd) or the single value, the
    range when there are several seeds, solved and diverged seeds."""
    rows = rp.sort_runs(study.summary, study.palette, study.tasks)
    several = pd.to_numeric(rows["n_seeds"]).max() > 1
    columns: dict[str, Any] = {
        "task": rows["task"],
        "T": rows["seq_len"].astype(str),
        "cell": "`" + rows["cell"] + "`",
        "strategy": "`" + rows["strategy"] + "`",
        "mean ± sd" if several else "value": [
            f"{num(m)} ± {num(s, 2)}" if np.isfinite(s) else num(m)
            for m, s in zip(rows["mean"], pd.to_numeric(rows["std"]), strict=True)
        ],
    }
    if several:
        columns["range"] = [
            num(a) if num(a) == num(b) else f"{num(a)}–{num(b)}" for a, b in zip(rows["min"], rows["max"], strict=True)
        ]
    columns["solved"] = [f"{int(a)}/{int(b)}" for a, b in zip(rows["n_solved"], rows["n_seeds"], strict=True)]
    columns["diverged"] = [f"{int(a)}/{int(b)}" for a, b in zip(rows["n_diverged"], rows["n_seeds"], strict=True)]
    return pd.DataFrame(columns)


def gradnorm_table(study: Study) -> pd.DataFrame:
    """Per run: training steps, median and maximum finite pre-clip norm, share of steps clipped, and the number of
    steps with a non-finite gradient or loss."""
    norms = study.norms
    pre = pd.to_numeric(norms["grad_norm_pre"], errors="coerce")
    stats = norms.assign(
        pre=pre.where(np.isfinite(pre)),
        clip=rp.as_bool(norms["clipped"]),
        bad=~rp.as_bool(norms["finite"]) | ~np.isfinite(pre),
    ).groupby(["task", "seq_len", "cell", "strategy", "seed"])
    rows = rp.sort_runs(
        stats.agg(
            steps=("step", "count"),
            median=("pre", "median"),
            peak=("pre", "max"),
            clipped=("clip", "mean"),
            nonfinite=("bad", "sum"),
        ).reset_index(),
        study.palette,
        study.tasks,
    )
    return pd.DataFrame(
        {
            "task": rows["task"],
            "T": rows["seq_len"].astype(str),
            "cell": "`" + rows["cell"] + "`",
            "strategy": "`" + rows["strategy"] + "`",
            "seed": rows["seed"].astype(str),
            "steps": rows["steps"].astype(str),
            "median ‖g‖": rows["median"].map(num),
            "max ‖g‖": rows["peak"].map(num),
            "clipped": rows["clipped"].map(lambda x: f"{100 * x:.0f} %"),
            "non-finite": rows["nonfinite"].astype(int).astype(str),
        }
    )


def package_versions(packages: Iterable[str] = REPORTED_PACKAGES) -> dict[str, str]:
    """Installed version of each package ("not installed" when absent); reads the environment."""
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _git(path: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(path: Path) -> tuple[str | None, bool]:
    """The commit checked out at ``path`` (None outside a git checkout) and whether the tree has changes."""
    return _git(path, "rev-parse", "HEAD"), bool(_git(path, "status", "--porcelain"))


def machine_description() -> str:
    """Platform, architecture, CPU count and Python version of the machine running this code."""
    return f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def reproducibility_facts(
    accuracy: pd.DataFrame,
    *,
    renderer: str,
    tables: Path,
    commit: str | None,
    dirty: bool,
    machine: str,
    versions: Mapping[str, str],
) -> str:
    """The appendix list: renderer, tables, commit, rendering machine, run environments, compute and packages."""
    wall = pd.to_numeric(accuracy["wall_time_s"], errors="coerce")
    hours, seconds = divmod(float(wall.sum()), 3600)
    compute = (f"{int(hours)} h " if hours else "") + f"{seconds / 60:.1f} min"
    run_env = ", ".join(
        f"{label} {', '.join(sorted(accuracy[column].dropna().astype(str).unique()))}"
        for column, label in (("torch_version", "torch"), ("device", "device"), ("threads", "torch threads"))
        if column in accuracy
    )
    git_line = (
        f"`{commit}`" + (" (with uncommitted changes)" if dirty else "") if commit else "none (not a git checkout)"
    )
    ms_per_step = float(pd.to_numeric(accuracy["ms_per_step"], errors="coerce").median())
    return "\n".join(
        [
            f"- **Renderer:** {renderer}.",
            f"- **Study tables:** `{tables}`.",
            f"- **Git commit:** {git_line}.",
            f"- **Machine rendering this page:** {machine}.",
            f"- **Runs:** {run_env}.",
            f"- **Total training compute:** {compute} of wall time over {len(accuracy)} runs "
            f"(sum of `wall_time_s`; median {num(ms_per_step)} ms per step).",
            "- **Packages:** " + ", ".join(f"{p} {v}" for p, v in versions.items()) + ".",
        ]
    )


def config_yaml(config: Mapping[str, Any], bundles: Mapping[str, Mapping[str, Any]]) -> str:
    """The study config as a fenced YAML block; each strategy lists only its settings that differ from the control."""
    shown = dict(config)
    if bundles:
        shown["strategies"] = {s: Strategy.from_dict(s, b).params() for s, b in bundles.items()}
    return "```yaml\n" + yaml.safe_dump(shown, sort_keys=False, default_flow_style=None, width=80) + "```"

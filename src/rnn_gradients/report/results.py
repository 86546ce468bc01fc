"""The results of one study as the report reads them: the study tables and the validated config, loaded once.

:meth:`Results.load` reads the tables of :data:`~rnn_gradients.study.tables.TABLE_FILES` with their dtypes (names as
text, booleans as ``bool``, never-solved and never-diverged steps as nullable integers), checks that their names
are the config's, and derives what every section shares: the orderings (tasks and strategies in config order,
cells in :data:`~rnn_gradients.engine.cells.CELLS` order), the validated :class:`Strategy` of every strategy, the
control, each probe's phase, and the per-combination statistics over seeds. Everything the report says about a
strategy comes from its :class:`Strategy`, never from its name.

The per-combination statistics are the study layer's :func:`~rnn_gradients.study.analysis.summarize_accuracy` of
``accuracy.csv`` (the same function writes ``accuracy_summary.csv``): over the runs that did not diverge, since a
diverged run's last metric value is no measurement; such a seed counts as one that did not solve, never as a value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from rnn_gradients.engine.cells import CELLS, GATED_CELLS, VANILLA_CELLS
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.report.palette import Palette
from rnn_gradients.study.analysis import summarize_accuracy
from rnn_gradients.study.grid import GRID_KEYS, RUN_KEYS, strategies
from rnn_gradients.study.tables import NULLABLE_INTEGERS, TABLE_COLUMNS
from rnn_gradients.study.verdicts import verdict_settings

Phase = Literal["init", "during", "trained"]
PHASES: tuple[Phase, ...] = ("init", "during", "trained")
"""A probe's phase: its run's first probe (at initialization), one in between, or its last probe (after training)."""

TEXT_COLUMNS = (
    "task", "cell", "strategy", "metric", "device", "torch_version", "cpu_model", "cpu_capability", "verdict",
)  # fmt: skip
BOOL_COLUMNS = ("solved", "diverged", "clipped", "finite")
_TABLES = {
    "accuracy": "accuracy.csv",
    "gradient_norms": "gradient_norms.csv",
    "gradient_flow": "gradient_flow.csv",
    "decay_rates": "decay_rates.csv",
}


class Comparison(NamedTuple):
    """What one remedy section compares: lines are ``hue`` ("cell" or "strategy"), over these cells and strategies."""

    hue: str
    cells: list[str]
    strategies: list[str]


@dataclass(frozen=True)
class Results:
    """The study tables (attributes named after their files) and what the report derives from them."""

    config: Mapping[str, Any]
    accuracy: pd.DataFrame
    gradient_norms: pd.DataFrame
    gradient_flow: pd.DataFrame
    """With a column ``phase`` (:data:`PHASES`)."""
    decay_rates: pd.DataFrame
    """With a column ``phase`` (:data:`PHASES`)."""
    tasks: tuple[str, ...]
    cells: tuple[str, ...]
    strategies: dict[str, Strategy]
    """Every strategy of the study, in config order, validated."""
    control: str | None
    """The first strategy with no intervention (an empty bundle); None when the study has none."""
    longest: dict[str, int]
    """Each task's longest sequence length T."""

    @classmethod
    def load(cls, tables_dir: str | Path) -> Results:
        """Read the study tables and ``study_config.json`` from ``tables_dir``."""
        tables_dir = Path(tables_dir)
        config = _read_config(tables_dir / "study_config.json")
        frames = {name: _read_table(tables_dir / file) for name, file in _TABLES.items()}
        try:
            return cls.from_tables(config, **frames)
        except ValueError as err:  # its messages start with the table's file name: name the whole path
            raise ValueError(f"{tables_dir}{os.sep}{err}") from None

    @classmethod
    def from_tables(
        cls,
        config: Mapping[str, Any],
        accuracy: pd.DataFrame,
        gradient_norms: pd.DataFrame,
        gradient_flow: pd.DataFrame,
        decay_rates: pd.DataFrame,
    ) -> Results:
        """The results of tables already in memory (typed here exactly as :meth:`load` types them).

        Raises ValueError when a table names a task, cell or strategy that the config does not define.
        """
        frames = {
            "accuracy.csv": _typed(accuracy, "accuracy.csv"),
            "gradient_norms.csv": _typed(gradient_norms, "gradient_norms.csv"),
            "gradient_flow.csv": _with_phase(_typed(gradient_flow, "gradient_flow.csv")),
            "decay_rates.csv": _with_phase(_typed(decay_rates, "decay_rates.csv")),
        }
        bundles = strategies(config)
        configured = {"task": list(config["tasks"]), "cell": list(config["cells"]), "strategy": list(bundles)}
        for file, frame in frames.items():
            for column, names in configured.items():
                unknown = sorted(set(frame[column]) - set(names)) if column in frame else []
                if unknown:
                    raise ValueError(
                        f"{file}: {column} {', '.join(map(repr, unknown))} is not in study_config.json "
                        f"({', '.join(map(repr, names))}); the tables and the config disagree"
                    )
        accuracy = frames["accuracy.csv"]
        present = {column: set(accuracy[column]) for column in configured}
        rank = {cell: i for i, cell in enumerate(CELLS)}
        return cls(
            config=config,
            accuracy=accuracy,
            gradient_norms=frames["gradient_norms.csv"],
            gradient_flow=frames["gradient_flow.csv"],
            decay_rates=frames["decay_rates.csv"],
            tasks=tuple(t for t in configured["task"] if t in present["task"]),
            cells=tuple(sorted(present["cell"], key=lambda c: (rank.get(c, len(rank)), c))),
            strategies={name: s for name, s in bundles.items() if name in present["strategy"]},
            control=next((n for n, s in bundles.items() if s.is_control and n in present["strategy"]), None),
            longest={t: int(v) for t, v in accuracy.groupby("task")["seq_len"].max().items()},
        )

    # ---- names and selections ------------------------------------------------------------------------------

    @property
    def vanilla_cells(self) -> list[str]:
        return [c for c in self.cells if c in VANILLA_CELLS]

    @property
    def gated_cells(self) -> list[str]:
        return [c for c in self.cells if c in GATED_CELLS]

    @property
    def control_cells(self) -> list[str]:
        """The cells trained under the control (all of them unless the control names its ``cells``)."""
        trained = set(self.accuracy.loc[self.accuracy["strategy"] == self.control, "cell"]) if self.control else set()
        return [c for c in self.cells if c in trained]

    def strategies_where(self, fact: str) -> list[str]:
        """The strategies (config order) for which a fact of their bundle holds: "clipped", "normalized",
        "scaled" (the scaled recurrent initialization that provokes exploding gradients), "control"."""
        test = {
            "clipped": lambda s: s.clipped,
            "normalized": lambda s: s.norm != "none",
            "scaled": lambda s: s.init == "scaled",
            "control": lambda s: s.is_control,
        }[fact]
        return [name for name, strategy in self.strategies.items() if test(strategy)]

    def with_control(self, names: list[str]) -> list[str]:
        """``names`` preceded by the control, if the study has one (config order otherwise kept)."""
        return list(dict.fromkeys([*([self.control] if self.control else []), *names]))

    def comparison(self, section: str) -> Comparison | None:
        """The runs a remedy section compares, or None when the study cannot make that comparison.

        "activations": the vanilla cells trained under the control (needs the control, ``rnn_relu`` and a saturating
        cell under it); "gates": every cell trained under the control (needs a gated one); "normalization" and
        "clipping": the strategies with that intervention, and the control if there is one, for the cells those
        strategies train (every cell, unless their bundles scope them to some: ``cells:``).
        """
        cells, control = list(self.cells), [self.control] if self.control else []
        under_control = self.control_cells
        if section == "activations":
            vanilla = [c for c in self.vanilla_cells if c in under_control]
            ready = control and "rnn_relu" in vanilla and len(vanilla) > 1
            return Comparison("cell", vanilla, control) if ready else None
        if section == "gates":
            ready = control and any(c in under_control for c in self.gated_cells)
            return Comparison("cell", under_control, control) if ready else None
        fact = {"normalization": "normalized", "clipping": "clipped"}[section]
        chosen = self.strategies_where(fact)
        trained = set(self.accuracy.loc[self.accuracy["strategy"].isin(chosen), "cell"])
        remedied = [c for c in cells if c in trained]
        return Comparison("strategy", remedied, self.with_control(chosen)) if chosen else None

    @property
    def palette(self) -> Palette:
        """The colors and markers of this study's cells and strategies."""
        return Palette.of(self.cells, list(self.strategies))

    @property
    def n_seeds(self) -> tuple[int, int]:
        """The fewest and the most seeds of any combination."""
        counts = self.accuracy.groupby(list(GRID_KEYS))["seed"].nunique()
        return (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)

    # ---- derived tables -----------------------------------------------------------------------------------

    def at_longest(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``df`` at the longest sequence length of their task."""
        return df[df["seq_len"] == df["task"].map(self.longest)]

    def runs(self) -> pd.DataFrame:
        """One row per run: ``accuracy.csv`` with ``value`` emptied where the run diverged."""
        return self.accuracy.assign(value=self.accuracy["value"].where(~self.accuracy["diverged"]))

    def combinations(self) -> pd.DataFrame:
        """One row per task × T × cell × strategy: :func:`summarize_accuracy` of the runs (``mean, std, min,
        max`` over the ``n_valued`` seeds that did not diverge), with the solve rate's interval and ``verdict``
        (solved, failed or uncertain: :mod:`rnn_gradients.study.verdicts`)."""
        return self.in_order(summarize_accuracy(self.accuracy, self.confidence))

    @property
    def confidence(self) -> float:
        """The confidence of the verdicts' Wilson intervals (the config's ``verdicts.confidence``)."""
        return verdict_settings(self.config)[1]

    def in_order(self, df: pd.DataFrame) -> pd.DataFrame:
        """Rows in report order: task and strategy in config order, T, cell in :data:`CELLS` order, seed."""
        ranks = {
            "task": {v: i for i, v in enumerate(self.tasks)},
            "cell": {v: i for i, v in enumerate(self.cells)},
            "strategy": {v: i for i, v in enumerate(self.strategies)},
        }
        keys = [k for k in (*RUN_KEYS, "probe_step", "step") if k in df]

        def rank(column: pd.Series) -> pd.Series:
            return column.map(ranks[column.name]) if column.name in ranks else column

        return df.sort_values(keys, key=rank, kind="stable").reset_index(drop=True)


OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"accuracy.csv": ("error_se", "train_error", "train_error_se")}
"""Columns a table may lack: tables collected before the train/test gap was measured (the report then leaves
the gap out: :func:`rnn_gradients.report.theory.gap_rows`)."""
_REDO = "the tables are damaged or not collect's: delete them and run `snakemake`, which collects them again"


def _read_config(path: Path) -> dict[str, Any]:
    """``study_config.json``; ValueError naming the file when it is missing or not a JSON object."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file; {_REDO}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); {_REDO}") from None
    if not isinstance(config, dict) or not all(isinstance(config.get(key), dict) for key in ("tasks", "strategies")):
        raise ValueError(f"{path}: not a study config (a JSON object with tasks and strategies); {_REDO}")
    return config


def _read_table(path: Path) -> pd.DataFrame:
    """One study table, with the columns :data:`TABLE_COLUMNS` gives it (but for :data:`OPTIONAL_COLUMNS`) and no
    other, and at least one row; ValueError naming the file (and the column) when it is not such a table."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file; {_REDO}")
    try:
        frame = pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str), keep_default_na=False, na_values=[""])
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a readable CSV table ({first}); {_REDO}") from None
    expected = TABLE_COLUMNS[path.name]
    optional = OPTIONAL_COLUMNS.get(path.name, ())
    missing = [column for column in expected if column not in frame.columns and column not in optional]
    extra = [column for column in frame.columns if column not in expected]
    if missing or extra:
        parts = ([f"lacks the column(s) {', '.join(missing)}"] if missing else []) + (
            [f"has unexpected column(s) {', '.join(map(str, extra))}"] if extra else []
        )
        raise ValueError(f"{path}: {' and '.join(parts)}; {_REDO}")
    if frame.empty:
        raise ValueError(f"{path}: holds no rows (only the header), but every run has some; {_REDO}")
    return frame


def _typed(frame: pd.DataFrame, file: str) -> pd.DataFrame:
    """Names as text, :data:`BOOL_COLUMNS` as bool, nullable integers as Int64, every other column numeric."""
    typed = frame.copy()
    for column in typed.columns:
        values = typed[column]
        if column in TEXT_COLUMNS:
            typed[column] = values.astype(str)
        elif column in BOOL_COLUMNS:
            typed[column] = _bool(values, f"{file}: {column}")
        else:
            typed[column] = _numbers(values, file, column)
            if column in NULLABLE_INTEGERS:
                typed[column] = typed[column].astype("Int64")
    return typed


def _numbers(values: pd.Series, file: str, column: str) -> pd.Series:
    """A numeric column; ValueError naming the file, the column, the line and the cell that is no number."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{file}: line {line + 2}, column {column}: {values.iloc[line]!r} is not a number; {_REDO}")
    return numbers


def _bool(values: pd.Series, where: str) -> pd.Series:
    if values.dtype == bool:
        return values
    mapped = values.map({True: True, False: False, "True": True, "False": False})
    if mapped.isna().any():
        bad = values[mapped.isna()].iloc[0]
        raise ValueError(f"{where}: {bad!r} is not True or False")
    return mapped.astype(bool)


def _with_phase(probes: pd.DataFrame) -> pd.DataFrame:
    """Each probe's :data:`PHASES` entry: its run's first probe, its last (if later), or one in between."""
    step = probes["probe_step"]
    by_run = step.groupby([probes[k] for k in RUN_KEYS])
    first, last = by_run.transform("min"), by_run.transform("max")
    phase = np.where(step == first, "init", np.where(step == last, "trained", "during"))
    return probes.assign(phase=pd.Series(phase, index=probes.index, dtype=object))

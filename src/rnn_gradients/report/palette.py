"""The report's one palette: a color per cell, a color and a marker per strategy, a marker per probe phase.

Cells use the color-blind-safe palette of Okabe & Ito (2008, "Color universal design") in the order of
:data:`~rnn_gradients.engine.cells.CELLS` (warm hues for the vanilla cells, cool ones for the gated cells).
Strategies use Paul Tol's color-blind-safe "muted" scheme (Tol 2021, "Color schemes", SRON/EPS/TN/09-002) in
config order; beyond ten strategies the colors repeat, and the markers, which repeat with another period, keep
every (color, marker) pair distinct. Every figure takes its colors from here, so a cell or a strategy has the same
color in every figure of one report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rnn_gradients.engine.cells import CELLS

OKABE_ITO = ("#D55E00", "#E69F00", "#CC79A7", "#0072B2", "#009E73")
CELL_COLORS: dict[str, str] = dict(zip(CELLS, OKABE_ITO, strict=True))
"""One color per cell of :data:`CELLS`, in that order."""
UNKNOWN_COLOR = "#7F7F7F"
"""A name the package does not know (e.g. a cell missing from :data:`CELLS`) is drawn gray."""
TOL_MUTED = (
    "#332288",
    "#CC6677",
    "#117733",
    "#DDCC77",
    "#88CCEE",
    "#882255",
    "#44AA99",
    "#999933",
    "#AA4499",
    "#888888",
)
STRATEGY_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
INK = "#333333"
"""Overlays that are not data of one cell or strategy: chance levels, the diagonal, divergence counts."""
GRID = "#E3E3E3"
SHADE = "#CC6677"
"""The region a bound forbids (theory figure)."""


@dataclass(frozen=True)
class Palette:
    """Colors of the cells and the strategies of one study, and the strategies' markers."""

    cells: dict[str, str]
    strategies: dict[str, str]
    markers: dict[str, str]

    @classmethod
    def of(cls, cells: Iterable[str], strategies: Sequence[str]) -> Palette:
        """The palette of a study with these cells and these strategies (in config order)."""
        strategies = list(dict.fromkeys(strategies))
        return cls(
            cells={cell: CELL_COLORS.get(cell, UNKNOWN_COLOR) for cell in cells},
            strategies={s: TOL_MUTED[i % len(TOL_MUTED)] for i, s in enumerate(strategies)},
            markers={s: STRATEGY_MARKERS[i % len(STRATEGY_MARKERS)] for i, s in enumerate(strategies)},
        )

    def hue(self, kind: str) -> dict[str, str]:
        """The colors of ``kind`` ("cell" or "strategy"), as seaborn's ``palette``."""
        return self.cells if kind == "cell" else self.strategies

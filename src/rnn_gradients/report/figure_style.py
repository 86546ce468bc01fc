"""How the report's figures look: the seaborn theme, plain-text log ticks, the legend below the panels, the
divergence mark and the size of a panel.

The theme turns matplotlib's math parser off (``text.parse_math``), so names from the tables (which may hold
``$``) are drawn as they are; the few labels with formulas turn it on for themselves (``parse_math=True``), and
log axes get plain-text tick labels (:func:`power_of_ten`) instead of math ones. Every number on a tick is written
in the current language (:func:`localized`: "0,5" in Spanish), with a typographic minus.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter

from rnn_gradients.report.format import decimal
from rnn_gradients.report.palette import GRID, INK

PAGE_WIDTH = 9.0
"""Inches: the widest figure the page shows at its natural size (96 px per inch)."""
_RC = {
    "text.parse_math": False,
    "axes.edgecolor": "#555555",
    "grid.color": GRID,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9.5,
    "legend.frameon": False,
}
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


@contextmanager
def theme() -> Iterator[None]:
    """The report's look (seaborn's white grid, the sizes of the page), with math parsing off."""
    with sns.axes_style("whitegrid"), mpl.rc_context(_RC):
        yield


class LocalizedFormatter(ScalarFormatter):
    """matplotlib's tick labels of a linear axis, with the current language's decimal separator."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return decimal(super().__call__(x, pos))


def localized(fig: Figure) -> Figure:
    """The figure with every linear axis (colorbars included) labelled by :class:`LocalizedFormatter`."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if type(axis.get_major_formatter()) is ScalarFormatter:
                axis.set_major_formatter(LocalizedFormatter())
    return fig


def themed(plot: Callable[..., Figure | None]) -> Callable[..., Figure | None]:
    """A plot function drawn in the report's theme, its tick labels in the current language."""

    @functools.wraps(plot)
    def themed(*args: Any, **kwargs: Any) -> Figure | None:
        with theme():
            fig = plot(*args, **kwargs)
            return localized(fig) if fig is not None else None

    return themed


def power_of_ten(value: float, _position: Any = None) -> str:
    """A tick label in plain text: "10⁻⁵", "2×10⁻²", "1.65×10⁻¹" (no math parser needed)."""
    if not (np.isfinite(value) and value > 0):
        return ""
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = value / 10.0**exponent
    power = "10" + str(exponent).translate(_SUPERSCRIPT)
    return power if math.isclose(mantissa, 1.0, rel_tol=1e-6) else f"{decimal(f'{mantissa:.3g}')}×{power}"


def log_axis(ax: Axes) -> None:
    """A log y axis labelled in plain text: decades, or 1-2-5 steps when the data span less than two decades."""
    ax.set_yscale("log")
    ax.autoscale_view()
    low, high = ax.get_ylim()
    subs = (1.0, 2.0, 5.0) if np.log10(high / low) < 2 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
    ax.yaxis.set_major_formatter(FuncFormatter(power_of_ten))
    ax.yaxis.set_minor_formatter(NullFormatter())


def legend_below(fig: Figure, entries: Sequence[tuple[str, Any]], *, ncol: int | None = None) -> None:
    """One legend below the panels (``entries``: label, handle), read left to right, row by row.

    As many columns as the width allows, the entries spread evenly over the rows; matplotlib fills a legend column
    by column, so the entries are handed over in that order.
    """
    if not entries:
        return
    fits = ncol or max(1, int(fig.get_figwidth() / 1.6))
    nrows = math.ceil(len(entries) / min(len(entries), fits))
    columns = math.ceil(len(entries) / nrows)
    rows = [entries[i : i + columns] for i in range(0, len(entries), columns)]
    ordered = [row[c] for c in range(columns) for row in rows if c < len(row)]
    labels, handles = zip(*ordered, strict=True)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=columns)


def line(color: str, marker: str | None = None, ls: str = "-", **kwargs: Any) -> Line2D:
    return Line2D([], [], color=color, marker=marker, ls=ls, **kwargs)


def diverged_handle() -> Line2D:
    return line(INK, "X", ls="", markersize=8)


def mark_diverged(ax: Axes, x: float, count: int, color: str) -> None:
    """An ✕ at the top of the panel above ``x``, with the number of diverged seeds beside it."""
    transform = ax.get_xaxis_transform()
    ax.plot([x], [0.97], marker="X", ms=8, color=color, mec="white", transform=transform, clip_on=False)
    ax.annotate(
        str(count),
        (x, 0.97),
        xytext=(5, 0),
        textcoords="offset points",
        xycoords=transform,
        va="center",
        fontsize=8.5,
        color=INK,
    )


def facet_size(ncols: int, height: float, *, width: float = 3.6) -> dict[str, float]:
    width = min(width, PAGE_WIDTH / max(ncols, 1))
    return {"height": height, "aspect": width / height}

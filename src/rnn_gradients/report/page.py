"""What a cell of ``report/report.qmd`` puts on the page: a figure, a Markdown paragraph or a table, or nothing.

Each function accepts None (the section has nothing to show; its text says why) and then displays nothing, so that
a figure or table cell never leaves an empty float behind, and a cross-reference can only point at what is there.
"""

from __future__ import annotations

import pandas as pd
from IPython.display import Image, Markdown, display
from matplotlib.figure import Figure

from rnn_gradients.report.figures import figure_png, png_width
from rnn_gradients.report.format import markdown_table


def show_figure(fig: Figure | None) -> None:
    """The figure as an embedded PNG at its natural size (96 px per inch)."""
    if fig is not None:
        png = figure_png(fig)
        display(Image(data=png, width=png_width(png)))


def show_text(text: str | None) -> None:
    """Markdown (already escaped where it quotes the tables)."""
    if text:
        display(Markdown(text))


def show_table(table: pd.DataFrame | None) -> None:
    """A table of display strings, as a Markdown pipe table."""
    if table is not None and not table.empty:
        display(Markdown(markdown_table(table)))

"""Every figure of the report as files to take away: SVG and PDF under ``results/figures/``, named by figure.

:data:`FIGURES` maps each figure's label in ``report/report.qmd`` to the call its cell makes (the tests check that
the two lists agree). :func:`write_figures` draws them from the study tables in every language asked for, as
:func:`~rnn_gradients.report.i18n.page_name` names a page: ``fig-flow.svg`` in English, ``fig-flow.es.svg`` in
Spanish. A figure the study cannot draw (its section says why on the page) has no file. The files carry no date,
so drawing the same tables twice writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from rnn_gradients.files import atomic_open
from rnn_gradients.report.figures import plot_activation_derivatives, plot_gradient_flow, plot_norm_traces, plot_theory
from rnn_gradients.report.i18n import language, page_name
from rnn_gradients.report.outcome_figures import plot_metric_vs_length, plot_solved_heatmap
from rnn_gradients.report.results import Results

FIGURES_DIR = "results/figures"
"""Where the pipeline writes the figures (beside ``results/report/``)."""
FORMATS = ("svg", "pdf")
FIGURES: dict[str, Callable[[Results], Figure | None]] = {
    "fig-derivatives": plot_activation_derivatives,
    "fig-flow": plot_gradient_flow,
    "fig-traces": plot_norm_traces,
    "fig-activations": lambda r: plot_metric_vs_length(r, r.comparison("activations")),
    "fig-normalization": lambda r: plot_metric_vs_length(r, r.comparison("normalization")),
    "fig-clipping": lambda r: plot_metric_vs_length(r, r.comparison("clipping")),
    "fig-gates": lambda r: plot_metric_vs_length(r, r.comparison("gates")),
    "fig-solved": plot_solved_heatmap,
    "fig-theory": plot_theory,
}
_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


def save_figure(fig: Figure, path: Path) -> None:
    """``fig`` written to ``path`` in the format of its suffix (atomically), on white, then closed."""
    fmt = path.suffix.lstrip(".")
    with plt.rc_context({"svg.hashsalt": path.stem, "svg.fonttype": "path"}), atomic_open(path, "wb") as handle:
        fig.savefig(
            handle,
            format=fmt,
            facecolor="white",
            bbox_inches="tight",
            pad_inches=0.08,
            metadata=_METADATA.get(fmt),
        )


def write_figures(tables_dir: Path, out_dir: Path, languages: Sequence[str]) -> list[Path]:
    """Draw every figure of :data:`FIGURES` from the tables in ``tables_dir`` into ``out_dir``, once per language
    and format; returns the files written."""
    results = Results.load(tables_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for lang in languages:
        with language(lang):
            for label, plot in FIGURES.items():
                fig = plot(results)
                if fig is None:
                    continue
                try:
                    for fmt in FORMATS:
                        path = out_dir / page_name(f"{label}.{fmt}", lang)
                        save_figure(fig, path)
                        written.append(path)
                finally:
                    plt.close(fig)
    return written

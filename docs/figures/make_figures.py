"""Regenerate the README's figure from the default study's tables: ``python docs/figures/make_figures.py``.

The figure is the report's gradient-flow figure (the control's probes) restricted to the adding problem at its
longest T, so that the README shows, in one pair of panels, the measurement the study is about. ``--tables`` reads
another study's tables (default: ``results/tables``).
"""

import argparse
import dataclasses
from pathlib import Path

from rnn_gradients.report.figures import figure_png, plot_gradient_flow
from rnn_gradients.report.results import Results

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=Path, default=ROOT / "results" / "tables")
    results = Results.load(parser.parse_args().tables)
    flow = results.gradient_flow
    fig = plot_gradient_flow(dataclasses.replace(results, gradient_flow=flow[flow["task"] == "adding"]))
    if fig is None:
        raise SystemExit("no finite gradient probe of the control on the adding problem: nothing to draw")
    out = Path(__file__).with_name("gradient_flow.png")
    out.write_bytes(figure_png(fig, dpi=110))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

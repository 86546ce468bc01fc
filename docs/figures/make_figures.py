"""Regenerate the README's figure from the default study's tables: ``python docs/figures/make_figures.py``.

The figure is the report's gradient-flow figure restricted to the adding problem at its longest T, so that the
README shows, in one panel pair, the measurement the study is about.
"""

from pathlib import Path

import pandas as pd

from rnn_gradients.report import figures as plotting

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    flow = pd.read_csv(ROOT / "results" / "tables" / "gradient_flow.csv")
    adding = flow[flow["task"] == "adding"]
    longest = adding[adding["seq_len"] == adding["seq_len"].max()]
    fig = plotting.plot_gradient_flow(longest, strategy="none")
    out = Path(__file__).with_name("gradient_flow.png")
    out.write_bytes(plotting.figure_png(fig, dpi=110))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

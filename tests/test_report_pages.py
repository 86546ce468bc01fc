"""The whole report (report/report.qmd, offline engine) rendered for studies it must survive (issue 12): a study of
gated cells only, a study whose every run diverged, a study without a control, and a study whose names are HTML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures_tables import DEFAULT_TASKS, write_study_tables

from rnn_gradients.report.render import render_report

pytestmark = pytest.mark.slow

REPORT = Path(__file__).resolve().parents[1] / "report" / "report.qmd"
IMG = "<img src=x onerror=alert(1)>"
LINK = "[t](javascript:alert(1))"
MATH = "$x$ @fig-flow | *s*"


def render(tmp_path: Path, **tables) -> str:
    write_study_tables(tmp_path / "tables", **tables)
    out = tmp_path / "report.html"
    assert render_report(REPORT, out, tmp_path / "tables", engine="offline") == "offline"
    return out.read_text(encoding="utf-8")


def test_a_study_of_gated_cells_only(tmp_path: Path) -> None:
    html = render(tmp_path, cells=("lstm", "gru"), strategies={"none": {}, "chrono": {"chrono": True}}, seeds=(0,))
    assert "The study has no vanilla cell, and both predictions are stated for vanilla cells only" in html
    assert 'id="tbl-theory"' not in html and 'href="#tbl-theory"' not in html
    assert 'id="fig-theory"' not in html and 'href="#fig-theory"' not in html
    assert 'id="fig-flow"' in html and 'id="fig-gates"' in html


def test_a_partial_grid_with_a_strategy_for_some_cells_and_a_ladder_per_task(tmp_path: Path) -> None:
    tasks = {
        "adding": {**DEFAULT_TASKS["adding"], "seq_lens": [20, 40, 80]},
        "temporal_order": {**DEFAULT_TASKS["temporal_order"], "seq_lens": [20]},
    }
    strategies = {"none": {}, "clip": {"clip_norm": 1.0}, "chrono": {"chrono": True, "cells": ["lstm", "gru"]}}
    html = render(tmp_path, tasks=tasks, cells=("rnn_tanh", "lstm", "gru"), strategies=strategies, seeds=(0, 1))
    strategies_rows = re.search(r'id="tbl-strategies".*?</table>', html, re.S).group(0)
    assert "<code>chrono</code>" in strategies_rows and "<code>lstm</code>, <code>gru</code>" in strategies_rows
    for label in ("fig-flow", "fig-clipping", "fig-gates", "fig-solved", "fig-theory"):
        assert f'id="{label}"' in html, label
    # the grid has no tanh runs under chrono: no row of the accuracy table claims one
    accuracy = re.search(r'id="tbl-accuracy".*?</table>', html, re.S).group(0)
    pairs = re.findall(r"<code>(\w+)</code></td>\s*<td[^>]*><code>(\w+)</code>", accuracy)
    assert ("lstm", "chrono") in pairs and ("rnn_tanh", "none") in pairs
    assert ("rnn_tanh", "chrono") not in pairs


def test_a_study_whose_every_run_diverged(tmp_path: Path) -> None:
    html = render(tmp_path, seeds=(0, 1), diverge=lambda *key: True, diverge_step=0)
    for absent in ("fig-flow", "fig-traces", "fig-theory", "fig-activations", "fig-clipping", "fig-gates"):
        assert f'id="{absent}"' not in html and f'href="#{absent}"' not in html
    assert 'id="fig-solved"' in html  # every square reads 0/2 and ✕2
    assert "there is no figure of the gradient flow" in html and "No run has a finite pre-clip gradient norm" in html
    assert "so there is nothing to check" in html


def test_a_study_without_a_control(tmp_path: Path) -> None:
    html = render(tmp_path, strategies={"ln": {"norm": "layer"}, "clip": {"clip_norm": 1.0}}, seeds=(0,))
    assert "The study has no control: no strategy leaves the network as it is" in html
    assert 'id="fig-flow"' not in html and 'id="fig-clipping"' in html and "rescued" not in html


def test_names_from_the_tables_reach_the_page_escaped(tmp_path: Path) -> None:
    html = render(
        tmp_path,
        tasks={LINK: DEFAULT_TASKS["adding"]},
        cells=("rnn_tanh", "lstm"),
        strategies={IMG: {}, MATH: {"clip_norm": 1.0}},
        seeds=(0,),
        diverge=None,
    )
    assert not re.search(r"<[^>]*\bonerror\s*=", html, re.I)
    assert not re.search(r"""href\s*=\s*["']?\s*javascript:""", html, re.I)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "[t](javascript:alert(1))" in html
    assert "$x$ @fig-flow | *s*" in html.replace("&#36;", "$")  # shown as written: no math, link, table cell
    assert html.count('id="fig-flow"') == 1

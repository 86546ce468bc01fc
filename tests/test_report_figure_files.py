"""Every report figure as files to take away: SVG and PDF per figure and language, the same list as the report's,
written by ``python -m rnn_gradients figures`` and by the workflow's ``figures`` rule."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from fixtures_tables import write_study_tables
from workflow_runner import TINY, new_study, run_snakemake

from rnn_gradients.cli import main
from rnn_gradients.report.figure_files import FIGURES, FIGURES_DIR, write_figures

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "report" / "report.qmd"


def test_the_figures_are_the_reports_figures_in_its_order() -> None:
    labels = re.findall(r"^#\| label: (fig-[\w-]+)$", REPORT.read_text(encoding="utf-8"), re.M)
    assert list(FIGURES) == labels


def test_every_figure_in_every_language_as_svg_and_pdf(tmp_path: Path) -> None:
    strategies = {"baseline": {}, "clip": {"clip_norm": 1.0}, "layer_norm": {"norm": "layer"}}
    tables = write_study_tables(tmp_path / "tables", strategies=strategies)  # the full grid: every figure is drawn
    out = tmp_path / "figures"
    assert main(["figures", "--tables", str(tables), "--out-dir", str(out), "--languages", "en", "es"]) == 0
    expected = {f"{label}{lang}.{fmt}" for label in FIGURES for lang in ("", ".es") for fmt in ("svg", "pdf")}
    assert {path.name for path in out.iterdir()} == expected
    for label in FIGURES:
        svg = ET.parse(out / f"{label}.svg").getroot()
        assert svg.tag == "{http://www.w3.org/2000/svg}svg" and float(svg.get("width", "0pt").rstrip("pt")) > 100
        assert (out / f"{label}.pdf").read_bytes().startswith(b"%PDF-")
    # the labels follow the language (text is drawn as paths, so compare the Spanish and English files)
    assert (out / "fig-solved.svg").read_bytes() != (out / "fig-solved.es.svg").read_bytes()
    # drawn again from the same tables: the same bytes (no date, no random ids)
    again = write_figures(tables, tmp_path / "again", ["en"])
    assert {path.name for path in again} == {name for name in expected if ".es." not in name}
    for path in again:
        assert path.read_bytes() == (out / path.name).read_bytes(), path.name


def test_a_figure_the_study_cannot_draw_has_no_file(tmp_path: Path) -> None:
    tables = write_study_tables(tmp_path / "tables", cells=("lstm",), strategies={"baseline": {}})
    written = {path.name for path in write_figures(tables, tmp_path / "figures", ["en"])}
    assert "fig-theory.svg" not in written and "fig-normalization.svg" not in written  # no vanilla cell, no norm
    assert "fig-solved.svg" in written and "fig-flow.pdf" in written


def test_the_workflow_builds_the_figures_with_the_report(tmp_path: Path) -> None:
    workdir = new_study(tmp_path, TINY)
    done = run_snakemake(workdir, "--dry-run")  # the default target: everything, the figures included
    assert done.returncode == 0, done.stdout[-3000:]
    job = done.stdout[done.stdout.index("rule figures:") :].split("\n\n")[0]
    assert re.search(rf"output: {FIGURES_DIR}$", job, re.M), job
    assert "results/tables/evaluations.csv" in job  # drawn from the tables, redrawn when they change

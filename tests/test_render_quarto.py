"""The report rendered by the real Quarto CLI, and the same report from both engines, in every language.

These tests need `quarto` on PATH (and papermill, which Quarto's Jupyter engine uses to set the report's
parameters). Where Quarto is missing they skip, saying so; under CI (`CI=true`) they fail instead, since CI
must render with Quarto (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fixtures_tables import write_study_tables
from workflow_runner import ROOT, TINY, run_snakemake

from rnn_gradients.report.render import RenderError, quarto_missing, render_report

REPORT = ROOT / "report" / "report.qmd"
SECTIONS = {
    "en": (
        "1 Recurrent networks for sequential data", "2 Backpropagation through time", "3 Vanishing gradients",
        "4 Exploding gradients", "5 Remedies", "5.1 Activation functions", "5.2 Normalization",
        "5.3 Gradient clipping", "5.4 Gated cells: LSTM and GRU", "5.5 Every combination", "5.6 Explore every run",
        "6 Theory check", "7 Conclusions", "8 Reproducibility",
    ),
    "es": (
        "1 Redes neuronales recurrentes para datos secuenciales", "2 Retropropagación a través del tiempo",
        "3 Desvanecimiento del gradiente", "4 Estallido del gradiente", "5 Soluciones", "5.1 Funciones de activación",
        "5.2 Normalización", "5.3 Clipping de gradientes", "5.4 Celdas con puertas: LSTM y GRU",
        "5.5 Todas las combinaciones", "5.6 Explorar cada ejecución", "6 Comprobación de la teoría", "7 Conclusiones",
        "8 Reproducibilidad",
    ),
}  # fmt: skip
# Quarto's own words for a figure, a table and a section, and the appendix's label of the renderer.
WORDS = {"en": ("Figure", "Table", "Section", "Renderer"), "es": ("Figura", "Tabla", "Sección", "Motor de renderizado")}
LANGUAGES = tuple(SECTIONS)
# Anything the browser would fetch from elsewhere: scripts, styles, images, frames, CSS imports and url()s.
EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*\b(?:src|href|data)\s*=\s*[\"']?"
    r"(?:[a-z][a-z0-9+.-]*:)?//|@import\s+(?:url\()?[\"']?(?:[a-z]+:)?//|url\(\s*[\"']?(?:https?:)?//",
    re.I,
)


@pytest.fixture(scope="module")
def quarto() -> None:
    missing = quarto_missing()
    if missing is None:
        return
    reason = f"Quarto cannot render here: {missing} (see the README, 'The report and Quarto')"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must render the report with Quarto (.ci/run installs it)")
    pytest.skip(reason)


def text_of(fragment: str) -> str:
    """The text a reader sees in an HTML fragment, whitespace collapsed (no-break spaces included)."""
    return " ".join(re.sub(r"<[^>]+>", "", fragment).replace("&amp;", "&").split())


def page_facts(html: str) -> dict[str, object]:
    """What a reader gets from a rendered report, in a form both engines' pages share."""
    body = html[html.index("<body") :]
    headings = [text_of(h) for h in re.findall(r"<h[12][^>]*data-number=[^>]*>(.*?)</h[12]>", body, re.S)]
    floats = {}
    caption = re.compile(r'<figcaption\b[^>]*>(.*?)</figcaption>|<div class="table-caption">(.*?)</div>', re.S)
    for found in re.finditer(r'<(?:div|figure)\b[^>]*\bid="((?:fig|tbl)-[^"]+)"', body):
        match = caption.search(body, found.end())
        floats[found.group(1)] = text_of(match.group(1) or match.group(2))
    references = []
    for attributes, label in re.findall(r"<a\b([^>]*)>(.*?)</a>", body, re.S):
        target = re.search(r'\bhref="#((?:fig|tbl|sec)-[^"]+)"', attributes)
        if target and 'id="toc-' not in attributes:  # the table of contents is not a cross-reference
            references.append((target.group(1), text_of(label)))
    images = re.findall(r'<img\b[^>]*\bsrc="data:image/png;base64,', body)
    return {"headings": headings, "floats": floats, "references": references, "images": len(images)}


def check_quarto_page(html: str, lang: str = "en") -> dict[str, object]:
    figure, table, section, renderer = WORDS[lang]
    assert re.search(r'<meta name="generator" content="quarto-1\.\d+', html)
    assert re.search(rf'<html [^>]*\blang="{lang}"', html)
    facts = page_facts(html)
    assert facts["headings"] == list(SECTIONS[lang])
    figures = [label for label in facts["floats"] if label.startswith("fig-")]
    assert figures and facts["images"] == len(figures)  # every figure embedded, one image each
    for label in figures:
        start = html.index(f'id="{label}"')
        assert re.match(r'[^>]*>\s*<figure\b.*?<img\b[^>]*src="data:image/png;base64,', html[start:], re.S), label
    for number, (label, caption) in enumerate(((k, v) for k, v in facts["floats"].items() if k in figures), 1):
        assert caption.startswith(f"{figure} {number}: "), (label, caption)
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    assert facts["references"] and all(target in ids for target, _ in facts["references"])
    assert all(re.fullmatch(rf"({figure}|{table}|{section}) \d+(\.\d+)*", text) for _, text in facts["references"])
    assert not re.search(r"\?@[a-z]+-", html) and "quarto-unresolved-ref" not in html  # an unknown reference
    shown = re.sub(r"<script\b.*?</script>", "", html, flags=re.S)  # the explorer's JavaScript names errors
    for marker in ("Traceback", "Error:", "Exception", 'class="cell-output cell-output-stderr"'):
        assert marker not in shown
    assert not EXTERNAL.search(html), EXTERNAL.search(html).group(0)
    assert f"<li><strong>{renderer}:</strong> quarto.</li>" in html
    return facts


@pytest.fixture(scope="module")
def tiny_tables(quarto: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tables of the tiny study (tests/configs/tiny.yaml), run through the real pipeline."""
    workdir = tmp_path_factory.mktemp("tiny-study")
    done = run_snakemake(workdir, "tables", "--configfile", str(TINY))  # --configfile takes every word after it
    assert done.returncode == 0, done.stdout[-5000:]
    return workdir / "results" / "tables"


@pytest.mark.slow
@pytest.mark.parametrize("lang", LANGUAGES)
def test_quarto_renders_the_tiny_studys_report(tiny_tables: Path, tmp_path: Path, lang: str) -> None:
    quarto_page, offline_page = tmp_path / "quarto.html", tmp_path / "offline.html"
    assert render_report(REPORT, quarto_page, tiny_tables, engine="quarto", lang=lang) == "quarto"
    html = quarto_page.read_text(encoding="utf-8")
    facts = check_quarto_page(html, lang)
    assert f"<code>{tiny_tables}</code>.</li>" in html
    # the tiny study has neither normalization nor a second vanilla cell: those figures are left out
    assert list(facts["floats"]) == [
        "tbl-tasks", "fig-derivatives", "fig-flow", "tbl-decay", "fig-traces", "tbl-strategies", "fig-clipping",
        "fig-gates", "fig-solved", "fig-theory", "tbl-theory", "tbl-accuracy", "tbl-gradnorms",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quarto.html"]  # nothing of Quarto's left beside it

    render_report(REPORT, offline_page, tiny_tables, engine="offline", lang=lang)
    assert page_facts(offline_page.read_text(encoding="utf-8")) == facts


@pytest.mark.parametrize("lang", LANGUAGES)
def test_both_engines_render_the_same_report_from_the_same_tables(quarto: None, tmp_path: Path, lang: str) -> None:
    tables = write_study_tables(tmp_path / "tables")  # the full grid: every figure of the report is drawn
    pages = {}
    for engine in ("quarto", "offline"):
        render_report(REPORT, tmp_path / f"{engine}.html", tables, engine=engine, lang=lang)
        pages[engine] = (tmp_path / f"{engine}.html").read_text(encoding="utf-8")
    facts = check_quarto_page(pages["quarto"], lang)
    assert len([label for label in facts["floats"] if label.startswith("fig-")]) == 9
    assert len([label for label in facts["floats"] if label.startswith("tbl-")]) == 6  # no train/test gaps table
    offline = page_facts(pages["offline"])
    for key in ("headings", "floats", "references", "images"):
        assert offline[key] == facts[key], key


QMD = """---
title: Parameters
format:
  html:
    number-sections: true
    html-math-method: mathml
execute:
  echo: false
---

```{python}
#| tags: [parameters]
#| include: false
tables = "default"
renderer = "default"
```

# Values {#sec-values}

```{python}
from IPython.display import Markdown, display
display(Markdown(f"tables=`{tables}` renderer=`{renderer}`; see @sec-values."))
```
"""


def test_quarto_gets_the_parameters_verbatim_and_a_failing_cell_stops_it(quarto: None, tmp_path: Path) -> None:
    qmd = tmp_path / "report" / "doc.qmd"
    qmd.parent.mkdir()
    qmd.write_text(QMD, encoding="utf-8")
    tables = tmp_path / "tables: a #b"  # unquoted, YAML would read a mapping and a comment
    tables.mkdir()
    out = tmp_path / "out" / "doc.html"
    render_report(qmd, out, tables, engine="quarto")
    html = out.read_text(encoding="utf-8")
    assert f"tables=<code>{tables}</code> renderer=<code>quarto</code>" in html
    assert re.search(r'<a href="#sec-values" class="quarto-xref">Section(\xa0|&nbsp;)1</a>', html)
    assert sorted(p.name for p in qmd.parent.iterdir()) == ["doc.qmd"]  # Quarto worked on a copy

    qmd.write_text(QMD.replace("from IPython", "1 / 0\nfrom IPython"), encoding="utf-8")
    with pytest.raises(RenderError, match="ZeroDivisionError"):
        render_report(qmd, tmp_path / "failed.html", tables, engine="quarto")
    assert not (tmp_path / "failed.html").exists()

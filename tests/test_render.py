"""The offline renderer on real qmd sources: real kernel, real pandoc and its Lua filter, one self-contained page."""

from __future__ import annotations

import importlib.util
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fixtures_tables import write_study_tables

from rnn_gradients.report.render import (
    CROSSREF_FILTER,
    PAGE_CSS,
    RenderError,
    cell_options,
    html_options,
    render_report,
    split_front_matter,
)

REPORT = Path(__file__).resolve().parents[1] / "report" / "report.qmd"
EXTERNAL = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)
NBSP = "\u00a0"

TINY = r"""---
title: "Tiny *report*"
date: 2024-01-02
lang: en
format:
  html:
    toc: true
    number-sections: true
    html-math-method: mathml
execute:
  echo: false
---

```{python}
#| tags: [parameters]
#| include: false
tables = "default tables"
renderer = "default renderer"
```

# Setup {#sec-setup}

The recurrence $h_t = \tanh(W_{hh} h_{t-1})$ and, displayed,

$$
\frac{\partial L}{\partial h_k} = \frac{\partial L}{\partial h_t} \prod_{i=k+1}^{t} J_i
$$

```{python}
from IPython.display import Image, Markdown, display
from matplotlib.figure import Figure
from rnn_gradients.report.figures import figure_png
SECRET_CODE_MARKER = 1
```

## Details {#sec-details}

Details of @sec-setup.

# Results {#sec-results}

@fig-line shows a line ([-@fig-line] is its number), [@sec-details] the details; `@fig-line` stays code and
mail to a@fig-line.org stays text.

```{python}
#| label: fig-line
#| fig-cap: "A line through $y = x^2$, as in @tbl-env."
fig = Figure(figsize=(3, 2))
fig.subplots().plot([0, 1, 2], [0, 1, 4])
display(Image(data=figure_png(fig, dpi=60), width=288))
```

```{python}
#| label: tbl-env
#| tbl-cap: "Where the cells looked."
display(Markdown(
    "| renderer | tables |\n|---|---|\n"
    f"| {renderer} | {tables} |\n\n"
    "Generated text citing @fig-line."
))
```

```{python}
#| include: false
print("HIDDEN_OUTPUT_MARKER")
```

```{python}
print("visible output")
```

See @tbl-env.
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_front_matter_and_cell_options_parse() -> None:
    front, front_text, body = split_front_matter("---\ntitle: T\nexecute:\n  echo: false\n---\n# A\n")
    assert front == {"title": "T", "execute": {"echo": False}} and body == "# A\n"
    assert front_text == "---\ntitle: T\nexecute:\n  echo: false\n---\n"
    assert split_front_matter("# no front matter\n") == ({}, "", "# no front matter\n")
    options, code = cell_options('#| label: fig-a\n#| fig-cap: "x: y"\n#| echo: true\nprint(1)\n')
    assert options == {"label": "fig-a", "fig-cap": "x: y", "echo": True} and code == "print(1)"
    with pytest.raises(ValueError, match="cell options"):
        cell_options("#| just text\nx = 1")
    assert html_options({"toc": False, "format": {"html": {"toc": True}}})["toc"] is True


def test_the_filter_and_the_page_css_are_package_data() -> None:
    assert CROSSREF_FILTER.is_file() and PAGE_CSS.is_file()


def test_offline_render_of_a_small_document(tmp_path: Path) -> None:
    qmd = write(tmp_path / "doc" / "tiny.qmd", TINY)
    tables = (tmp_path / "my tables: 1").resolve()
    tables.mkdir()
    out = tmp_path / "out" / "tiny.html"
    assert render_report(qmd, out, tables, engine="offline") == "offline"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.html"]
    html = out.read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 1
    assert re.search(
        rf'<figure id="fig-line">.*<figcaption><span class="figure-number">Figure{NBSP}1:</span> A line through',
        html,
        re.S,
    )
    assert f'<a href="#fig-line">Figure{NBSP}1</a> shows' in html and '(<a href="#fig-line">1</a> is' in html
    assert f'<a href="#sec-details">Section{NBSP}1.1</a> the details' in html
    assert f'Details of <a href="#sec-setup">Section{NBSP}1</a>.' in html
    assert f'as in <a href="#tbl-env">Table{NBSP}1</a>.</figcaption>' in html  # a reference inside a caption
    assert f'Generated text citing <a href="#fig-line">Figure{NBSP}1</a>.' in html  # ... and in a cell's output
    assert "<code>@fig-line</code>" in html and "mail to a@fig-line.org stays" in html
    assert f'<span class="table-number">Table{NBSP}1:</span> Where the cells looked.' in html
    # the parameters: injected after the `parameters` cell, the values verbatim
    assert f"<td>offline</td>\n<td>{tables}</td>" in html and "default" not in html
    assert html.count("<math") >= 3 and 'display="block"' in html
    assert "SECRET_CODE_MARKER" not in html and "HIDDEN_OUTPUT_MARKER" not in html
    assert "visible output" in html
    assert '<nav id="TOC"' in html and '<h2 id="toc-title">Table of contents</h2>' in html
    assert 'class="header-section-number">2</span>' in html
    assert "<title>Tiny report</title>" in html and '<html xmlns="http://www.w3.org/1999/xhtml" lang="en"' in html
    assert '<p class="date">2024-01-02</p>' in html
    assert not EXTERNAL.search(html)


def test_a_render_on_another_thread_than_the_main_one(tmp_path: Path) -> None:
    """A library caller may render from a worker thread, where Python refuses to install signal handlers."""
    qmd = write(tmp_path / "tiny.qmd", TINY)
    out = tmp_path / "tiny.html"
    with ThreadPoolExecutor(max_workers=1) as pool:
        engine = pool.submit(render_report, qmd, out, tmp_path, engine="offline").result()
    assert engine == "offline"
    assert "<title>Tiny report</title>" in out.read_text(encoding="utf-8")


def test_the_words_follow_the_documents_language(tmp_path: Path) -> None:
    spanish = TINY.replace("lang: en", "lang: es").replace("date: 2024-01-02", "date: today")
    qmd = write(tmp_path / "es.qmd", spanish)
    out = tmp_path / "es.html"
    render_report(qmd, out, tmp_path, engine="offline")
    html = out.read_text(encoding="utf-8")
    assert f'<a href="#fig-line">Figura{NBSP}1</a>' in html and f'<a href="#tbl-env">Tabla{NBSP}1</a>' in html
    assert f'<a href="#sec-details">Sección{NBSP}1.1</a>' in html
    assert f"Figura{NBSP}1:</span>" in html and f"Tabla{NBSP}1:</span>" in html
    assert '<h2 id="toc-title">Tabla de contenidos</h2>' in html
    assert re.search(r'<p class="date">\d{4}-\d\d-\d\d</p>', html)  # "today", resolved


LANGUAGES_FILTER = Path(__file__).resolve().parents[1] / "report" / "languages.lua"
BILINGUAL = """---
title: "[Title]{.lang-en}[Título]{.lang-es}"
lang: en
filters:
  - at: pre-ast
    path: languages.lua
format:
  html:
    number-sections: true
execute:
  echo: false
---

```{python}
#| tags: [parameters]
#| include: false
lang = "en"
```

# [Setup]{.lang-en}[Preparación]{.lang-es} {#sec-setup}

::: lang-en
English prose with [Deutsch]{lang=de}, see @tbl-env.
:::

::: lang-es
Texto en español, véase @tbl-env.
:::

```{python}
#| label: tbl-env
#| tbl-cap: "[A table]{.lang-en}[Una tabla]{.lang-es}"
from IPython.display import Markdown, display
display(Markdown(f"[]{{.report-language lang={lang}}}\\n\\n| a |\\n|---|\\n| 1 |"))
```
"""


@pytest.mark.parametrize(
    ("lang", "kept", "dropped"),
    [
        ("en", ["<title>Title</title>", "Setup</h1>", '<span lang="de">Deutsch</span>', "Table&#160;1", "A table"],
         ["Título", "Preparación", "español", "Una tabla"]),
        ("es", ["<title>Título</title>", "Preparación</h1>", "Texto en español, véase", "Tabla&#160;1", "Una tabla"],
         ["Title", "Setup", "English", "A table", "report-language"]),
    ],
)  # fmt: skip
def test_the_language_filter_keeps_the_pages_language(tmp_path: Path, lang: str, kept: list, dropped: list) -> None:
    qmd = write(tmp_path / "doc.qmd", BILINGUAL)
    (tmp_path / "languages.lua").write_bytes(LANGUAGES_FILTER.read_bytes())
    render_report(qmd, tmp_path / "doc.html", tmp_path, engine="offline", lang=lang)
    html = (tmp_path / "doc.html").read_text(encoding="utf-8").replace(NBSP, "&#160;")
    assert [text for text in kept if text not in html] == []
    assert [text for text in dropped if text in html.split("<body", 1)[1]] == []


def test_a_page_whose_cells_wrote_another_language_is_refused(tmp_path: Path) -> None:
    qmd = write(tmp_path / "doc.qmd", BILINGUAL.replace("lang={lang}", "lang=en"))
    (tmp_path / "languages.lua").write_bytes(LANGUAGES_FILTER.read_bytes())
    message = "the report's cells wrote in 'en' but the document's language is 'es'"
    with pytest.raises(RenderError, match=message):
        render_report(qmd, tmp_path / "doc.html", tmp_path, engine="offline", lang="es")
    assert not (tmp_path / "doc.html").exists()


def test_the_offline_engine_runs_only_lua_filters(tmp_path: Path) -> None:
    qmd = write(tmp_path / "doc.qmd", "---\nfilters: [quarto, other.py]\n---\n\n# A\n")
    with pytest.raises(ValueError, match="runs Lua filters given by path"):
        render_report(qmd, tmp_path / "doc.html", tmp_path, engine="offline")
    missing = write(tmp_path / "missing.qmd", "---\nfilters: [nowhere.lua]\n---\n\n# A\n")
    with pytest.raises(FileNotFoundError, match="nowhere.lua"):
        render_report(missing, tmp_path / "doc.html", tmp_path, engine="offline")


def test_a_failing_cell_stops_the_render_with_its_error(tmp_path: Path) -> None:
    source = TINY.replace("fig.subplots().plot([0, 1, 2], [0, 1, 4])", "1 / 0")
    qmd = write(tmp_path / "tiny.qmd", source)
    out = tmp_path / "tiny.html"
    error = r"code cell 3 \(fig-line\) raised ZeroDivisionError: division by zero"  # counted as in the source
    with pytest.raises(RenderError, match=error) as failure:
        render_report(qmd, out, tmp_path, engine="offline")
    assert "1 / 0" in str(failure.value)
    assert list(tmp_path.iterdir()) == [qmd]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("As @fig-nowhere shows.\n", r"unresolved cross-references: @fig-nowhere \(known labels: sec-a\)"),
        ("As @sec-a and @tbl-none show.\n", "unresolved cross-references: @tbl-none"),
        ("# Again {#sec-a}\n", "label 'sec-a' is used twice"),
    ],
    ids=["figure", "table", "duplicate"],
)
def test_an_unknown_or_duplicate_label_stops_the_render(tmp_path: Path, body: str, error: str) -> None:
    qmd = write(tmp_path / "refs.qmd", f"---\ntitle: R\n---\n\n# A {{#sec-a}}\n\n{body}")
    with pytest.raises(RenderError, match=error):
        render_report(qmd, tmp_path / "refs.html", tmp_path, engine="offline")
    assert not (tmp_path / "refs.html").exists()


def test_a_citation_that_is_no_cross_reference_is_left_alone(tmp_path: Path) -> None:
    qmd = write(tmp_path / "cite.qmd", "---\ntitle: C\n---\n\nAs @smith2020 wrote.\n")
    render_report(qmd, tmp_path / "cite.html", tmp_path, engine="offline")
    html = (tmp_path / "cite.html").read_text(encoding="utf-8")
    assert 'As <span class="citation" data-cites="smith2020">@smith2020</span> wrote.' in html


def test_what_the_offline_engine_does_not_implement_is_refused(tmp_path: Path) -> None:
    mathjax = write(tmp_path / "mj.qmd", "---\nformat:\n  html:\n    html-math-method: mathjax\n---\n\n$x$\n")
    with pytest.raises(ValueError, match="mathjax"):
        render_report(mathjax, tmp_path / "mj.html", tmp_path, engine="offline")
    layout = write(tmp_path / "cols.qmd", "```{python}\n#| layout-ncol: 2\n1\n```\n")
    with pytest.raises(ValueError, match="does not implement the cell option.s. layout-ncol"):
        render_report(layout, tmp_path / "cols.html", tmp_path, engine="offline")
    assert not (tmp_path / "mj.html").exists() and not (tmp_path / "cols.html").exists()


def test_a_document_without_parameters_cell_renders(tmp_path: Path) -> None:
    qmd = write(tmp_path / "plain.qmd", "# Plain {#sec-plain}\n\n```{python}\nprint(6 * 7)\n```\n\nSee @sec-plain.\n")
    render_report(qmd, tmp_path / "plain.html", tmp_path, engine="offline")
    html = (tmp_path / "plain.html").read_text(encoding="utf-8")
    assert "42" in html and '<a href="#sec-plain">Plain</a>' in html  # unnumbered: the section's title


def test_auto_renders_offline_with_a_warning_when_quarto_lacks_papermill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    which, spec = shutil.which, importlib.util.find_spec
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/quarto/bin/quarto" if name == "quarto" else which(name))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "papermill" else spec(name, *a))
    qmd = write(tmp_path / "q.qmd", "# Q\n")
    with pytest.warns(UserWarning, match="rendering offline: papermill is not installed"):
        assert render_report(qmd, tmp_path / "q.html", tmp_path, engine="auto") == "offline"
    with pytest.raises(FileNotFoundError, match="papermill is not installed"):
        render_report(qmd, tmp_path / "q.html", tmp_path, engine="quarto")


@pytest.mark.skipif(shutil.which("quarto") is not None, reason="quarto is installed here")
def test_engine_quarto_without_quarto_says_so(tmp_path: Path) -> None:
    qmd = write(tmp_path / "q.qmd", "# Q\n")
    with pytest.raises(FileNotFoundError, match="quarto is not on PATH"):
        render_report(qmd, tmp_path / "q.html", tmp_path, engine="quarto")
    assert render_report(qmd, tmp_path / "q.html", tmp_path, engine="auto") == "offline"


SECTIONS = (
    "Recurrent networks for sequential data", "Backpropagation through time", "Vanishing gradients",
    "Exploding gradients", "Remedies", "Activation functions", "Normalization", "Gradient clipping",
    "Gated cells: LSTM and GRU", "Every combination", "Theory check", "Conclusions", "Reproducibility",
)  # fmt: skip
FIGURES = (
    "fig-derivatives", "fig-flow", "fig-traces", "fig-activations", "fig-normalization", "fig-clipping",
    "fig-gates", "fig-solved", "fig-theory",
)  # fmt: skip
TABLES = ("tbl-tasks", "tbl-decay", "tbl-strategies", "tbl-accuracy", "tbl-gradnorms")


def table_rows(html: str, label: str) -> list[list[str]]:
    """The header and body rows of one numbered table of the page, as the text of their cells."""
    start = html.index(f'<div id="{label}" class="table-float">')
    body = html[start : html.index("</table>", start)]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in rows
    ]


def check_clean_page(html: str) -> None:
    for heading in SECTIONS:
        assert re.search(rf'<span class="header-section-number">[\d.]+</span>\s*{re.escape(heading)}</h[12]>', html)
    shown = re.sub(r"<script\b.*?</script>", "", html, flags=re.S)  # the explorer's JavaScript names errors
    for marker in ("Traceback", "Error:", "Exception", "nan %", 'class="cell-output"', "?@", "± –"):
        assert marker not in shown
    assert not EXTERNAL.search(html)
    assert "<li><strong>Renderer:</strong> offline.</li>" in html


def test_real_report_on_a_full_grid(tmp_path: Path) -> None:
    # The pipeline's study_config.json spells out every key of every bundle, defaults included.
    strategies = {
        "baseline": {"clip_norm": None, "norm": "none", "init": "default", "chrono": False},
        "clip": {"clip_norm": 1.0, "clip_value": None, "spectral_norm": None},
        "layer_norm": {"norm": "layer", "init": "default"},
    }
    tables = write_study_tables(tmp_path / "tables", strategies=strategies)
    out = tmp_path / "report.html"
    assert render_report(REPORT, out, tables, engine="offline") == "offline"
    html = out.read_text(encoding="utf-8")
    check_clean_page(html)
    assert html.count('src="data:image/png;base64,') == len(FIGURES)
    for number, label in enumerate(FIGURES, start=1):
        assert re.search(rf'<figure id="{label}">.*?Figure\s+{number}:</span>', html, re.S), label
    for label in TABLES:
        assert f'<div id="{label}" class="table-float">' in html
    assert "<code>rnn_relu</code> under <code>baseline</code> on adding, T = 40: seed 1 at step 37" in html
    assert "2/2" in html and "This grid has no" not in html
    text = re.sub(r"<[^>]+>", "", html)
    assert "Total training compute: " in text and "adding: [20, 40]" in text
    config_yaml = text[text.index("shown as YAML") :]
    assert "baseline: {}" in config_yaml and "clip: {clip_norm: 1.0}" in config_yaml
    assert "layer_norm: {norm: layer}" in config_yaml and "null" not in config_yaml and "chrono" not in config_yaml

    decay = table_rows(html, "tbl-decay")
    assert decay[0] == ["task", "T", "cell", "strategy", "at initialization", "after training"]
    assert len(decay) == 1 + 2 * 2 * 3 * 3
    rate = r"[+−]\d\.\d{3}"  # the seeds' mean, then their range
    assert all(re.fullmatch(rf"{rate}(?: \[{rate}, {rate}\])?", value) for row in decay[1:] for value in row[4:])
    strategies_table = table_rows(html, "tbl-strategies")
    assert strategies_table[0] == ["strategy", "clip_norm", "norm"]
    assert strategies_table[1:] == [["baseline", "", ""], ["clip", "1.0", ""], ["layer_norm", "", "layer"]]

    accuracy = table_rows(html, "tbl-accuracy")
    assert accuracy[0] == [
        "task", "T", "cell", "strategy", "mean ± sd", "range", "solved", "solve rate, 75 % interval", "verdict",
        "diverged",
    ]  # fmt: skip
    by_run = {tuple(row[:4]): row[4:] for row in accuracy[1:]}
    # One of the two seeds diverged: the one finite metric has no spread to show.
    mean, spread, solved, interval, verdict, diverged = by_run[("adding", "40", "rnn_relu", "baseline")]
    assert "±" not in mean and "–" not in spread and (solved, diverged) == ("0/2", "1/2")
    assert (interval, verdict) == ("0.00–0.40", "failed")
    assert re.fullmatch(r"\S+ ± \S+", by_run[("adding", "40", "rnn_tanh", "baseline")][0])


def test_real_report_adapts_to_a_grid_without_remedies(tmp_path: Path) -> None:
    tables = write_study_tables(
        tmp_path / "tables",
        cells=("rnn_sigmoid", "my_cell"),
        strategies={"plain": {}, "scaled": {"init": "scaled", "spectral_norm": 1.5}},
        seeds=(0,),
        diverge=("adding", 40, "rnn_sigmoid", "scaled", 0),
    )
    out = tmp_path / "report.html"
    render_report(REPORT, out, tables, engine="offline")
    html = out.read_text(encoding="utf-8")
    check_clean_page(html)
    for absent in (
        "no <code>rnn_relu</code> cell",
        "no normalization strategy",
        "no clipping strategy",
        "no gated cell",
    ):
        assert f"This grid has {absent}" in html or f"This grid cannot compare activations: it has {absent}" in html
    present = ("fig-derivatives", "fig-flow", "fig-traces", "fig-solved", "fig-theory")
    assert html.count('src="data:image/png;base64,') == len(present)
    for label in ("fig-activations", "fig-normalization", "fig-clipping", "fig-gates"):
        assert f'id="{label}"' not in html
    assert "for the strategies with the scaled recurrent initialization (<code>scaled</code>)." in html
    assert "hold Pascanu’s bound" in html  # pandoc's smart quotes
    accuracy = table_rows(html, "tbl-accuracy")
    assert accuracy[0] == [
        "task", "T", "cell", "strategy", "value", "solved", "solve rate, 75 % interval", "verdict", "diverged",
    ]  # fmt: skip
    assert not any("±" in value for row in accuracy for value in row)

"""The report in Spanish beside the English one, from the same tables: Spanish headings, captions, table headers,
sentences and figures, decimal commas, no English left over, and each page linking to the other."""

from __future__ import annotations

import html
import json
import re
import string
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from fixtures_tables import make_study_tables, write_study_tables
from matplotlib.figure import Figure
from matplotlib.text import Text
from test_render_quarto import SECTIONS, page_facts, text_of
from test_report_results import results_of

from rnn_gradients.report.figures import plot_activation_derivatives, plot_gradient_flow, plot_norm_traces, plot_theory
from rnn_gradients.report.i18n import catalogue, language
from rnn_gradients.report.outcome_figures import plot_metric_vs_length, plot_solved_heatmap
from rnn_gradients.report.provenance import machine_description
from rnn_gradients.report.render import render_report
from rnn_gradients.report.results import Results
from rnn_gradients.report.text import overview_sentence

REPORT = Path(__file__).resolve().parents[1] / "report" / "report.qmd"
ENGLISH_WORDS = re.compile(r"\b(?:the|and|of|with|without|which|is|are|per|runs?|seeds?)\b")


def english_only(prefix: str = "") -> set[str]:
    """The literal pieces (between placeholders) of the English messages under ``prefix`` that no Spanish message
    contains: words that must not show on a Spanish page."""
    spanish = " ".join(str(m) for m in catalogue("es").values())
    pieces = set()
    for key, message in catalogue("en").items():
        if key.startswith(prefix) and not key.startswith(("language.", "number.", "list.")):
            for text in message.values() if isinstance(message, dict) else [message]:
                for literal, *_ in string.Formatter().parse(text):
                    piece = literal.strip(" .,;:()-*")
                    if len(piece) >= 4 and piece not in spanish:
                        pieces.add(piece)
    return pieces


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The full grid's report (every figure drawn), offline, in English and in Spanish, side by side."""
    folder = tmp_path_factory.mktemp("languages")
    tables = write_study_tables(folder / "tables")
    rendered = {}
    for lang, name in (("en", "report.html"), ("es", "report.es.html")):
        render_report(REPORT, folder / name, tables, engine="offline", lang=lang, languages=["en", "es"])
        rendered[lang] = (folder / name).read_text(encoding="utf-8")
    return rendered


def shown_strings(spec: object) -> list[str]:
    """The texts a Vega-Lite spec shows: its titles and the names of its selectors (not field names or code)."""
    if isinstance(spec, list):
        return [text for item in spec for text in shown_strings(item)]
    if not isinstance(spec, dict):
        return []
    texts = [value for key, value in spec.items() if key in ("title", "name") and isinstance(value, str)]
    return texts + [text for key, value in spec.items() if key != "datasets" for text in shown_strings(value)]


def visible_text(page: str) -> str:
    """The page's prose: the body without code, math, scripts (the explorer's, whose labels come from the
    catalogue of the page's language), the table of contents and the YAML of the appendix."""
    body = page[page.index("<body") :]
    body = re.sub(r'<nav id="TOC".*?</nav>', " ", body, flags=re.S)
    body = re.sub(r"<(code|pre|math|script|style)\b.*?</\1>", " ", body, flags=re.S)
    return html.unescape(text_of(body))


@pytest.mark.slow
def test_the_spanish_page_has_spanish_headings_captions_and_headers(pages: dict[str, str]) -> None:
    english, spanish = page_facts(pages["en"]), page_facts(pages["es"])
    assert spanish["headings"] == list(SECTIONS["es"]) and english["headings"] == list(SECTIONS["en"])
    assert not [h for h in SECTIONS["es"] if h.split(" ", 1)[1] in pages["en"]]  # and no Spanish on the English page
    assert list(spanish["floats"]) == list(english["floats"]) and spanish["images"] == english["images"] == 9
    for label, caption in spanish["floats"].items():
        assert re.match(rf"{'Figura' if label.startswith('fig-') else 'Tabla'} \d+: ", caption), caption
        assert caption.split(": ", 1)[1] not in pages["en"], label
    assert all(re.fullmatch(r"(Figura|Tabla|Sección) \d+(\.\d+)*", text) for _, text in spanish["references"])
    assert '<h2 id="toc-title">Tabla de contenidos</h2>' in pages["es"]
    headers = set(re.findall(r"<th[^>]*>(.*?)</th>", pages["es"], re.S))
    english_headers = {str(m) for k, m in catalogue("en").items() if k.startswith("table.")}
    assert headers & (english_headers - {str(m) for m in catalogue("es").values()}) == set()
    assert re.search(r'<html [^>]*lang="es"', pages["es"]) and "<title>Desvanecimiento y estallido" in pages["es"]


@pytest.mark.slow
def test_no_english_is_left_on_the_spanish_page(pages: dict[str, str]) -> None:
    text = visible_text(pages["es"]).replace(machine_description(), "")  # the machine's own words are data
    left = sorted(piece for piece in english_only() if re.search(rf"\b{re.escape(piece)}\b", text))
    assert left == []
    # ... nor the English prose of report.qmd: its words, outside names and code
    assert sorted(set(ENGLISH_WORDS.findall(text))) == []
    for paragraph in re.findall(r"<p>(.*?)</p>", pages["en"], re.S):
        words = text_of(re.sub(r"<(code|math)\b.*?</\1>", " ", paragraph, flags=re.S))
        assert len(words) < 40 or words not in text
    # ... nor in the explorer's titles, selector names, tooltips and verdicts (its spec, inlined as JSON)
    spec = json.loads(re.search(r'id="rnn-explorer-spec">(.*?)</script>', pages["es"], re.S).group(1))
    shown = [*shown_strings(spec), *(run["verdict"] for run in spec["datasets"]["runs"])]
    assert sorted(piece for piece in english_only("explorer.") if any(piece in text for text in shown)) == []
    assert "pérdida de entrenamiento" in shown


@pytest.mark.slow
def test_the_spanish_page_writes_decimal_commas_and_links_to_the_english_one(pages: dict[str, str]) -> None:
    decay = re.search(r'<div id="tbl-decay".*?</table>', pages["es"], re.S).group(0)
    cells = [text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", decay, re.S)]
    rates = [c for c in cells if c.startswith(("+", "−"))]
    assert rates and all(re.fullmatch(r"[+−]\d,\d{3}(?: \[[+−]\d,\d{3}; [+−]\d,\d{3}\])?", r) for r in rates)
    assert re.search(r'<a href="report\.html" hreflang="en" lang="en">English</a>', pages["es"])
    assert re.search(r'<a href="report\.es\.html" hreflang="es" lang="es">Español</a>', pages["en"])
    shown = re.sub(r"<script\b.*?</script>", "", pages["es"], flags=re.S)  # the explorer's JavaScript is no prose
    assert "Motor de renderizado:" in shown and "Renderer:" not in shown


def figure_texts(fig: Figure) -> list[str]:
    """Every piece of text drawn on a figure: titles, axis labels, tick labels, legends, annotations."""
    fig.canvas.draw()
    texts = [t.get_text() for t in fig.findobj(Text) if t.get_text()]
    plt.close(fig)
    return texts


def figures(results: Results) -> dict[str, Figure]:
    return {
        "derivatives": plot_activation_derivatives(results),
        "flow": plot_gradient_flow(results),
        "traces": plot_norm_traces(results),
        "theory": plot_theory(results),
        "activations": plot_metric_vs_length(results, results.comparison("activations")),
        "clipping": plot_metric_vs_length(results, results.comparison("clipping")),
        "solved": plot_solved_heatmap(results),
    }


def test_every_figure_has_spanish_labels_and_decimal_commas() -> None:
    results = results_of(make_study_tables())
    english = english_only("figure.")
    with language("es"):
        drawn = {name: figure_texts(fig) for name, fig in figures(results).items()}
    for name, texts in drawn.items():
        assert not [t for t in texts if any(piece in t for piece in english)], name
        assert not [t for t in texts if re.fullmatch(r"[−-]?\d+\.\d+", t)], name  # tick labels: 0,5 not 0.5
    assert "longitud de secuencia T" in drawn["clipping"] and "azar" in drawn["clipping"]
    assert "preactivación a" in drawn["derivatives"] and "0,8" in drawn["derivatives"]
    assert "fracción de semillas con éxito" in drawn["solved"] and "cota de Pascanu" in drawn["theory"]
    assert any("inicialización" in t for t in drawn["flow"]) and "paso de entrenamiento" in drawn["traces"]
    with language("en"):
        assert "sequence length T" in figure_texts(plot_metric_vs_length(results, results.comparison("clipping")))


def test_the_sentences_follow_the_language() -> None:
    results = results_of(make_study_tables())
    with language("es"):
        text = overview_sentence(results)
    cells = "<code>rnn&#95;tanh</code>, <code>rnn&#95;relu</code> y <code>lstm</code>"
    assert text.startswith(f"El estudio entrena tres tipos de celda ({cells}) con tres estrategias de mitigación")
    assert "La @tbl-tasks describe las tareas" in text and "El control, con el que se compara" in text

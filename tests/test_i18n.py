"""The message catalogues: every key in every language with the same placeholders, every key the code asks for
present, numbers written the way each language writes them, and page names per language."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rnn_gradients.engine.tasks import TASKS
from rnn_gradients.report.format import interval, num, numbers, percent, power_of_ten, signed, spread
from rnn_gradients.report.i18n import (
    LANGUAGES,
    PLURAL_CATEGORIES,
    PRIMARY,
    catalogue,
    current_language,
    language,
    msg,
    page_name,
    placeholders,
    primary_page_name,
    use_language,
)
from rnn_gradients.report.render import CROSSREF_FILTER
from rnn_gradients.report.results import PHASES
from rnn_gradients.report.theory import PREDICTIONS

REPORT_LAYER = Path(__file__).resolve().parents[1] / "src" / "rnn_gradients" / "report"
OTHERS = [lang for lang in LANGUAGES if lang != PRIMARY]
# Keys the code builds from a name: the prefix and every name it may complete it with.
DYNAMIC = {
    "phase.": PHASES,
    "figure.phase.": PHASES,
    "figure.theory.title.": PREDICTIONS,
    "figure.theory.x_label.": PREDICTIONS,
    "figure.metric.": ("mse", "accuracy"),
    "metric.": ("mse", "accuracy"),
    "conclusions.verdict.": ("solved", "failed", "uncertain"),
    "verdict.": ("solved", "failed", "uncertain"),
    "task.": TASKS,
    "table.": ("task", "cell", "strategy", "seed"),
}


def literal_keys() -> set[str]:
    """Every message key written out in the report layer's code: a quoted dotted name starting with a section of
    the catalogue (``"overview.control"``)."""
    code = "\n".join(path.read_text(encoding="utf-8") for path in REPORT_LAYER.glob("*.py"))
    sections = {key.split(".")[0] for key in catalogue(PRIMARY)}
    return {key for key in re.findall(r"[\"']((?:[a-z_]+\.)+[a-z_]+)[\"']", code) if key.split(".")[0] in sections}


def test_english_and_spanish_are_the_report_languages() -> None:
    assert LANGUAGES[0] == PRIMARY == "en" and "es" in LANGUAGES


@pytest.mark.parametrize("lang", OTHERS)
def test_every_language_has_every_key_with_the_same_placeholders(lang: str) -> None:
    primary, other = catalogue(PRIMARY), catalogue(lang)
    assert sorted(set(primary) - set(other)) == [], f"missing from {lang}.yaml"
    assert sorted(set(other) - set(primary)) == [], f"in {lang}.yaml only"
    for key, message in primary.items():
        assert placeholders(other[key]) == placeholders(message), key
        assert isinstance(other[key], dict) == isinstance(message, dict), f"{key}: plural forms in one language only"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_messages_are_well_formed(lang: str) -> None:
    for key, message in catalogue(lang).items():
        if isinstance(message, dict):
            assert set(message) == set(PLURAL_CATEGORIES), key
        texts = message.values() if isinstance(message, dict) else [message]
        assert all(
            text.strip() == text or key.startswith(("list.", "number.")) or text.endswith(": ") for text in texts
        )
        placeholders(message)  # raises on a brace that is no placeholder


def test_every_key_the_code_asks_for_exists_and_every_key_is_used() -> None:
    keys, asked = set(catalogue(PRIMARY)), literal_keys()
    built = {prefix + name for prefix, names in DYNAMIC.items() for name in names}
    assert sorted(asked - keys) == [] and sorted(built - keys) == []
    assert sorted(keys - asked - built) == []


def test_the_offline_engine_knows_quartos_words_in_every_language() -> None:
    lua = CROSSREF_FILTER.read_text(encoding="utf-8")
    for lang in LANGUAGES:
        assert re.search(rf"\n  {lang} = {{ fig = ", lua), f"crossref.lua has no words for {lang!r}"


def test_a_missing_key_or_value_or_language_is_named() -> None:
    with pytest.raises(KeyError, match="'no.such' is missing from the 'en' catalogue"):
        msg("no.such")
    with pytest.raises(KeyError, match="needs a value for 'control'"):
        msg("overview.control")
    with pytest.raises(KeyError, match="plural forms: give its count as n"):
        msg("count.tasks")
    with pytest.raises(ValueError, match="no report language 'fr'; the report is written in: en, es"):
        use_language("fr")


def test_the_language_is_a_context() -> None:
    assert current_language() == PRIMARY
    with language("es"):
        assert current_language() == "es"
        assert msg("count.tasks", n=1) == "una tarea" and msg("count.tasks", n=3) == "tres tareas"
        assert msg("count.tasks", n=12) == "12 tareas"
    assert current_language() == PRIMARY and msg("count.tasks", n=3) == "3 tasks"


def test_numbers_in_english_and_in_spanish() -> None:
    values = (num(0.123456), signed(-0.25), percent(0.125), spread([-0.5, -0.6]), power_of_ten(-14.24))
    assert values == ("0.123", "−0.250", "12.5 %", "−0.55 [−0.6, −0.5]", "10^−14.2^")
    assert numbers(["0.1", "0.2"]) == "0.1, 0.2" and interval("1", "2") == "[1, 2]"
    with language("es"):
        values = (num(0.123456), signed(-0.25), percent(0.125), spread([-0.5, -0.6]), power_of_ten(-14.24))
        assert values == ("0,123", "−0,250", "12,5 %", "−0,55 [−0,6; −0,5]", "10^−14,2^")
        assert numbers(["0,1", "0,2"]) == "0,1; 0,2" and num(1234.5, 6) == "1234,5" and num(np.nan) == "–"
        assert num(2.5e-5) == "2,5e−05"


def test_page_names_per_language() -> None:
    assert page_name("report.html", "en") == "report.html" and page_name("report.html", "es") == "report.es.html"
    assert primary_page_name("report.es.html", "es") == "report.html"
    assert primary_page_name("report.html", "en") == "report.html"
    with pytest.raises(ValueError, match="must be named like 'report.es.html', not 'page.html'"):
        primary_page_name("page.html", "es")

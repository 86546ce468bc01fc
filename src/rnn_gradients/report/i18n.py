"""The report's languages: which exist, which one is being written, and the message catalogue of each.

Every word the report layer generates (sentences, table headers, figure titles, axis labels and legends, the
appendix) comes from a catalogue, ``messages/<lang>.yaml``, one file per language, keyed by meaning
(``overview.control``, ``figure.flow.x_label``). A message is ``str.format`` text with named placeholders
(``{cells}``), filled by :func:`msg` with values that are already formatted: numbers by
:mod:`~rnn_gradients.report.format` in the current language, names escaped. A message that depends on a count is a
mapping of plural categories (``one``, ``other``), chosen by the keyword ``n``, whose ``{n}`` is written in words
where the language's ``number.words`` has one ("cinco tareas"), in digits otherwise. Formulas stay out of the
catalogues: code passes them in as placeholders, so that the equations are the same in every language.

The current language is a context variable. The report's setup cell calls :func:`use_language` with its ``lang``
parameter; tests and tools use the :func:`language` context manager. English, the first language, is the primary
one: its page is ``report.html``, the page of every other language ``report.<lang>.html`` (:func:`page_name`).

Adding a language: its catalogue ``messages/<lang>.yaml`` with every key and placeholder of ``en.yaml`` (the tests
name what is missing), its blocks in ``report/report.qmd`` (``::: lang-<lang>`` and ``[…]{.lang-<lang>}``, selected
by ``report/languages.lua``), and its cross-reference words in ``crossref.lua`` for the offline engine (Quarto has
its own).
"""

from __future__ import annotations

import contextvars
import functools
import string
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

CATALOGUE_DIR = Path(__file__).with_name("messages")
PRIMARY = "en"
"""The language of the page without a language suffix (``report.html``), and the catalogue all others follow."""
LANGUAGES: tuple[str, ...] = (PRIMARY, *sorted(p.stem for p in CATALOGUE_DIR.glob("*.yaml") if p.stem != PRIMARY))
"""Every language with a catalogue, the primary one first."""
PLURAL_CATEGORIES = ("one", "other")
"""The plural categories a message may have (CLDR's names); "one" is used for a count of exactly 1."""

Message = str | dict[str, str]
_current = contextvars.ContextVar("report_language", default=PRIMARY)


def check_language(lang: str) -> str:
    """``lang`` if it has a catalogue; ValueError naming the languages that have one otherwise."""
    if lang not in LANGUAGES:
        raise ValueError(f"no report language {lang!r}; the report is written in: {', '.join(LANGUAGES)}")
    return lang


def use_language(lang: str) -> None:
    """Write everything from now on (in this context) in ``lang``: the report's setup cell calls this."""
    _current.set(check_language(lang))


@contextmanager
def language(lang: str) -> Iterator[None]:
    """Write in ``lang`` inside the ``with`` block."""
    token = _current.set(check_language(lang))
    try:
        yield
    finally:
        _current.reset(token)


def current_language() -> str:
    return _current.get()


@functools.cache
def catalogue(lang: str) -> dict[str, Message]:
    """The messages of ``lang``, keyed by their dotted path in the catalogue file (``figure.flow.x_label``)."""
    path = CATALOGUE_DIR / f"{check_language(lang)}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a message catalogue is a YAML mapping")
    return _flatten(data, path)


def _flatten(tree: Mapping[str, Any], path: Path, prefix: str = "") -> dict[str, Message]:
    messages: dict[str, Message] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and set(value) <= set(PLURAL_CATEGORIES) and value:
            messages[name] = {category: str(text) for category, text in value.items()}
        elif isinstance(value, dict):
            messages.update(_flatten(value, path, f"{name}."))
        elif isinstance(value, str):
            messages[name] = value
        else:
            raise ValueError(f"{path}: {name}: a message is text or a mapping of {', '.join(PLURAL_CATEGORIES)}")
    return messages


def number_word(n: int) -> str:
    """A count in words where the current language writes it so (its ``number.words``: "cero uno dos ..."), else in
    digits."""
    words = str(catalogue(current_language()).get("number.words", "")).split()
    return words[n] if 0 <= n < len(words) else str(n)


def plural_category(n: int) -> str:
    """The plural category of the count ``n``: "one" for 1, "other" otherwise (English and Spanish alike)."""
    return "one" if n == 1 else "other"


def msg(key: str, /, **values: Any) -> str:
    """The message ``key`` in the current language, its placeholders filled with ``values``.

    A plural message picks its form by ``values["n"]``. KeyError names the key and the language when the catalogue
    lacks the key or the call lacks a placeholder's value.
    """
    lang = current_language()
    try:
        message = catalogue(lang)[key]
    except KeyError:
        raise KeyError(f"message {key!r} is missing from the {lang!r} catalogue") from None
    if isinstance(message, dict):
        if "n" not in values:
            raise KeyError(f"message {key!r} has plural forms: give its count as n")
        n = int(values["n"])
        message = message.get(plural_category(n), message["other"])
        values = {**values, "n": number_word(n)}
    try:
        return message.format(**values)
    except (KeyError, IndexError) as err:
        raise KeyError(f"message {key!r} ({lang}) needs a value for {err}") from None


def placeholders(message: Message) -> set[str]:
    """The named placeholders of a message (of all its plural forms); ValueError for a malformed one."""
    texts = message.values() if isinstance(message, dict) else [message]
    names = set()
    for text in texts:
        for _, name, _, _ in string.Formatter().parse(text):
            if name is not None:
                if not name.isidentifier():
                    raise ValueError(f"placeholder {{{name}}} in {text!r} is not a name (write a literal brace twice)")
                names.add(name)
    return names


def page_name(primary: str, lang: str) -> str:
    """The file name of the page in ``lang``, given the primary language's (``report.html`` -> ``report.es.html``)."""
    if check_language(lang) == PRIMARY:
        return primary
    stem, dot, suffix = primary.rpartition(".")
    return f"{stem}.{lang}.{suffix}" if dot else f"{primary}.{lang}"


def primary_page_name(name: str, lang: str) -> str:
    """The inverse of :func:`page_name`: the primary language's file name, from the name of the page in ``lang``.

    ValueError when ``name`` is not named the way :func:`page_name` names a page in ``lang``.
    """
    if check_language(lang) == PRIMARY:
        return name
    stem, dot, suffix = name.rpartition(".")
    if dot and stem.endswith(f".{lang}"):
        return f"{stem.removesuffix(f'.{lang}')}.{suffix}"
    raise ValueError(f"the page in {lang!r} must be named like {page_name('report.html', lang)!r}, not {name!r}")

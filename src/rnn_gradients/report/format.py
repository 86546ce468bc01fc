"""How the report writes numbers and names into Markdown, and how text from the tables reaches the page escaped.

Names (tasks, cells, strategies) and config values come from files that a user, or a broken run, can fill with
anything: ``<img src=x onerror=…>``, ``[x](javascript:…)``, ``@fig-…``, ``$…$`` or a ``|`` that splits a table.
:func:`escape` writes every character of such a string except ASCII letters, digits and spaces as a numeric
character reference, which Markdown (pandoc and Quarto alike) reads as that literal character and the HTML writer
escapes again: no tag, link, emphasis, math, citation, cross-reference or table cell can start inside it.
:func:`code` is the same text in a ``<code>`` element.

Numbers are written in the current language (:mod:`~rnn_gradients.report.i18n`): its decimal separator ("0.5",
"0,5"), the separator of a list of numbers and of an interval ("[−0.6, −0.5]", "[−0,6; −0,5]"), and always a
typographic minus. No function here holds a word of any language: those come from the catalogue.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rnn_gradients.report.i18n import msg

MISSING = "–"
"""Shown for a missing or non-finite number."""
_NUMERIC = re.compile(r"^[\s\d.,;+\-−–%/±()\[\]e]*$")


def escape(value: Any) -> str:
    """``value`` as text that Markdown and HTML show literally (see the module docstring)."""
    return "".join(ch if (ch.isascii() and ch.isalnum()) or ch == " " else f"&#{ord(ch)};" for ch in str(value))


def code(value: Any) -> str:
    """A name shown as code: ``<code>`` around the escaped text."""
    return f"<code>{escape(value)}</code>"


def decimal(text: str) -> str:
    """A number already written in Python's notation ("-0.25") in the current language: its decimal separator and
    a typographic minus ("−0,25")."""
    return text.replace(".", msg("number.decimal")).replace("-", "−")


def num(x: Any, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits with a typographic minus; :data:`MISSING` if missing or not finite."""
    if x is None or x is pd.NA:
        return MISSING
    x = float(x)
    return MISSING if not np.isfinite(x) else decimal(f"{x:.{digits}g}")


def fixed(x: Any, decimals: int = 1) -> str:
    """``x`` with ``decimals`` decimals: "2.5", "2,5"; :data:`MISSING` if missing or not finite."""
    if x is None or x is pd.NA or not np.isfinite(float(x)):
        return MISSING
    return decimal(f"{float(x):.{decimals}f}")


def signed(x: Any, decimals: int = 3) -> str:
    """A rate with its sign and a typographic minus: "+0.012", "−0.250"; :data:`MISSING` if not finite."""
    if x is None or x is pd.NA or not np.isfinite(float(x)):
        return MISSING
    return decimal(f"{float(x):+.{decimals}f}")


def fraction(k: Any, n: Any) -> str:
    """ "3/5": k of n seeds (or runs)."""
    return f"{int(k)}/{int(n)}"


def percent(share: float) -> str:
    """A share in [0, 1] as a percentage to three significant digits: "12.5 %"."""
    return f"{num(100 * share)} %"


def numbers(values: Sequence[str]) -> str:
    """Numbers already formatted, as a list: "0.1, 0.2" ("0,1; 0,2" where the comma is the decimal separator)."""
    return msg("number.list_separator").join(values)


def interval(low: str, high: str) -> str:
    """ "[−0.6, −0.5]": a range of numbers already formatted."""
    return f"[{numbers([low, high])}]"


def spread(values: Sequence[float] | pd.Series, fmt: Any = num) -> str:
    """The mean of the finite values, and their range when they differ: "−0.56 [−0.60, −0.52]"."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if finite.size == 0:
        return MISSING
    mean, low, high = fmt(finite.mean()), fmt(finite.min()), fmt(finite.max())
    return mean if low == high else f"{mean} {interval(low, high)}"


def power_of_ten(exponent: float) -> str:
    """:math:`10^{x}` as Markdown superscript, one decimal: "10^−14.2^" (shown as 10 with a raised −14.2)."""
    return f"10^{fixed(exponent, 1)}^" if np.isfinite(exponent) else MISSING


def markdown_table(df: pd.DataFrame) -> str:
    """A pipe table of display strings; the columns that hold only numbers are right-aligned.

    Cells must already be escaped (:func:`escape`, :func:`code`) or be numbers formatted here.
    """
    df = df.astype(str)
    align = ["right" if df[c].str.match(_NUMERIC).all() else "left" for c in df.columns]
    return df.to_markdown(index=False, disable_numparse=True, colalign=align)

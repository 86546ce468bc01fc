"""The schema's errors as one-liners: where in the config, the bad value, and what is allowed.

:func:`describe_error` turns a ``jsonschema`` error into one line (or one per unknown key) of the form
``key.path: what is wrong; what is allowed``, with a close match offered for a typo (``lsmt`` -> ``lstm``) and a
hint where YAML read a number as text. :mod:`rnn_gradients.study.config` collects them.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from jsonschema.exceptions import ValidationError, best_match

from rnn_gradients.study.config_files import where

Problem = tuple[tuple[Any, ...], str]
"""A problem: the key path it is about and its readable line (which starts with that path)."""


_JSON_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
    type(None): "null (an empty value)",
}


def _where(path: Iterable[Any]) -> str:
    return where(path)


def listed(values: Iterable[Any]) -> str:
    return ", ".join(str(value) for value in values)


def _close(word: Any, options: Iterable[Any]) -> str:
    # a high cutoff: only near-certain typos (lsmt -> lstm), never a wrong lead (gpu -> cpu)
    matches = difflib.get_close_matches(str(word), [str(option) for option in options], n=1, cutoff=0.75)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def type_name(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _expected_types(expected: str | list[str]) -> str:
    names = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "true or false",
        "array": "a list",
        "object": "a mapping",
        "null": "null",
    }
    kinds = [expected] if isinstance(expected, str) else expected
    return " or ".join(names.get(kind, kind) for kind in kinds)


def _number_hint(value: Any, expected: str | list[str]) -> str:
    """What to write instead, when a value is almost what was expected (the hint never repeats the mistake).

    YAML 1.1 reads ``1e-3`` (no dot) and anything quoted as text; a float where an integer belongs needs the
    integer written out.
    """
    kinds = [expected] if isinstance(expected, str) else list(expected)
    if "integer" not in kinds and "number" not in kinds:
        return ""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and "integer" in kinds:
        return f"; write {int(value)}"
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    if "integer" in kinds:
        return f"; write {int(number)} (no quotes, no decimal point)" if number.is_integer() else ""
    if "." not in value and "e" in value.lower():
        return f" (YAML reads {value} as text: write it with a dot, e.g. {number!r})"
    return f"; write {number!r} without quotes"


def describe_error(error: ValidationError) -> list[Problem]:
    """One readable line per problem in ``error``: where, the bad value, what is allowed."""
    if error.context:
        return describe_error(best_match(error.context))
    path = tuple(error.absolute_path)
    where = _where(path)
    value = error.instance
    kind = error.validator
    if "propertyNames" in error.absolute_schema_path:
        here = (*path, value)
        key_path = _where(here)
        if kind == "enum":
            return [
                (
                    here,
                    f"{key_path}: unknown key {value!r}{_close(value, error.validator_value)}; "
                    f"allowed: {listed(error.validator_value)}",
                )
            ]
        if kind == "pattern":
            return [
                (
                    here,
                    f"{key_path}: name {value!r} must match {error.validator_value} "
                    "(lower-case letters, digits and underscores, starting with a letter; nothing after them, "
                    "not even a newline)",
                )
            ]
        if kind == "maxLength":
            return [(here, f"{key_path}: name {value!r} is longer than {error.validator_value} characters")]
    if kind == "additionalProperties" and error.validator_value is False:
        allowed = list(error.schema.get("properties", {}))
        extra = [key for key in value if key not in allowed]
        return [
            (
                (*path, key),
                f"{_where((*path, key))}: unknown key {key!r}{_close(key, allowed)}; allowed keys: {listed(allowed)}",
            )
            for key in extra
        ]
    if kind == "enum":
        options = error.validator_value
        return [(path, f"{where}: {value!r} is not allowed{_close(value, options)}; allowed: {listed(options)}")]
    if kind == "type":
        expected = _expected_types(error.validator_value)
        if isinstance(value, float) and not math.isfinite(value):
            return [(path, f"{where}: {value!r} is not a finite number; expected {expected}")]
        what = "a number with a decimal point" if isinstance(value, float) else type_name(value)
        return [
            (path, f"{where}: {value!r} is {what}, expected {expected}{_number_hint(value, error.validator_value)}")
        ]
    if kind == "minimum":
        return [(path, f"{where}: {value!r} is below the minimum {error.validator_value}")]
    if kind == "exclusiveMinimum":
        return [(path, f"{where}: {value!r} is too small; it must be greater than {error.validator_value}")]
    if kind == "maximum":
        return [(path, f"{where}: {value!r} is above the maximum {error.validator_value}")]
    if kind in ("minItems", "minProperties"):
        what = "list" if kind == "minItems" else "mapping"
        return [(path, f"{where}: the {what} is empty; give at least {error.validator_value} entry")]
    if kind == "uniqueItems":
        counts = Counter(repr(item) for item in value)
        repeated = sorted(item for item, count in counts.items() if count > 1)
        return [(path, f"{where}: {listed(repeated)} appears more than once; every entry must be distinct")]
    return [(path, f"{where}: {error.message}")]

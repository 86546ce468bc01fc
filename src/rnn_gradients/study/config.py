"""The study config: validation with readable messages, before any compute starts.

A study is the product ``tasks × T × cells × strategies × seeds`` (``config/config.yaml``, explained key by key in
``config/README.md``). :func:`load_study` checks a config against ``workflow/schemas/config.schema.yaml`` (JSON
Schema 2020-12), fills in the schema's defaults, then checks what a schema cannot express: every strategy must
parse (:meth:`Strategy.from_dict`) and apply to every configured cell, learning-rate overrides must name
configured cells, and every T must reach its task's minimum. Problems come back as one
:class:`StudyConfigError` that lists each of them on one line, as ``key.path: what is wrong; what is allowed``.
The grid of runs a valid config describes is :mod:`rnn_gradients.study.grid`.
"""

from __future__ import annotations

import copy
import difflib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from rnn_gradients.engine.cells import CELLS
from rnn_gradients.engine.initialization import INIT_SCHEMES
from rnn_gradients.engine.normalization import NORMS
from rnn_gradients.engine.run_spec import DEVICES, OPTIMIZERS
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.engine.tasks import TASKS, get_task


class StudyConfigError(ValueError):
    """An invalid study config; ``problems`` holds one readable line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid study config ({len(self.problems)} {noun}):\n{lines}")


def _filling_defaults(validator_class: type) -> type:
    """A validator class that also writes each missing property's schema ``default`` into the instance.

    The pattern of the jsonschema FAQ (the same as ``snakemake.utils.validate``), with a deep copy so that a
    mutable default (``{}``) is never shared between instances or with the schema.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Mapping[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _filling_defaults(Draft202012Validator)


def load_schema(schema_path: Path) -> dict[str, Any]:
    """The config schema, with its lists of allowed names filled in from the package (each defined once there)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    names = {
        "task": TASKS,
        "cell": CELLS,
        "norm": NORMS,
        "init": INIT_SCHEMES,
        "optimizer": OPTIMIZERS,
        "device": DEVICES,
        "learning_rate_key": ("default", *CELLS),
    }
    for name, allowed in names.items():
        schema["$defs"][name]["enum"] = list(allowed)
    return schema


def load_study(config: Mapping[str, Any], schema_path: Path) -> dict[str, Any]:
    """Validate ``config`` and return a copy with every default filled in.

    Raises :class:`StudyConfigError` listing every problem: schema violations first (all of them, sorted by key
    path), then, once the schema holds, the semantic checks.
    """
    schema = load_schema(schema_path)
    study = copy.deepcopy(dict(config))
    errors = list(_DefaultFillingValidator(schema).iter_errors(study))
    if errors:
        problems = sorted({line for error in errors for line in _describe(error)})
        raise StudyConfigError(problems)
    problems = [*_strategy_problems(study), *_learning_rate_problems(study), *_seq_len_problems(study)]
    if problems:
        raise StudyConfigError(problems)
    return study


# ---- schema errors as one-liners -------------------------------------------------------------------------------

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
    """``strategies.clip_norm.clip_nrom`` / ``tasks.adding[1]``: the key path as a user reads their YAML."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _child(path: str, key: str) -> str:
    return key if path == "(top level)" else f"{path}.{key}"


def _allowed(values: Iterable[Any]) -> str:
    return ", ".join(str(value) for value in values)


def _close(word: Any, options: Iterable[Any]) -> str:
    # a high cutoff: only near-certain typos (lsmt -> lstm), never a wrong lead (gpu -> cpu)
    matches = difflib.get_close_matches(str(word), [str(option) for option in options], n=1, cutoff=0.75)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _type_name(value: Any) -> str:
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


def _number_hint(value: Any) -> str:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: say so when a string looks like a number."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return f" (YAML reads {value} as text: write it with a dot, e.g. {float(value)!r})"


def _describe(error: ValidationError) -> list[str]:
    """One readable line per problem in ``error``: where, the bad value, what is allowed."""
    if error.context:
        return _describe(best_match(error.context))
    where = _where(error.absolute_path)
    value = error.instance
    kind = error.validator
    if "propertyNames" in error.absolute_schema_path:
        key_path = _child(where, str(value))
        if kind == "enum":
            return [
                f"{key_path}: unknown key {value!r}{_close(value, error.validator_value)}; "
                f"allowed: {_allowed(error.validator_value)}"
            ]
        if kind == "pattern":
            return [
                f"{key_path}: name {value!r} must match {error.validator_value} "
                "(lower-case letters, digits and underscores, starting with a letter)"
            ]
    if kind == "additionalProperties" and error.validator_value is False:
        allowed = list(error.schema.get("properties", {}))
        extra = [key for key in value if key not in allowed]
        return [
            f"{_child(where, str(key))}: unknown key {key!r}{_close(key, allowed)}; allowed keys: {_allowed(allowed)}"
            for key in extra
        ]
    if kind == "enum":
        options = error.validator_value
        return [f"{where}: {value!r} is not allowed{_close(value, options)}; allowed: {_allowed(options)}"]
    if kind == "type":
        return [
            f"{where}: {value!r} is {_type_name(value)}, expected {_expected_types(error.validator_value)}"
            f"{_number_hint(value)}"
        ]
    if kind == "minimum":
        return [f"{where}: {value!r} is below the minimum {error.validator_value}"]
    if kind == "exclusiveMinimum":
        return [f"{where}: {value!r} is too small; it must be greater than {error.validator_value}"]
    if kind == "maximum":
        return [f"{where}: {value!r} is above the maximum {error.validator_value}"]
    if kind in ("minItems", "minProperties"):
        what = "list" if kind == "minItems" else "mapping"
        return [f"{where}: the {what} is empty; give at least {error.validator_value} entry"]
    if kind == "uniqueItems":
        counts = Counter(repr(item) for item in value)
        repeated = sorted(item for item, count in counts.items() if count > 1)
        return [f"{where}: {_allowed(repeated)} appears more than once; every entry must be distinct"]
    return [f"{where}: {error.message}"]


# ---- semantic checks -------------------------------------------------------------------------------------------


def strategy_bundle(study: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A strategy's bundle without the ``null`` placeholders the schema's defaults put in (off = absent)."""
    return {key: value for key, value in study["strategies"][name].items() if value is not None}


def _strategy_problems(study: Mapping[str, Any]) -> list[str]:
    problems = []
    for name in study["strategies"]:
        try:
            strategy = Strategy.from_dict(name, strategy_bundle(study, name))
        except ValueError as err:
            problems.append(f"strategies.{name}: {err}")
            continue
        refusals = []
        for cell in study["cells"]:
            try:
                strategy.check_applicable(cell)
            except ValueError as err:
                refusals.append((cell, err))
        if refusals:
            others = [cell for cell, _ in refusals[1:]]
            same = f"; the same holds for {_allowed(others)}" if others else ""
            problems.append(
                f"strategies.{name}: {refusals[0][1]}{same} (remove those cells from cells, or drop this strategy)"
            )
    return problems


def _learning_rate_problems(study: Mapping[str, Any]) -> list[str]:
    cells = study["cells"]
    return [
        f"training.learning_rate.{cell}: an override for cell {cell!r}, which is not in cells; "
        f"configured cells: {_allowed(cells)}"
        for cell in study["training"]["learning_rate"]
        if cell != "default" and cell not in cells
    ]


def _seq_len_problems(study: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, lengths in study["tasks"].items():
        minimum = get_task(name).min_seq_len
        problems += [
            f"tasks.{name}[{i}]: T = {seq_len} is below the minimum {minimum} of task {name!r}"
            for i, seq_len in enumerate(lengths)
            if seq_len < minimum
        ]
    return problems

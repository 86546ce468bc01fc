"""The study config: validation with readable messages, before any compute starts.

A study is the product ``tasks × T × cells × strategies × seeds`` (``config/config.yaml``, explained key by key in
``config/README.md``). :func:`load_study` checks a config against ``workflow/schemas/config.schema.yaml`` (JSON
Schema 2020-12), fills in the schema's defaults, then checks what a schema cannot express: every strategy must
parse (:meth:`Strategy.from_dict`) and apply to every configured cell, learning-rate overrides must name
configured cells, every T must reach its task's minimum, and the study must stay within its ``limits``
(:mod:`rnn_gradients.study.limits`: run count, dataset size, a training job's memory). Integers must be
integers (JSON Schema would take ``4.0``) and numbers finite (``.nan`` passes ``exclusiveMinimum``). Problems come
back as one :class:`StudyConfigError` that lists each of them on one line, as ``key.path: what is wrong; what is
allowed``.

:func:`load_study_files` is what the Snakefile calls: it reads the config files and ``--config`` overrides
itself (:mod:`rnn_gradients.study.config_files`: duplicate keys refused, YAML errors with file and line,
overrides parsed as YAML) and prefixes each problem with the file and line, or ``--config``, it came from. The
grid of runs a valid config describes is :mod:`rnn_gradients.study.grid`.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from rnn_gradients.engine.cells import CELLS
from rnn_gradients.engine.initialization import INIT_SCHEMES
from rnn_gradients.engine.normalization import NORMS
from rnn_gradients.engine.run_spec import DEVICES, MAX_SEED, OPTIMIZERS
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.engine.tasks import TASKS, get_task
from rnn_gradients.report.i18n import LANGUAGES
from rnn_gradients.study.config_files import (
    ConfigReadError,
    ConfigSource,
    locate,
    merge_sources,
    parse_override,
    read_config_file,
    where,
)
from rnn_gradients.study.config_messages import Problem, describe_error, listed, type_name


class StudyConfigError(ValueError):
    """An invalid study config; ``problems`` holds one readable line per problem.

    ``source`` (the config files and ``--config``, when known) leads the message.
    """

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        noun = "problem" if len(self.problems) == 1 else "problems"
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        lead = f"{source}: " if source else ""
        super().__init__(f"{lead}invalid study config ({len(self.problems)} {noun}):\n{lines}")


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


def _is_integer(checker: Any, instance: Any) -> bool:
    """A real integer: JSON Schema would also take 4.0 (a float with no fraction), which torch and the file
    names (``seed4.0``) would not."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker: Any, instance: Any) -> bool:
    """A finite number: NaN passes every comparison keyword (``exclusiveMinimum: 0`` included), Inf most."""
    if isinstance(instance, bool) or not isinstance(instance, int | float):
        return False
    return not isinstance(instance, float) or math.isfinite(instance)


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """``pattern`` with ECMA-262's meaning of ``$`` (the end of the text), as JSON Schema specifies.

    Python's ``re.search`` lets ``$`` match before a final newline, so ``"none\n"`` would pass
    ``^[a-z][a-z0-9_]*$`` and become a directory name with a newline in it.
    """
    if not isinstance(instance, str):
        return
    anchored = re.sub(r"(?<!\\)\$$", r"\\Z", pattern)
    if re.search(anchored, instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_STRICT_TYPES = Draft202012Validator.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
_DefaultFillingValidator = validators.extend(
    _filling_defaults(Draft202012Validator), {"pattern": _ecma_pattern}, type_checker=_STRICT_TYPES
)


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
        "language": LANGUAGES,
    }
    for name, allowed in names.items():
        schema["$defs"][name]["enum"] = list(allowed)
    schema["properties"]["seeds"]["items"]["maximum"] = MAX_SEED
    return schema


def load_study(
    config: Mapping[str, Any],
    schema_path: Path,
    *,
    locations: Mapping[tuple[Any, ...], str] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Validate ``config`` and return a copy with every default filled in.

    Raises :class:`StudyConfigError` listing every problem: names that are not text first, then schema
    violations (all of them, sorted by key path), then, once the schema holds, the semantic checks, then the
    study's size against its ``limits``. With ``locations`` (key path -> "file:line" or "--config", from
    :func:`rnn_gradients.study.config_files.merge_sources`) each problem starts with where its value was written.
    """
    from rnn_gradients.study.limits import limit_problems

    schema = load_schema(schema_path)
    study = copy.deepcopy(dict(config))
    checks: list[Callable[[dict[str, Any]], list[Problem]]] = [
        _key_problems,
        _schema_problems(schema),
        lambda s: [
            *_strategy_problems(s),
            *_learning_rate_problems(s),
            *_seq_len_problems(s),
            *_size_problems(s),
            *_verdict_problems(s),
        ],
        limit_problems,
    ]
    for check in checks:
        problems = check(study)
        if problems:
            raise StudyConfigError(_located(problems, locations or {}), source)
    return study


def load_study_files(configfiles: Sequence[Path | str], overrides: Sequence[str], schema_path: Path) -> dict[str, Any]:
    """Read the config files (merged in order) and ``--config`` overrides (``key=value``, values as YAML), then
    validate the result (:func:`load_study`). Every problem names the file and line, or ``--config``, that set
    the value; a file that cannot be read or parsed is a :class:`StudyConfigError` too."""
    sources: list[ConfigSource] = []
    problems: list[str] = []
    readers = [*((read_config_file, path) for path in configfiles), *((parse_override, entry) for entry in overrides)]
    for read, item in readers:
        try:
            sources.append(read(item))
        except ConfigReadError as err:
            problems += err.problems
    names = ", ".join(dict.fromkeys([*map(str, configfiles), *(["--config"] if overrides else [])]))
    if problems:
        raise StudyConfigError(problems, names)
    merged = merge_sources(sources)
    return load_study(merged.data, schema_path, locations=merged.locations, source=names)


def _located(problems: Sequence[Problem], locations: Mapping[tuple[Any, ...], str]) -> list[str]:
    lines = []
    for path, line in problems:
        found = locate(locations, path)
        lines.append(f"{found}: {line}" if found else line)
    return lines


def _schema_problems(schema: Mapping[str, Any]) -> Callable[[dict[str, Any]], list[Problem]]:
    def check(study: dict[str, Any]) -> list[Problem]:
        errors = _DefaultFillingValidator(schema).iter_errors(study)
        found = {problem for error in errors for problem in describe_error(error)}
        return sorted(found, key=lambda problem: problem[1])

    return check


def _key_problems(config: Any, path: tuple[Any, ...] = ()) -> list[Problem]:
    """Mapping keys that are not text: YAML reads ``on:``, ``no:``, ``5:`` or ``2024-01-01:`` as a boolean, a
    number or a date, which JSON Schema's name checks skip (and which would become directory names)."""
    problems: list[Problem] = []
    if isinstance(config, dict):
        for key, value in config.items():
            if not isinstance(key, str):
                hint = " (YAML reads on, off, yes and no as booleans)" if isinstance(key, bool) else ""
                problems.append(
                    (
                        (*path, key),
                        f"{where((*path, key))}: the key {key!r} is {type_name(key)}, not a name{hint}; "
                        f"write it in quotes if you mean the name: '{key}'",
                    )
                )
            else:
                problems += _key_problems(value, (*path, key))
    elif isinstance(config, list):
        for index, item in enumerate(config):
            problems += _key_problems(item, (*path, index))
    return problems


# ---- semantic checks -------------------------------------------------------------------------------------------


SCOPE_KEY = "cells"
"""The bundle key that restricts a strategy to some cells: the grid's business, not an intervention."""
LENGTHS_KEY = "lengths"
"""The bundle key that restricts a strategy to each task's longest T (``longest``) or not (``all``): the grid's
business too."""


def strategy_bundle(study: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A strategy's interventions: its bundle without the ``null`` placeholders the schema's defaults put in
    (off = absent) and without its ``cells`` and ``lengths`` scopes."""
    bundle = study["strategies"][name]
    return {key: value for key, value in bundle.items() if value is not None and key not in (SCOPE_KEY, LENGTHS_KEY)}


def strategy_lengths(study: Mapping[str, Any], name: str, task: str) -> list[int]:
    """The sequence lengths of ``task`` a strategy trains: all of them, or the longest (its ``lengths`` scope)."""
    lengths = list(study["tasks"][task])
    if study["strategies"][name].get(LENGTHS_KEY, "all") == "longest":
        return [max(lengths)]
    return lengths


def strategy_cells(study: Mapping[str, Any], name: str) -> list[str]:
    """The cells a strategy trains, in the order of ``cells``: its ``cells`` scope, or every configured cell."""
    scope = study["strategies"][name].get(SCOPE_KEY)
    return [cell for cell in study["cells"] if scope is None or cell in scope]


def _strategy_problems(study: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for name in study["strategies"]:
        here = ("strategies", name)
        try:
            strategy = Strategy.from_dict(name, strategy_bundle(study, name))
        except ValueError as err:
            problems.append((here, f"strategies.{name}: {err}"))
            continue
        scope = study["strategies"][name].get(SCOPE_KEY)
        unknown = [cell for cell in scope or [] if cell not in study["cells"]]
        if unknown:
            problems.append(
                (
                    (*here, SCOPE_KEY),
                    f"strategies.{name}.{SCOPE_KEY}: {listed(unknown)} not in cells; "
                    f"the study's cells: {listed(study['cells'])}",
                )
            )
            continue
        refusals = []
        for cell in strategy_cells(study, name):
            try:
                strategy.check_applicable(cell)
            except ValueError as err:
                refusals.append((cell, err))
        if refusals:
            others = [cell for cell, _ in refusals[1:]]
            same = f"; the same holds for {listed(others)}" if others else ""
            problems.append(
                (
                    here,
                    f"strategies.{name}: {refusals[0][1]}{same} (give the strategy a cells: list without those "
                    "cells, remove them from cells, or drop this strategy)",
                )
            )
    return problems


def _learning_rate_problems(study: Mapping[str, Any]) -> list[Problem]:
    cells = study["cells"]
    return [
        (
            ("training", "learning_rate", cell),
            f"training.learning_rate.{cell}: an override for cell {cell!r}, which is not in cells; "
            f"configured cells: {listed(cells)}",
        )
        for cell in study["training"]["learning_rate"]
        if cell != "default" and cell not in cells
    ]


def _seq_len_problems(study: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for name, lengths in study["tasks"].items():
        minimum = get_task(name).min_seq_len
        problems += [
            (("tasks", name, i), f"tasks.{name}[{i}]: T = {seq_len} is below the minimum {minimum} of task {name!r}")
            for i, seq_len in enumerate(lengths)
            if seq_len < minimum
        ]
    return problems


def _verdict_problems(study: Mapping[str, Any]) -> list[Problem]:
    """The early-stopping margin lies at or below the solve threshold."""
    problems: list[Problem] = []
    training = study["training"]
    if training["stop_fraction"] > training["solved_fraction"]:
        problems.append(
            (
                ("training", "stop_fraction"),
                f"training.stop_fraction: {training['stop_fraction']} is above training.solved_fraction "
                f"({training['solved_fraction']}): a run would stop before it is solved; allowed: at most "
                f"{training['solved_fraction']}",
            )
        )
    return problems


def _size_problems(study: Mapping[str, Any]) -> list[Problem]:
    """A batch larger than the training set: the runs would train on smaller batches (the whole set) than the
    config and the run specs say."""
    batch, train_size = study["training"]["batch_size"], study["data"]["train_size"]
    if batch <= train_size:
        return []
    return [
        (
            ("training", "batch_size"),
            f"training.batch_size: {batch:,} sequences, more than data.train_size = {train_size:,} holds; lower "
            "batch_size or raise train_size",
        )
    ]

"""Reading the study config as the user wrote it: YAML files and ``--config`` overrides, strictly, with locations.

Snakemake's own reading of a config is lenient in ways that hide mistakes: a key written twice keeps the last
value without a word (PyYAML's default), and every ``--config key=value`` value nested in a mapping or list
arrives as text (Snakemake parses it with YAML's ``BaseLoader``), so ``--config 'training={steps: 5}'`` asks for
``'5'``. This module reads the same inputs itself:

- :func:`read_config_file` parses one YAML (or JSON) file with a safe loader that refuses duplicate keys (naming
  the key and both lines), reports a YAML syntax error with the file, line and column, refuses aliases that
  expand into an oversized or recursive document, and records the line of every key;
- :func:`parse_override` parses one ``--config key=value`` entry, its value as YAML (``training={steps: 5}``
  gives the integer 5, ``seeds=[0,1]`` a list of integers);
- :func:`merge_sources` merges them in order the way Snakemake does (mappings merged key by key, anything else
  replaced), keeping for every key path where its value came from, so that a problem found later can name the
  file and line (or ``--config``) that set it.

Problems raise :class:`ConfigReadError` (a :class:`ValueError`) with one line per problem.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

OVERRIDE_SOURCE = "--config"
"""How a value given on the command line is named in messages."""
MAX_CONFIG_VALUES = 1_000_000
"""Values (mapping entries, list items, scalars) a config may expand to, aliases counted at every use: far above
any study (the default study has about 60), far below what makes validation slow or memory-hungry."""
MAX_CONFIG_BYTES = 10 * 2**20
"""A config file larger than this is not a study config (the default is about 1.5 kB)."""

Path_ = tuple[Any, ...]
"""A key path into the config: mapping keys and list indices, e.g. ``("tasks", "adding", 1)``."""


class ConfigReadError(ValueError):
    """A config file or ``--config`` entry that cannot be read; ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class ConfigSource:
    """One input of the config: its name (a file, or ``--config``), its data and the location of each key."""

    name: str
    data: dict[str, Any]
    locations: dict[Path_, str] = field(default_factory=dict)


def where(path: Iterable[Any]) -> str:
    """``strategies.clip_norm.clip_nrom`` / ``tasks.adding[1]``: a key path as a user reads their YAML.

    A key that is not a plain word (a newline, a space, markup) is shown quoted, ``strategies['none\\n']``, so
    that a message stays on one line and shows exactly what was written.
    """
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or "(top level)"


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only: no Python objects, no code)."""


def _yaml_error(name: str, text: str, err: yaml.YAMLError) -> str:
    """``file:line:column: YAML syntax error: what (while what, from line n)``."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        context = f" ({err.context}, which starts at line {err.context_mark.line + 1})" if err.context_mark else ""
        if err.context and not err.context_mark:
            context = f" ({err.context})"
        tabs = "; indent with spaces, not tabs" if "'\\t'" in str(err.problem) else ""
        return f"{name}:{mark.line + 1}:{mark.column + 1}: YAML syntax error: {err.problem}{context}{tabs}"
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        return (
            f"{name}:{line}:{column}: character {err.character!r} is not allowed in YAML "
            "(control characters are refused): delete it"
        )
    return f"{name}: YAML syntax error: {err}"


def _walk(loader: _Loader, node: yaml.Node, path: Path_, name: str, seen: set[int], out: dict) -> None:
    """Record the line of every key path and every duplicate key, visiting each node once (aliases too)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    out["locations"].setdefault(path, f"{name}:{node.start_mark.line + 1}")
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges a mapping; its keys may be overridden
                _walk(loader, value_node, path, name, seen, out)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                out["problems"].append(
                    f"{name}:{key_node.start_mark.line + 1}: {where(path)}: a key must be a plain name, "
                    "not a list or a mapping"
                )
                continue
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                out["problems"].append(
                    f"{name}:{line}: {where(path)}: YAML reads the key {key_node.value} as {_kind(key)}, not as a "
                    f"name; write it in quotes if you mean the name: '{key_node.value}'"
                )
                continue
            try:
                hash(key)
            except TypeError:
                continue
            if key in first_line:
                out["problems"].append(
                    f"{name}:{line}: {where((*path, key))}: duplicate key {key!r}: it is also set at line "
                    f"{first_line[key]}, and YAML would silently keep only the last one; keep one of the two"
                )
                continue
            first_line[key] = line
            out["locations"][(*path, key)] = f"{name}:{line}"
            _walk(loader, value_node, (*path, key), name, seen, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out["locations"].setdefault((*path, index), f"{name}:{item.start_mark.line + 1}")
            _walk(loader, item, (*path, index), name, seen, out)


def _kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", type(None): "null (no value)"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _expanded_size(value: Any, limit: int) -> int | None:
    """How many values ``value`` holds with every alias counted at each use; None when it contains itself.

    Counts each distinct container once and multiplies by its uses, so a "billion laughs" document costs
    linear time here instead of exponential time later. Stops counting past ``limit``.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(item: Any) -> int | None:
        if not isinstance(item, dict | list):
            return 1
        if id(item) in active:
            return None
        if id(item) in sizes:
            return sizes[id(item)]
        active.add(id(item))
        total = 1
        children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
        for child in children:
            sub = size(child)
            if sub is None:
                return None
            total = min(total + sub, limit + 1)
        active.discard(id(item))
        sizes[id(item)] = total
        return total

    try:
        return size(value)
    except RecursionError:
        return limit + 1


def parse_yaml(text: str, name: str, *, require_mapping: bool = True) -> ConfigSource:
    """Parse YAML ``text`` (named ``name`` in messages) strictly; ConfigReadError on any problem."""
    try:
        loader = _Loader(text)
    except yaml.YAMLError as err:  # the reader checks the characters up front
        raise ConfigReadError([_yaml_error(name, text, err)]) from None
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as err:
        loader.dispose()
        raise ConfigReadError([_yaml_error(name, text, err)]) from None
    try:
        if node is None:
            if require_mapping:
                raise ConfigReadError(
                    [f"{name}: the config is empty; write the study as `key: value` lines (see config/README.md)"]
                )
            return ConfigSource(name, None, {})  # type: ignore[arg-type]
        found: dict[str, Any] = {"locations": {}, "problems": []}
        _walk(loader, node, (), name, set(), found)
        if found["problems"]:
            raise ConfigReadError(found["problems"])
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError as err:
            raise ConfigReadError([_yaml_error(name, text, err)]) from None
        except RecursionError:
            raise ConfigReadError([f"{name}: the YAML nests too deeply to be a study config"]) from None
    finally:
        loader.dispose()
    size = _expanded_size(data, MAX_CONFIG_VALUES)
    if size is None:
        raise ConfigReadError([f"{name}: an alias (*name) refers to a value that contains it; write the value out"])
    if size > MAX_CONFIG_VALUES:
        raise ConfigReadError(
            [
                f"{name}: the config expands to more than {MAX_CONFIG_VALUES:,} values (anchors and aliases counted "
                "at every use); a study config is a few dozen lines: check it for runaway aliases or pasted data"
            ]
        )
    if require_mapping and not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"the single value {data!r}"
        raise ConfigReadError(
            [f"{name}: the config is {kind}, not a mapping; write the study as `key: value` lines (config/README.md)"]
        )
    return ConfigSource(name, data, found["locations"])


def read_config_file(path: Path | str) -> ConfigSource:
    """Read one config file (YAML, or JSON, which YAML reads too), named in messages as given."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigReadError(
            [f"{name}: no such config file (run snakemake in the study's directory, or name one with --configfile)"]
        ) from None
    except OSError as err:
        raise ConfigReadError([f"{name}: cannot read the config file: {err.strerror or err}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigReadError(
            [f"{name}: the file is larger than {MAX_CONFIG_BYTES // 2**20} MB; it is not a study config"]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigReadError(
            [f"{name}:{line}: byte {raw[err.start]:#04x} is not UTF-8 text; save the file as UTF-8"]
        ) from None
    text = text.removeprefix("\ufeff")
    source = parse_yaml(text, name)
    if text.lstrip().startswith("{"):
        # JSON, as Snakemake reads it first: YAML 1.1 would take 1e-3 for text where JSON has a number
        with contextlib.suppress(ValueError):
            source.data = json.loads(text)
    return source


def parse_override(entry: str) -> ConfigSource:
    """One ``--config key=value`` entry, its value parsed as YAML; locations name ``--config``."""
    key, sep, value = entry.partition("=")
    if not sep or not key:
        raise ConfigReadError([f"{OVERRIDE_SOURCE} {entry}: write overrides as key=value, e.g. seeds=[0,1]"])
    name = f"{OVERRIDE_SOURCE} {entry}"
    parsed = parse_yaml(value, name, require_mapping=False)
    locations = {(key, *path): OVERRIDE_SOURCE for path in parsed.locations} | {(key,): OVERRIDE_SOURCE}
    return ConfigSource(OVERRIDE_SOURCE, {key: parsed.data}, locations)


def merge_sources(sources: Sequence[ConfigSource]) -> ConfigSource:
    """Merge the sources in order, as Snakemake merges config files and ``--config``: mappings key by key,
    everything else replaced; each key path keeps the location of the source that set it last."""
    data: dict[str, Any] = {}
    locations: dict[Path_, str] = {}
    for source in sources:
        _merge(data, copy.deepcopy(source.data), (), locations, source.locations)
    names = list(dict.fromkeys(source.name for source in sources))
    return ConfigSource(", ".join(names), data, locations)


def _merge(base: dict, override: Mapping, path: Path_, locations: dict, new: Mapping[Path_, str]) -> None:
    for key, value in override.items():
        here = (*path, key)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            if here in new:
                locations[here] = new[here]
            _merge(base[key], value, here, locations, new)
            continue
        base[key] = value
        for stale in [p for p in locations if p[: len(here)] == here]:
            del locations[stale]
        locations.update({p: loc for p, loc in new.items() if p[: len(here)] == here})


def locate(locations: Mapping[Path_, str], path: Sequence[Any]) -> str | None:
    """Where the value at ``path`` (or the nearest key above it) was written, e.g. ``my_study.yaml:12``."""
    for end in range(len(path), 0, -1):
        found = locations.get(tuple(path[:end]))
        if found is not None:
            return found
    return None

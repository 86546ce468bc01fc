"""Strict reading of the run directories' JSON and CSV files: every byte checked against the writer's types.

The run files are written by :mod:`rnn_gradients.engine.run_files`, so their field and column types are read from
the annotations of the dataclasses that write them (:func:`field_kinds`, :func:`record_kinds`, :func:`probe_kinds`);
nothing here lists a field or a column. A problem raises :class:`FileProblem` with one line naming the file (and
the line and column of a CSV cell); :mod:`rnn_gradients.study.run_reader` turns it into a
:class:`~rnn_gradients.study.run_reader.RunFileError`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnn_gradients.engine.probes import ProbeResult
from rnn_gradients.engine.run_files import PROBE_COLUMNS, probe_rows

MAX_JSON_BYTES = 2**20
"""A run's JSON files are a few hundred bytes; anything past this is not one of them."""
MAX_BYTES_PER_CELL = 64
"""Bound on a CSV cell (a float in full precision is at most 24 characters) used to refuse oversized files."""
PLAIN_TEXT = re.compile(r"[A-Za-z0-9_.:+\-]{1,100}")
"""What a free-text field (device, versions) may hold: it ends up in the tables and the report."""


class FileProblem(Exception):
    """One problem of one file, in one line that names the file."""


# ---- JSON --------------------------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise FileProblem(f"the key(s) {', '.join(map(repr, repeated))} appear more than once")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise FileProblem(f"{name} is not strict JSON (the run files write non-finite numbers as null)")


def read_json_object(path: Path) -> dict[str, Any]:
    raw = read_bytes_limited(path, MAX_JSON_BYTES)
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except FileProblem as bad:
        raise FileProblem(f"{path}: {bad}") from None
    except UnicodeDecodeError as err:
        raise FileProblem(f"{path}: byte {err.start} is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        cut = " (the file is cut off)" if err.pos >= len(raw.rstrip()) else ""
        raise FileProblem(f"{path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}{cut}") from None
    except RecursionError:
        raise FileProblem(f"{path}: nested too deeply to be a run file") from None
    if not isinstance(data, dict):
        raise FileProblem(f"{path}: holds {type(data).__name__}, not a JSON object")
    return data


def read_bytes_limited(path: Path, limit: int) -> bytes:
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file"
        raise FileProblem(f"{path}: {what}")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as err:
        raise FileProblem(f"{path}: cannot be read: {err.strerror or err}") from None
    if len(raw) > limit:
        raise FileProblem(f"{path}: larger than {limit:,} bytes, more than the run can have written")
    return raw


def _kind(annotation: Any) -> str:
    """``str``, ``int``, ``int?`` (int or null), ``float`` (number or null: NaN is written as null), ``bool``."""
    args = set(typing.get_args(annotation))
    if type(None) in args and len(args) == 2:
        return _kind(next(arg for arg in args if arg is not type(None))) + "?"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is str:
        return "str"
    return "any"


@cache
def field_kinds(record: type, names: tuple[str, ...]) -> dict[str, str]:
    """Field -> kind of a run-file JSON (``names``: SUMMARY_FIELDS, RUNTIME_FIELDS), from the annotations of the
    dataclass that writes it (RunSummary, RunRuntime)."""
    hints = typing.get_type_hints(record)
    return {name: _kind(hints[name]) if name in hints else "any" for name in names}


def _json_type_ok(kind: str, value: Any) -> bool:
    if value is None:
        return kind.endswith("?") or kind in ("float", "any")
    kind = kind.rstrip("?")
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "str":
        return isinstance(value, str)
    return isinstance(value, str | int | float | bool)


_KIND_NAMES = {"bool": "true or false", "int": "an integer", "float": "a finite number or null", "str": "text"}


def check_fields(
    path: Path,
    data: dict[str, Any],
    kinds: Mapping[str, str],
    exact: Sequence[str] = (),
    minimums: Mapping[str, int] | None = None,
) -> None:
    """Exactly the fields of ``kinds``, each of its kind; every number at least 0 (every number a run writes is a
    count, a size, a time, a loss, an error, a metric or a norm), or its entry of ``minimums``; text fields plain,
    except those in ``exact`` (which the caller compares with what they must be)."""
    missing = [field for field in kinds if field not in data]
    extra = [field for field in data if field not in kinds]
    if missing or extra:
        parts = [f"lacks the field(s) {', '.join(missing)}"] if missing else []
        parts += [f"has unexpected field(s) {', '.join(map(repr, extra))}"] if extra else []
        raise FileProblem(f"{path}: {' and '.join(parts)} (written by another version of the code?)")
    for field, kind in kinds.items():
        value = data[field]
        if not _json_type_ok(kind, value):
            allowed = _KIND_NAMES.get(kind.rstrip("?"), "a plain value") + (" or null" if kind.endswith("?") else "")
            raise FileProblem(f"{path}: {field} is {value!r}, expected {allowed}")
        minimum = (minimums or {}).get(field, 0)
        if kind.rstrip("?") in ("int", "float") and value is not None and value < minimum:
            raise FileProblem(f"{path}: {field} is {value!r}, below {minimum}: the file is edited or damaged")
        if kind == "str" and field not in exact and not PLAIN_TEXT.fullmatch(value):
            raise FileProblem(f"{path}: {field} = {value!r} is not plain text (letters, digits and _ . : + -)")


# ---- CSV ---------------------------------------------------------------------------------------------------------


@cache
def record_kinds(record: type) -> tuple[tuple[str, str], ...]:
    """(column, kind) of a CSV record (StepRecord, EvalRecord): a column is a field of the record, or an element
    of its tuple-valued field (StepRecord.group_norms -> grad_norm_*)."""
    hints = typing.get_type_hints(record)
    kinds, element = {}, "float"
    for field in dataclasses.fields(record):
        hint = hints[field.name]
        if typing.get_origin(hint) is tuple:
            element = _kind(typing.get_args(hint)[0])
        else:
            kinds[field.name] = _kind(hint)
    return tuple((column, kinds.get(column, element)) for column in record.COLUMNS)


@cache
def probe_kinds() -> tuple[tuple[str, str], ...]:
    """(column, kind) of probes.csv, from the types of the values :func:`probe_rows` writes for a probe."""
    hints = typing.get_type_hints(ProbeResult)
    samples = {int: 1, float: 0.5, bool: True, np.ndarray: np.array([0.5])}
    dummy = ProbeResult(
        **{field.name: samples.get(hints[field.name], 0.5) for field in dataclasses.fields(ProbeResult)}
    )
    row = next(iter(probe_rows([dummy])))

    def kind(value: Any) -> str:
        if isinstance(value, bool | np.bool_):
            return "bool"
        return "int" if isinstance(value, int | np.integer) else "float"

    return tuple((column, kind(value)) for column, value in zip(PROBE_COLUMNS, row, strict=True))


_INTEGER = re.compile(r"-?\d{1,18}")


def read_csv_strict(path: Path, kinds: Sequence[tuple[str, str]], max_rows: int) -> pd.DataFrame:
    """A run CSV file as a typed frame: exact header, complete rows, typed cells, a final newline."""
    columns = [column for column, _ in kinds]
    raw = read_bytes_limited(path, (max_rows + 1) * (len(columns) * MAX_BYTES_PER_CELL + 1))
    if not raw:
        raise FileProblem(f"{path}: the file is empty (not even the header)")
    newline = b"\n"
    if not raw.endswith(newline):
        line = raw.count(newline) + 1
        raise FileProblem(f"{path}: line {line} is cut off (no newline at the end of the file): the file is truncated")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileProblem(f"{path}: line {raw.count(newline, 0, err.start) + 1} is not UTF-8 text") from None
    lines = text.split("\n")[:-1]
    header = ",".join(columns)
    if lines[0] != header:
        raise FileProblem(f"{path}: the header is {lines[0]!r}, expected {header!r}")
    # The files are written without quoting (numbers and True/False only), so a row is complete when it has one
    # comma fewer than it has columns; a blank line, a cut-off row or an extra field is caught here.
    commas = len(columns) - 1
    for number, line in enumerate(lines[1:], start=2):
        if line.count(",") != commas:
            raise FileProblem(f"{path}: line {number} has {line.count(',') + 1} field(s), expected {len(columns)}")
    try:
        frame = _typed_frame(text, kinds)
    except (ValueError, OverflowError):  # some cell is not of its column's type: find it, slowly, to name it
        body = [line.split(",") for line in lines[1:]]
        values = list(zip(*body, strict=True)) if body else [() for _ in columns]
        for (column, kind), cells in zip(kinds, values, strict=True):
            _parse_column(path, column, kind, cells)
        raise FileProblem(f"{path}: a value is not of its column's type") from None
    for column, kind in kinds:
        if kind == "bool":
            cells = frame[column]
            ok = cells.isin(["True", "False"]).to_numpy()
            if not ok.all():
                index = int(np.flatnonzero(~ok)[0])
                value = cells.iloc[index]
                raise FileProblem(f"{path}: line {index + 2}, column {column}: {value!r} is not True or False")
            frame[column] = (cells == "True").to_numpy()
        else:  # every number a run file holds is a step, a loss, an error, a metric or a norm: none is negative
            negative = (frame[column] < 0).to_numpy()
            if negative.any():
                index = int(np.flatnonzero(negative)[0])
                value = frame[column].iloc[index].item()
                raise FileProblem(
                    f"{path}: line {index + 2}, column {column}: {value!r} is negative, which no run writes: the file "
                    "is edited or damaged"
                )
    return frame


def _typed_frame(text: str, kinds: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The rows parsed by pandas' C reader with each column's type; ValueError (or OverflowError) when a cell does
    not parse. Booleans stay text here and are checked by the caller. Floats come back exactly as written (checked
    against Python's float() on 600,000 values of every magnitude)."""
    dtypes = {column: {"int": "int64", "bool": "object"}.get(kind, "float64") for column, kind in kinds}
    return pd.read_csv(
        io.StringIO(text),
        dtype=dtypes,
        na_values={column: [""] for column, kind in kinds if kind not in ("int", "bool")},
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
        skip_blank_lines=False,
        engine="c",
    )


def _parse_column(path: Path, column: str, kind: str, cells: Sequence[str]) -> np.ndarray:
    def bad(index: int, what: str) -> FileProblem:
        return FileProblem(f"{path}: line {index + 2}, column {column}: {cells[index]!r} is not {what}")

    if kind == "bool":
        array = np.asarray(cells, dtype=object)
        ok = (array == "True") | (array == "False")
        if not ok.all():
            raise bad(int(np.flatnonzero(~ok)[0]), "True or False")
        return array == "True"
    if kind == "int":
        for index, cell in enumerate(cells):
            if not _INTEGER.fullmatch(cell):
                raise bad(index, "an integer")
        return np.asarray([int(cell) for cell in cells], dtype=np.int64)
    for index, cell in enumerate(cells):
        if cell:  # empty is a missing value (NaN); anything else is a number, written out
            try:
                number = float(cell)
            except ValueError:
                raise bad(index, "a number (a missing value is an empty cell)") from None
            if math.isnan(number):
                raise bad(index, "a number (a missing value is an empty cell)")
    return np.asarray([float(cell) if cell else math.nan for cell in cells], dtype=np.float64)

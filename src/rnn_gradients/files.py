"""Atomic writing and reading of files and run directories.

A run directory appears all at once or not at all: its files are written into a hidden sibling temporary
directory, which is then renamed onto the final path (``rename(2)`` is atomic and may replace an empty
directory, which is what Snakemake leaves when it creates an output's parent before the job starts). A job killed
at any point therefore leaves either a complete run or no run; the stale temporary directory is removed by the
next attempt.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_TMP_PREFIX = ".tmp-"


def _json_value(value: Any) -> Any:
    """Strict JSON has no NaN/Inf: they become ``null``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps_json(data: Mapping[str, Any]) -> str:
    """Deterministic JSON text (sorted keys, fixed indentation, NaN/Inf as null)."""
    clean = {key: _json_value(value) for key, value in data.items()}
    return json.dumps(clean, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write rows as CSV; floats in full precision (``repr``), NaN and None as empty cells."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_format_cell(value) for value in row])


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it is renamed onto ``path``.

    The file therefore appears whole or not at all; on an exception the temporary file is removed. Published
    files get ordinary permissions (0644), not mkstemp's private ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


class RunDirectoryWriter:
    """Collect a run's files in a temporary sibling directory, then publish them with one rename.

    Use as a context manager: the directory is published on a clean exit and discarded on an exception.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.out_dir.parent.glob(f"{_TMP_PREFIX}{self.out_dir.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.tmp_dir = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{self.out_dir.name}-", dir=self.out_dir.parent))

    def path(self, name: str) -> Path:
        return self.tmp_dir / name

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        self.path(name).write_text(dumps_json(data))

    def write_csv(self, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        write_csv(self.path(name), columns, rows)

    def publish(self) -> None:
        if self.out_dir.exists() and (not self.out_dir.is_dir() or any(self.out_dir.iterdir())):
            shutil.rmtree(self.out_dir)
        self.tmp_dir.chmod(0o755)  # mkdtemp makes it private; a published run is readable like any output
        os.replace(self.tmp_dir, self.out_dir)  # rename(2) may replace an empty directory

    def discard(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> RunDirectoryWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard()


def output_problem(path: Path, kind: str) -> str | None:
    """Why ``path`` cannot become the output ``kind`` ("run directory", "file"), in one line naming the path and
    what to do, or None when it can: something else already lies there (a file or a directory where the other
    belongs, a symbolic link, dangling or not), or a part of the path above it is not a directory. Checked before
    the work, so that a run is not trained (or a report rendered) only to fail when it is published."""
    path = Path(path)
    for parent in reversed(path.parents):
        if parent.is_symlink() and not parent.exists():
            return f"{parent}: a dangling symbolic link (to {os.readlink(parent)}) where a directory belongs above " \
                f"{path}; remove it (rm {parent}) or point it at a directory"  # fmt: skip
        if parent.exists() and not parent.is_dir():
            return f"{parent}: a file where a directory belongs above {path}; move it away or choose another path"
    if path.is_symlink():
        return f"{path}: a symbolic link (to {os.readlink(path)}) where a {kind} belongs; remove it (rm {path})"
    if kind == "run directory" and path.exists() and not path.is_dir():
        return f"{path}: a file where a run directory belongs; remove it (rm {path}) and run again"
    if kind == "file" and path.is_dir():
        return f"{path}: a directory where the output file belongs; choose another path or remove it"
    return None


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON file, with a message that names the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err

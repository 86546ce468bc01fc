"""The spec of one run: everything a run depends on, validated, written to its ``config.json``.

The study layer resolves one spec per point of its grid (:func:`rnn_gradients.study.grid.run_spec`); the
training loop (:mod:`rnn_gradients.engine.training`) needs nothing else. Two runs with equal specs are the same
run: its dataset is named by (task, seq_len, seed) and the split sizes, and ``engine`` fingerprints the code
that trains it (:func:`engine_fingerprint`), so an existing run directory whose ``config.json`` equals a spec can
stand for that run.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

OPTIMIZERS: tuple[str, ...] = ("adam", "rmsprop", "sgd")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
MAX_SEED = 2**63 - 1
"""The largest seed: the dataset file and the study tables store it as a signed 64-bit integer (torch's
generators would take up to 2^64 - 1)."""


@dataclass(frozen=True)
class RunSpec:
    """Everything one run depends on; written to ``config.json`` beside its results."""

    task: str
    seq_len: int
    cell: str
    strategy: str
    strategy_params: dict[str, Any]
    seed: int
    train_size: int = 10000
    val_size: int = 500
    test_size: int = 1000
    hidden_size: int = 64
    batch_size: int = 64
    steps: int = 1000
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    eval_every: int = 100  # validation-set evaluations decide early stopping
    probe_every: int = 500  # a probe costs about three training steps
    probe_batch: int = 128
    solved_fraction: float = 0.1  # solved: test error <= solved_fraction * chance error
    stop_fraction: float = 0.07  # early stop once validation error <= stop_fraction * chance error
    early_stop: bool = True  # stop a run once past the margin: the grid's budget goes to the runs that still learn
    device: str = "auto"
    engine: str = ""  # engine_fingerprint() of the code that trains the run

    def __post_init__(self) -> None:
        for field in fields(self):
            value, expected = getattr(self, field.name), _TYPES[str(field.type).split("[")[0]]
            if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
                kind = {bool: "true or false", dict: "a JSON object", str: "text", int: "an integer"}.get(
                    expected, "a number"
                )
                raise ValueError(f"run spec: {field.name} must be {kind}, got {value!r}")
        positive = (
            "seq_len", "train_size", "val_size", "test_size", "hidden_size", "batch_size", "steps", "eval_every",
            "probe_every", "probe_batch",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"run spec: {name} must be a positive integer, got {value!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"run spec: seed must be in 0..{MAX_SEED}, got {self.seed}")
        if self.seq_len < 2:
            raise ValueError(f"run spec: seq_len must be at least 2, got {self.seq_len}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"run spec: optimizer {self.optimizer!r} is not allowed; allowed: {', '.join(OPTIMIZERS)}")
        if self.device not in DEVICES:
            raise ValueError(f"run spec: device {self.device!r} is not allowed; allowed: {', '.join(DEVICES)}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"run spec: learning_rate must be positive, got {self.learning_rate!r}")
        if not 0 < self.solved_fraction <= 1:
            raise ValueError(f"run spec: solved_fraction must be in (0, 1], got {self.solved_fraction!r}")
        if not 0 < self.stop_fraction <= self.solved_fraction:
            raise ValueError(
                f"run spec: stop_fraction must be in (0, solved_fraction = {self.solved_fraction!r}], "
                f"got {self.stop_fraction!r}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"run spec: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        """Parse a JSON string, or ``@path`` to read it from a file."""
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TYPES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict}
"""A spec field's annotation -> the JSON values it takes (``true`` is no integer, ``"no"`` no boolean)."""


@cache
def engine_fingerprint() -> str:
    """A short hash of the engine's code: the syntax trees of its modules without docstrings, and the source of its
    compiled loops (``csrc/``, whose results equal the Python loops' bit for bit, but whose edits retrain anyway).

    Editing how runs are generated, trained or measured changes it (and so every spec, which retrains every run);
    editing a comment, a docstring or the formatting of a Python module does not.
    """
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted([*package.glob("*.py"), package.parent / "files.py"]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and _is_docstring(body[0]):
                node.body = body[1:] or [ast.Pass()]
        digest.update(path.name.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    for path in sorted(package.glob("csrc/*")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )

"""What one run writes: the files of a run directory, their columns and fields, as typed records.

The training loop (:mod:`rnn_gradients.engine.training`) produces these records; the study layer
(:mod:`rnn_gradients.study.tables`) reads the files back. Both use the names defined here, and nothing else
spells them out.

==================  ==============================================================================================
file                content
==================  ==============================================================================================
``config.json``     the resolved :class:`~rnn_gradients.engine.run_spec.RunSpec`
``steps.csv``       one :class:`StepRecord` per optimizer step
``evals.csv``       one :class:`EvalRecord` per evaluation
``probes.csv``      one row per probe and time step t (:func:`probe_rows`)
``summary.json``    the :class:`RunSummary`
``runtime.json``    the :class:`RunRuntime` (wall time, threads, versions: the only non-deterministic file)
==================  ==============================================================================================

The directory appears atomically (:class:`rnn_gradients.files.RunDirectoryWriter`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from rnn_gradients.engine.model import PARAMETER_GROUPS
from rnn_gradients.engine.probes import ProbeResult
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.files import RunDirectoryWriter

RUN_FILES: tuple[str, ...] = ("config.json", "steps.csv", "evals.csv", "probes.csv", "summary.json", "runtime.json")


@dataclass(frozen=True)
class StepRecord:
    """One optimizer step: its loss and gradient norms, measured before clipping unless named ``post``.

    ``finite`` is False when the loss or the pre-clip norm is NaN/Inf (the step was not applied: the run
    diverged there); ``group_norms`` holds the pre-clip norm of each of PARAMETER_GROUPS (NaN for a group the
    model lacks).
    """

    step: int
    loss: float
    grad_norm_pre: float
    grad_norm_post: float
    clipped: bool
    finite: bool
    group_norms: tuple[float, ...]

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "step",
        "loss",
        "grad_norm_pre",
        "grad_norm_post",
        "clipped",
        "finite",
        *(f"grad_norm_{group}" for group in PARAMETER_GROUPS),
    )

    def row(self) -> tuple[Any, ...]:
        return (self.step, self.loss, self.grad_norm_pre, self.grad_norm_post, self.clipped, self.finite,
                *self.group_norms)  # fmt: skip


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation on the test set; ``solved`` when its error is at most the run's threshold."""

    step: int
    test_loss: float
    test_metric: float
    test_error: float
    solved: bool

    COLUMNS: ClassVar[tuple[str, ...]] = ("step", "test_loss", "test_metric", "test_error", "solved")

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.COLUMNS)


PROBE_COLUMNS: tuple[str, ...] = ("probe_step", "t", "grad_norm_h", "loss", "spectral_radius", "sigma_max", "gamma_eff")


def probe_rows(probes: Iterable[ProbeResult]) -> Iterator[tuple[Any, ...]]:
    """``probes.csv`` rows: one per probe and time step t = 1..L, the probe's scalars repeated on each."""
    for p in probes:
        for t, norm in enumerate(p.grad_norm_h, start=1):
            yield (p.step, t, float(norm), p.loss, p.spectral_radius, p.sigma_max, p.gamma_eff)


@dataclass(frozen=True)
class RunSummary:
    """``summary.json``: the run's identity, then its outcome on the test set."""

    task: str
    seq_len: int
    cell: str
    strategy: str
    seed: int
    metric: str
    value: float
    chance: float
    error: float
    chance_error: float
    loss: float
    chance_loss: float
    solved: bool
    solve_threshold: float
    steps_to_solve: int | None
    diverged: bool
    diverged_step: int | None
    steps_run: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SUMMARY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunSummary))


@dataclass(frozen=True)
class RunRuntime:
    """``runtime.json``: how long the run took and where it ran."""

    wall_time_s: float
    ms_per_step: float
    threads: int
    device: str
    torch_version: str
    python_version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RUNTIME_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunRuntime))


def write_run_directory(
    out_dir: Path,
    spec: RunSpec,
    steps: Sequence[StepRecord],
    evals: Sequence[EvalRecord],
    probes: Sequence[ProbeResult],
    summary: RunSummary,
    runtime: RunRuntime,
) -> None:
    """Write every file of :data:`RUN_FILES` into ``out_dir``, which appears all at once."""
    with RunDirectoryWriter(out_dir) as writer:
        writer.write_json("config.json", spec.to_dict())
        writer.write_csv("steps.csv", StepRecord.COLUMNS, (record.row() for record in steps))
        writer.write_csv("evals.csv", EvalRecord.COLUMNS, (record.row() for record in evals))
        writer.write_csv("probes.csv", PROBE_COLUMNS, probe_rows(probes))
        writer.write_json("summary.json", summary.to_dict())
        writer.write_json("runtime.json", runtime.to_dict())

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

import json
import math
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
class Measurement:
    """Loss, metric and error of a model on one set of sequences, with the standard error of the error
    (the sample standard deviation of the per-sequence errors over √n)."""

    loss: float
    metric: float
    error: float
    error_se: float


NOT_MEASURED = Measurement(math.nan, math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation: on the validation set, which decides ``solved`` (error at most the run's threshold) and
    early stopping, and, at the run's final evaluation only, on the test set (NaN before: the test set is
    touched once)."""

    step: int
    val: Measurement
    test: Measurement
    solved: bool

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "step", "val_loss", "val_metric", "val_error", "test_loss", "test_metric", "test_error", "solved",
    )  # fmt: skip

    def row(self) -> tuple[Any, ...]:
        v, t = self.val, self.test
        return (self.step, v.loss, v.metric, v.error, t.loss, t.metric, t.error, self.solved)


PROBE_COLUMNS: tuple[str, ...] = (
    "probe_step", "t", "grad_norm_h", "loss", "spectral_radius", "sigma_max", "sigma_rms", "rms_dphi",
)  # fmt: skip


def probe_rows(probes: Iterable[ProbeResult]) -> Iterator[tuple[Any, ...]]:
    """``probes.csv`` rows: one per probe and time step t = 1..L, the probe's scalars repeated on each."""
    for p in probes:
        for t, norm in enumerate(p.grad_norm_h, start=1):
            yield (p.step, t, float(norm), p.loss, p.spectral_radius, p.sigma_max, p.sigma_rms, p.rms_dphi)


@dataclass(frozen=True)
class RunSummary:
    """``summary.json``: the run's identity, then its outcome on the test set.

    ``value``/``error``/``loss`` are the final model's test metric, error and loss, ``error_se`` the standard
    error of ``error``; ``train_error`` (± ``train_error_se``) is the same model's error on a sample of training
    sequences as large as the test set, so a gap between the two can be told from sampling noise. ``solved``:
    the final test error is at most ``solve_threshold`` (and the run did not diverge); ``steps_to_solve``: the
    first evaluation at which the validation error was.
    """

    task: str
    seq_len: int
    cell: str
    strategy: str
    seed: int
    metric: str
    value: float
    chance: float
    error: float
    error_se: float
    chance_error: float
    loss: float
    chance_loss: float
    train_error: float
    train_error_se: float
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
    """``runtime.json``: how long the run took, where the time went, and where it ran.

    ``wall_time_s`` counts from the start of :func:`~rnn_gradients.engine.training.train_run` to the end of
    writing (the process start and imports come before it); of that, ``setup_s`` loads the data and builds the
    model, ``ms_per_step`` × steps is the optimizer steps, ``eval_s`` the evaluations (with batch-norm population
    statistics) and ``probe_s`` the gradient probes. Where it ran, as far as the numbers depend on it
    (:mod:`rnn_gradients.engine.machine`): ``cpu_model``, ``cpu_capability`` (the instruction set of torch's
    kernels), ``libraries`` (MKL and oneDNN versions), ``numerics_settings`` (MKL_CBWR and the like, '' if unset)
    and ``compiled_kernels`` (:func:`rnn_gradients.engine.extension.status`: whether the compiled kernels ran — the
    vanilla cells' and the GRU's loops, the gradient norms and Adam's update; the results are the same either way,
    the speed is not).
    """

    wall_time_s: float
    setup_s: float
    eval_s: float
    probe_s: float
    ms_per_step: float
    threads: int
    device: str
    torch_version: str
    python_version: str
    cpu_model: str
    cpu_capability: str
    libraries: str
    numerics_settings: str
    compiled_kernels: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RUNTIME_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunRuntime))


def completed_run(out_dir: Path, spec: RunSpec) -> RunSummary | None:
    """The summary of ``out_dir`` when it holds a complete run trained from exactly ``spec``, else None.

    Complete: every file of :data:`RUN_FILES` is there (a run directory appears all at once, so a present
    directory is whole) and ``config.json`` and ``summary.json`` read back. A different spec (another
    hyper-parameter, dataset size or engine fingerprint) is a different run.
    """
    out_dir = Path(out_dir)
    if not all((out_dir / name).is_file() for name in RUN_FILES):
        return None
    try:
        config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
        summary = RunSummary(**json.loads((out_dir / "summary.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return summary if config == spec.to_dict() else None


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

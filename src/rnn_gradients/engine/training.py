"""One training loop for every (task, cell, strategy): the measurements of the study come from here.

Each optimization step, in this order (Pascanu et al. 2013, Alg. 1; clipping before ``backward`` would never
clip, a bug seen in the wild):

    forward → loss → backward → measure ‖g‖ (global and per parameter, *before* clipping)
    → stop as "diverged at step k" if the loss or ‖g‖ is not finite → clip → measure ‖g‖ again → optimizer step

Every ``eval_every`` steps the model is evaluated on the validation set; an evaluation whose validation error
(MSE, or 1 − accuracy) is at most ``solved_fraction`` × the task's chance error (the solve threshold) is marked
solved. With ``early_stop`` the run stops at the first evaluation whose validation error is at most
``stop_fraction`` × chance (by default 70 % of the threshold): a run that stops has learned well past the line its
verdict is drawn on, so sampling noise between the validation and the test set cannot put it on the wrong side
(stopping *at* the threshold left a quarter of the solved runs within ±20 % of it). The test set is touched once,
by the final model: the reported metric comes from it, and so does the run's verdict "solved" (test error at most
the threshold). Validation and test may disagree; both are results. Models with batch normalization are evaluated with
population statistics estimated on training data for the weights being evaluated
(:func:`~rnn_gradients.engine.normalization.population_statistics`). Every ``probe_every`` steps, and at the
start and the end, :mod:`rnn_gradients.engine.probes` measures the gradient flowing back through time on a
fixed probe batch (validation sequences).

A diverging run is a *result*: its NaN/Inf step is recorded, the loop ends, the run is written like any other.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from rnn_gradients.engine import direct_step, extension, optimizers
from rnn_gradients.engine.datasets import load_dataset
from rnn_gradients.engine.initialization import init_chrono, init_default, init_recurrent
from rnn_gradients.engine.machine import (
    cpu_capability,
    cpu_model,
    keep_freed_memory,
    library_versions,
    numerics_settings,
)
from rnn_gradients.engine.model import PARAMETER_GROUPS, SequenceModel
from rnn_gradients.engine.normalization import population_statistics
from rnn_gradients.engine.optimizers import Optimizer
from rnn_gradients.engine.probes import ProbeResult, probe
from rnn_gradients.engine.run_files import (
    NOT_MEASURED,
    RUN_FILES,
    EvalRecord,
    Measurement,
    RunRuntime,
    RunSummary,
    StepRecord,
    completed_run,
    write_run_directory,
)
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.engine.tasks import Task, get_task


def resolve_device(name: str) -> torch.device:
    """``auto`` is a CUDA GPU when torch sees one, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("run spec: device 'cuda' was asked for, but torch sees no CUDA device")
    return torch.device(name)


def build_model(spec: RunSpec, task: Task, strategy: Strategy) -> SequenceModel:
    """The model of a run, initialized from ``spec.seed`` through an explicit generator."""
    strategy.check_applicable(spec.cell)
    max_len = task.input_length(spec.seq_len)
    model = SequenceModel(
        spec.cell,
        task.input_size,
        spec.hidden_size,
        task.output_size,
        readout=task.readout,
        norm=strategy.norm,
        max_len=max_len,
    )
    generator = torch.Generator().manual_seed(spec.seed)
    init_default(model, generator)
    init_recurrent(model.recurrent.cell, strategy.init, generator, spectral_norm=strategy.spectral_norm)
    if strategy.chrono:
        init_chrono(model.recurrent.cell, max_len, generator)
    return model


def make_optimizer(spec: RunSpec, params: list[torch.nn.Parameter]) -> Optimizer:
    """The run's optimizer (:mod:`~rnn_gradients.engine.optimizers`: torch.optim's update rules, bit for bit)."""
    return optimizers.make_optimizer(spec.optimizer, params, spec.learning_rate)


class GradientMeter:
    """Global and per-group gradient norms ‖g‖₂ with one device→host transfer per measurement.

    ‖g‖ over all parameters is √(Σ_groups ‖g_group‖²); the squares are summed in float64.
    """

    def __init__(self, model: SequenceModel) -> None:
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        groups = [PARAMETER_GROUPS.index(model.parameter_group(name)) for name, _ in named]
        self.present = sorted(set(groups))
        self.index = torch.tensor(groups, device=self.params[0].device)

    def measure(self) -> tuple[float, tuple[float, ...]]:
        """(‖g‖ over all parameters, ‖g‖ per group in PARAMETER_GROUPS order; NaN for absent groups).

        By the compiled kernels' ``gradient_norms`` where they are offered (the same ops in one call), else by
        :func:`gradient_norms`."""
        grads = [p.grad for p in self.params]
        kernels = extension.kernels()
        norms = gradient_norms if kernels is None else kernels.gradient_norms
        values = norms(grads, self.index, len(PARAMETER_GROUPS))
        per_group = tuple(values[1 + i] if i in self.present else math.nan for i in range(len(PARAMETER_GROUPS)))
        return values[0], per_group


def gradient_norms(grads: list[torch.Tensor], group_of: torch.Tensor, groups: int) -> list[float]:
    """[‖g‖ over all of ``grads``, then ‖g‖ of each of ``groups`` groups], gradient k in group ``group_of[k]``:
    ‖g_group‖² = Σ_{k in group} ‖g_k‖², ‖g‖ = √(Σ_k ‖g_k‖²), the squares summed in float64."""
    squares = torch.stack([torch.linalg.vector_norm(grad) for grad in grads]).double() ** 2
    group = torch.zeros(groups, dtype=squares.dtype, device=squares.device)
    group.index_add_(0, group_of, squares)
    return torch.cat([squares.sum().sqrt().reshape(1), group.sqrt()]).tolist()


class BatchOrder:
    """Mini-batch indices: a fresh random permutation of the training set per epoch, from ``generator``."""

    def __init__(self, n_train: int, batch_size: int, generator: torch.Generator) -> None:
        self.n_train, self.batch_size, self.generator = n_train, min(batch_size, n_train), generator
        self.permutation = torch.randperm(n_train, generator=generator)
        self.cursor = 0

    def next(self) -> torch.Tensor:
        if self.cursor + self.batch_size > self.n_train:
            self.permutation = torch.randperm(self.n_train, generator=self.generator)
            self.cursor = 0
        index = self.permutation[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return index


def evaluate(
    model: SequenceModel, task: Task, x: torch.Tensor, y: torch.Tensor, *, population: torch.Tensor
) -> Measurement:
    """Loss, metric and error (± its standard error) on a whole set, in evaluation mode; batch normalization
    uses population statistics of ``population`` (training sequences) for the current weights."""
    was_training = model.training
    with population_statistics(model, population), torch.no_grad():
        model.eval()
        output = model(x)
        loss = task.loss(output, y).item()
        errors = task.errors(output, y)
    model.train(was_training)
    error = errors.mean().item()
    se = (errors.std() / math.sqrt(errors.numel())).item() if errors.numel() > 1 else math.nan
    return Measurement(loss, task.metric_of(error), error, se)


def optimization_step(
    step: int,
    model: SequenceModel,
    optimizer: Optimizer,
    meter: GradientMeter,
    strategy: Strategy,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
) -> StepRecord:
    """One step in the order forward → backward → measure → (diverged?) → clip → measure → update.

    A non-finite loss or gradient skips the update and comes back with ``finite`` False: the caller records the
    divergence, it never raises.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = direct_step.loss_and_gradients(model, task, x, y)  # autograd's results, without its graph
    if loss is None:
        loss = task.loss(model(x), y)
        loss.backward()
    pre, per_group = meter.measure()
    loss_value = loss.item()
    if not (math.isfinite(loss_value) and math.isfinite(pre)):
        return StepRecord(step, loss_value, pre, math.nan, clipped=False, finite=False, group_norms=per_group)
    if strategy.clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(meter.params, strategy.clip_norm)
    if strategy.clip_value is not None:
        torch.nn.utils.clip_grad_value_(meter.params, strategy.clip_value)
    post = meter.measure()[0] if strategy.clipped else pre
    optimizer.step()
    return StepRecord(step, loss_value, pre, post, clipped=post < pre, finite=True, group_norms=per_group)


@dataclass(frozen=True)
class RunData:
    """A run's tensors: training batches come from ``train``; ``val`` decides early stopping; ``test`` is
    touched once; ``sample`` (training sequences, as many as the test set) gives batch-norm population statistics
    and the final training error; ``probe`` (validation sequences) is the gradient probes' fixed batch."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    sample: tuple[torch.Tensor, torch.Tensor]
    probe: tuple[torch.Tensor, torch.Tensor]

    @classmethod
    def load(cls, spec: RunSpec, task: Task, path: Path, device: torch.device) -> RunData:
        dataset = load_dataset(path)
        if (dataset.task, dataset.seq_len, dataset.seed) != (spec.task, spec.seq_len, spec.seed):
            raise ValueError(
                f"{path} holds task {dataset.task!r} at T={dataset.seq_len} with seed {dataset.seed}, "
                f"but the run is {spec.task!r} at T={spec.seq_len} with seed {spec.seed}"
            )
        sizes = {split: next(iter(getattr(dataset, split).values())).shape[0] for split in ("train", "val", "test")}
        wanted = {"train": spec.train_size, "val": spec.val_size, "test": spec.test_size}
        if sizes != wanted:
            raise ValueError(f"{path} has split sizes {sizes}, but the run's spec says {wanted}; regenerate it")
        train, val, test = (
            tuple(t.to(device) for t in task.to_tensors(split)) for split in (dataset.train, dataset.val, dataset.test)
        )
        n_test = test[0].shape[0]
        return cls(
            train=train,
            val=val,
            test=test,
            sample=(train[0][:n_test], train[1][:n_test]),
            probe=(val[0][: spec.probe_batch], val[1][: spec.probe_batch]),
        )


def validation(step: int, model: SequenceModel, task: Task, data: RunData, threshold: float) -> EvalRecord:
    """The validation at ``step``, logged; solved when the validation error is finite and at most ``threshold``."""
    val = evaluate(model, task, *data.val, population=data.sample[0])
    print(f"step {step:6d}  validation loss {val.loss:.4g}  {task.metric_name} {val.metric:.4g}", flush=True)
    return EvalRecord(step, val, NOT_MEASURED, solved=math.isfinite(val.error) and val.error <= threshold)


def train_run(spec: RunSpec, data_path: Path, out_dir: Path, threads: int = 1) -> RunSummary:
    """Train one run and write its run directory atomically; return its summary."""
    wall_start = time.perf_counter()
    torch.set_num_threads(threads)
    # Vanishing gradients pass through the subnormal range; flushing it to zero guards against the slow path some
    # CPUs take there. On this project's machine it made no difference either way (benchmarks/README.md).
    torch.set_flush_denormal(True)
    keep_freed_memory()  # no page faults on the step's fresh buffers (machine.keep_freed_memory)
    device = resolve_device(spec.device)
    strategy = Strategy.from_dict(spec.strategy, spec.strategy_params)
    task = get_task(spec.task)
    data = RunData.load(spec, task, data_path, device)
    model = build_model(spec, task, strategy).to(device)
    optimizer = make_optimizer(spec, list(model.parameters()))
    meter = GradientMeter(model)
    chance_error = task.chance_error(spec.seq_len)
    threshold = spec.solved_fraction * chance_error
    stop_at = spec.stop_fraction * chance_error
    batches = BatchOrder(data.train[0].shape[0], spec.batch_size, torch.Generator().manual_seed(spec.seed))
    timer = Stopwatch()
    timer.add("setup", time.perf_counter() - wall_start)

    steps: list[StepRecord] = []
    evals: list[EvalRecord] = []
    probes: list[ProbeResult] = []
    diverged_step: int | None = None
    step = 0
    while True:
        if step % spec.probe_every == 0:
            with timer("probe"):
                probes.append(probe(model, task, *data.probe, step))
        if step % spec.eval_every == 0:
            with timer("eval"):
                evals.append(validation(step, model, task, data, threshold))
            if spec.early_stop and evals[-1].val.error <= stop_at:  # False for NaN
                break
        if step == spec.steps:
            break
        with timer("steps"):
            index = batches.next().to(device)
            x, y = data.train[0][index], data.train[1][index]
            record = optimization_step(step, model, optimizer, meter, strategy, task, x, y)
        steps.append(record)
        if not record.finite:
            diverged_step = step
            print(f"step {step:6d}  diverged: loss {record.loss}, gradient norm {record.grad_norm_pre}", flush=True)
            break
        step += 1

    with timer("probe"):
        if probes[-1].step != step:
            probes.append(probe(model, task, *data.probe, step))
    with timer("eval"):
        if evals[-1].step != step:
            evals.append(validation(step, model, task, data, threshold))
        test = evaluate(model, task, *data.test, population=data.sample[0])
        train = evaluate(model, task, *data.sample, population=data.sample[0])
    evals[-1] = EvalRecord(step, evals[-1].val, test, evals[-1].solved)
    print(f"step {step:6d}  test loss {test.loss:.4g}  {task.metric_name} {test.metric:.4g}", flush=True)
    summary = RunSummary(
        task=spec.task,
        seq_len=spec.seq_len,
        cell=spec.cell,
        strategy=spec.strategy,
        seed=spec.seed,
        metric=task.metric_name,
        value=test.metric,
        chance=task.chance_metric(spec.seq_len),
        error=test.error,
        error_se=test.error_se,
        chance_error=chance_error,
        loss=test.loss,
        chance_loss=task.chance_loss(spec.seq_len),
        train_error=train.error,
        train_error_se=train.error_se,
        solved=diverged_step is None and math.isfinite(test.error) and test.error <= threshold,
        solve_threshold=threshold,
        steps_to_solve=next((e.step for e in evals if e.solved), None),
        diverged=diverged_step is not None,
        diverged_step=diverged_step,
        steps_run=step,
    )
    runtime = RunRuntime(
        wall_time_s=time.perf_counter() - wall_start,
        setup_s=timer.seconds["setup"],
        eval_s=timer.seconds["eval"],
        probe_s=timer.seconds["probe"],
        ms_per_step=1000 * timer.seconds["steps"] / max(len(steps), 1),
        threads=torch.get_num_threads(),
        device=str(device),
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        cpu_model=cpu_model(),
        cpu_capability=cpu_capability(),
        libraries=library_versions(),
        numerics_settings=numerics_settings(),
        compiled_kernels=extension.status(),
    )
    write_run_directory(out_dir, spec, steps, evals, probes, summary, runtime)
    return summary


def train_runs(
    specs: Sequence[RunSpec], data_paths: Sequence[Path], out_dirs: Sequence[Path], threads: int = 1
) -> list[RunSummary]:
    """Train several runs in one process (one import of torch, one process start), each into its own directory.

    A directory that already holds a complete run of exactly its spec (:func:`completed_run`) is kept as it is
    (its files are touched, so they are newer than their inputs), so adding a seed to a study trains only the new
    seed's run. Returns the summaries in the order of ``specs``.
    """
    if not len(specs) == len(data_paths) == len(out_dirs):
        raise ValueError(
            f"train: {len(specs)} specs, {len(data_paths)} data files and {len(out_dirs)} run directories; "
            "give one of each per run"
        )
    summaries = []
    for spec, data_path, out_dir in zip(specs, data_paths, out_dirs, strict=True):
        summary = completed_run(out_dir, spec)
        if summary is None:
            summary = train_run(spec, data_path, out_dir, threads)
        else:
            for name in RUN_FILES:
                os.utime(Path(out_dir) / name)
            print(f"{out_dir}: already trained with this spec; kept", flush=True)
        summaries.append(summary)
    return summaries


class Stopwatch:
    """Seconds spent per named part of a run (``with timer("eval"): ...``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"setup": 0.0, "steps": 0.0, "eval": 0.0, "probe": 0.0}

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] += seconds

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(part, time.perf_counter() - start)

"""One training loop for every (task, cell, strategy): the measurements of the study come from here.

Each optimisation step, in this order (Pascanu et al. 2013, Alg. 1; clipping before ``backward`` would never
clip, a bug seen in the wild):

    forward → loss → backward → measure ‖g‖ (global and per parameter, *before* clipping)
    → stop as "diverged at step k" if the loss or ‖g‖ is not finite → clip → measure ‖g‖ again → optimiser step

Every ``eval_every`` steps the model is evaluated on the held-out test set; a run is *solved* once its test error
(MSE, or 1 − accuracy) is at most ``solved_fraction`` × the task's chance error, and stops early then if
``early_stop`` is set. Every ``probe_every`` steps, and at the start and the end, :mod:`rnn_gradients.probes`
measures the gradient flowing back through time on a fixed probe batch.

A diverging run is a *result*: its NaN/Inf step is recorded, the loop ends, the run is written like any other.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from rnn_gradients.initialization import init_chrono, init_default, init_recurrent
from rnn_gradients.model import PARAMETER_GROUPS, SequenceModel
from rnn_gradients.probes import ProbeResult, probe
from rnn_gradients.runio import RunDirectoryWriter
from rnn_gradients.strategies import Strategy
from rnn_gradients.tasks import Task, get_task, load_dataset

OPTIMIZERS = ("adam", "rmsprop", "sgd")
DEVICES = ("auto", "cpu", "cuda")
STEP_COLUMNS = (
    "step",
    "loss",
    "grad_norm_pre",
    "grad_norm_post",
    "clipped",
    "finite",
    *(f"grad_norm_{group}" for group in PARAMETER_GROUPS),
)
EVAL_COLUMNS = ("step", "test_loss", "test_metric", "test_error", "solved")
PROBE_COLUMNS = ("probe_step", "t", "grad_norm_h", "loss", "spectral_radius", "sigma_max", "gamma_eff")


@dataclass(frozen=True)
class RunSpec:
    """Everything one run depends on; written to ``config.json`` beside its results."""

    task: str
    seq_len: int
    cell: str
    strategy: str
    strategy_params: dict[str, Any]
    seed: int
    hidden_size: int = 64
    batch_size: int = 64
    steps: int = 1000
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    eval_every: int = 100  # test-set evaluations also decide early stopping
    probe_every: int = 500  # a probe costs about three training steps
    probe_batch: int = 128
    solved_fraction: float = 0.1  # solved: test error <= solved_fraction * chance error
    early_stop: bool = True  # stop a run once solved: the grid's budget goes to the runs that still learn
    device: str = "auto"

    def __post_init__(self) -> None:
        positive = (
            "seq_len",
            "hidden_size",
            "batch_size",
            "steps",
            "eval_every",
            "probe_every",
            "probe_batch",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"run spec: {name} must be a positive integer, got {value!r}")
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("run spec: device 'cuda' was asked for, but torch sees no CUDA device")
    return torch.device(name)


def build_model(spec: RunSpec, task: Task, strategy: Strategy) -> SequenceModel:
    """The model of a run, initialised from ``spec.seed`` through an explicit generator."""
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


def make_optimizer(spec: RunSpec, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.learning_rate)
    if spec.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=spec.learning_rate)
    return torch.optim.SGD(params, lr=spec.learning_rate, momentum=0.9)


class GradientMeter:
    """Global and per-group gradient norms with one device→host transfer per measurement."""

    def __init__(self, model: SequenceModel) -> None:
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        groups = [PARAMETER_GROUPS.index(model.parameter_group(name)) for name, _ in named]
        self.present = sorted(set(groups))
        self.index = torch.tensor(groups, device=self.params[0].device)

    def measure(self) -> tuple[float, list[float]]:
        """(‖g‖ over all parameters, ‖g‖ per group in PARAMETER_GROUPS order; NaN for absent groups)."""
        grads = [p.grad for p in self.params]
        squares = torch.stack(torch._foreach_norm(grads)).double() ** 2
        group = torch.zeros(len(PARAMETER_GROUPS), dtype=squares.dtype, device=squares.device)
        group.index_add_(0, self.index, squares)
        values = torch.cat([squares.sum().sqrt().reshape(1), group.sqrt()]).tolist()
        per_group = [values[1 + i] if i in self.present else math.nan for i in range(len(PARAMETER_GROUPS))]
        return values[0], per_group


def evaluate(model: SequenceModel, task: Task, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """(loss, metric, error) on a whole set, in evaluation mode (population statistics for batch norm)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        output = model(x)
        result = task.loss(output, y).item(), task.metric(output, y), task.error(output, y)
    model.train(was_training)
    return result


def optimisation_step(
    model: SequenceModel,
    optimizer: torch.optim.Optimizer,
    meter: GradientMeter,
    strategy: Strategy,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
) -> list[Any]:
    """One step in the order forward → backward → measure → (diverged?) → clip → measure → update.

    Returns the ``steps.csv`` row without its step index: loss, pre-clip norm, post-clip norm, clipped, finite,
    and the pre-clip norm of each parameter group. A non-finite loss or gradient skips the update and comes back
    with ``finite`` False: the caller records the divergence, it never raises.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = task.loss(model(x), y)
    loss.backward()
    pre, per_group = meter.measure()
    loss_value = loss.item()
    if not (math.isfinite(loss_value) and math.isfinite(pre)):
        return [loss_value, pre, math.nan, False, False, *per_group]
    if strategy.clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(meter.params, strategy.clip_norm)
    if strategy.clip_value is not None:
        torch.nn.utils.clip_grad_value_(meter.params, strategy.clip_value)
    post = meter.measure()[0] if strategy.clip_norm or strategy.clip_value else pre
    optimizer.step()
    return [loss_value, pre, post, post < pre, True, *per_group]


def train_run(spec: RunSpec, data_path: Path, out_dir: Path, threads: int = 1) -> dict[str, Any]:
    """Train one run and write its run directory atomically; return its summary."""
    wall_start = time.perf_counter()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # subnormal gradients make long sequences 5-10x slower (MEASUREMENTS.md)
    device = resolve_device(spec.device)
    strategy = Strategy.from_dict(spec.strategy, spec.strategy_params)
    task = get_task(spec.task)
    dataset = load_dataset(data_path)
    if (dataset.task, dataset.seq_len) != (spec.task, spec.seq_len):
        raise ValueError(
            f"{data_path} holds task {dataset.task!r} at T={dataset.seq_len}, "
            f"but the run is {spec.task!r} at T={spec.seq_len}"
        )
    x_train, y_train = (t.to(device) for t in task.to_tensors(dataset.train))
    x_test, y_test = (t.to(device) for t in task.to_tensors(dataset.test))
    x_probe, y_probe = x_test[: spec.probe_batch], y_test[: spec.probe_batch]

    model = build_model(spec, task, strategy).to(device)
    optimizer = make_optimizer(spec, list(model.parameters()))
    meter = GradientMeter(model)
    chance_error = task.chance_error(spec.seq_len)
    threshold = spec.solved_fraction * chance_error
    order_generator = torch.Generator().manual_seed(spec.seed)
    n_train = x_train.shape[0]
    batch_size = min(spec.batch_size, n_train)

    step_rows: list[list[Any]] = []
    eval_rows: list[list[Any]] = []
    probes: list[ProbeResult] = []
    steps_to_solve: int | None = None
    diverged_step: int | None = None
    train_seconds = 0.0
    permutation = torch.randperm(n_train, generator=order_generator)
    cursor = 0

    def run_eval(step: int) -> bool:
        nonlocal steps_to_solve
        loss, metric, error = evaluate(model, task, x_test, y_test)
        solved = math.isfinite(error) and error <= threshold
        eval_rows.append([step, loss, metric, error, solved])
        print(f"step {step:6d}  test loss {loss:.4g}  {task.metric_name} {metric:.4g}", flush=True)
        if solved and steps_to_solve is None:
            steps_to_solve = step
        return solved

    step = 0
    while True:
        if step % spec.probe_every == 0:
            probes.append(probe(model, task, x_probe, y_probe, step))
        if step % spec.eval_every == 0 and run_eval(step) and spec.early_stop:
            break
        if step == spec.steps:
            break
        tick = time.perf_counter()
        if cursor + batch_size > n_train:
            permutation = torch.randperm(n_train, generator=order_generator)
            cursor = 0
        index = permutation[cursor : cursor + batch_size].to(device)
        cursor += batch_size

        record = optimisation_step(model, optimizer, meter, strategy, task, x_train[index], y_train[index])
        step_rows.append([step, *record])
        train_seconds += time.perf_counter() - tick
        if not record[4]:
            diverged_step = step
            print(f"step {step:6d}  diverged: loss {record[0]}, gradient norm {record[1]}", flush=True)
            break
        step += 1

    steps_run = step
    if not eval_rows or eval_rows[-1][0] != steps_run:
        run_eval(steps_run)
    if probes[-1].step != steps_run:
        probes.append(probe(model, task, x_probe, y_probe, steps_run))
    test_loss, metric, error = eval_rows[-1][1:4]
    solved = diverged_step is None and bool(eval_rows[-1][4])

    summary = {
        "task": spec.task,
        "seq_len": spec.seq_len,
        "cell": spec.cell,
        "strategy": spec.strategy,
        "seed": spec.seed,
        "metric": task.metric_name,
        "value": metric,
        "chance": task.chance_metric(spec.seq_len),
        "error": error,
        "chance_error": chance_error,
        "loss": test_loss,
        "chance_loss": task.chance_loss(spec.seq_len),
        "solved": solved,
        "solve_threshold": threshold,
        "steps_to_solve": steps_to_solve if solved else None,
        "diverged": diverged_step is not None,
        "diverged_step": diverged_step,
        "steps_run": steps_run,
    }
    runtime = {
        "wall_time_s": time.perf_counter() - wall_start,
        "ms_per_step": 1000 * train_seconds / max(len(step_rows), 1),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }
    probe_rows = (
        [p.step, t + 1, float(norm), p.loss, p.spectral_radius, p.sigma_max, p.gamma_eff]
        for p in probes
        for t, norm in enumerate(p.grad_norm_h)
    )
    with RunDirectoryWriter(out_dir) as writer:
        writer.write_json("config.json", spec.to_dict())
        writer.write_csv("steps.csv", STEP_COLUMNS, step_rows)
        writer.write_csv("evals.csv", EVAL_COLUMNS, eval_rows)
        writer.write_csv("probes.csv", PROBE_COLUMNS, probe_rows)
        writer.write_json("summary.json", summary)
        writer.write_json("runtime.json", runtime)
    return summary

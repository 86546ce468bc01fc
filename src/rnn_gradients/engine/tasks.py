"""Synthetic long-dependency tasks: generators, losses, metrics and chance baselines.

Every task is a pure function of the delay ``T`` (``seq_len``), the number of sequences ``n`` and an explicit
``numpy.random.Generator``; the global RNG is never touched. Generators store data compactly (``uint8``
symbol ids, ``float32`` values, ``uint8`` labels); :meth:`Task.to_tensors` expands them into ``float32``
one-hot inputs ``x`` of shape ``(N, L, input_size)`` and targets ``y``. Dataset files are
:mod:`rnn_gradients.engine.datasets`.

Tasks (definitions from the papers cited in each class):

``adding``          Arjovsky, Shah & Bengio 2016, "Unitary Evolution Recurrent Neural Networks" (ICML).
``copy``            Arjovsky, Shah & Bengio 2016 (copy memory).
``temporal_order``  Hochreiter & Schmidhuber 1997, "Long Short-Term Memory" (Neural Computation), exp. 6a,
                    with the generator of Pascanu, Mikolov & Bengio 2013, "On the difficulty of training
                    recurrent neural networks" (ICML).
``first_symbol``    first-symbol recall, a latching problem in the spirit of Bengio, Simard & Frasconi 1994,
                    "Learning long-term dependencies with gradient descent is difficult" (IEEE TNN).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# The kernels of autograd's backward for the tasks' losses (the overloads themselves: see bptt), ATen's reduction
# code for a mean and cross-entropy's default ignore_index.
_mse_loss_backward = torch.ops.aten.mse_loss_backward.default
_nll_loss_forward = torch.ops.aten.nll_loss_forward.default
_nll_loss_backward = torch.ops.aten.nll_loss_backward.default
_log_softmax_backward = torch.ops.aten._log_softmax_backward_data.default
_MEAN = 1
_IGNORE_INDEX = -100


def check_int(name: str, value: object, minimum: int, why: str = "") -> int:
    """Return ``value`` as an int, or raise ValueError naming the value and the minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be >= {minimum}{reason}, got {int(value)}")
    return int(value)


def _one_hot(symbols: np.ndarray, num_classes: int) -> Tensor:
    """``(N, L)`` symbol ids -> ``(N, L, num_classes)`` float32 one-hot."""
    return F.one_hot(torch.from_numpy(symbols.astype(np.int64)), num_classes).to(torch.float32)


def _wrong(logits: Tensor, target: Tensor) -> Tensor:
    """1.0 where the arg-max class differs from the target, else 0.0 (float64, shape of ``target``)."""
    return (logits.detach().argmax(dim=-1) != target).to(torch.float64)


class Task(ABC):
    """A synthetic task: data generator, loss, user-facing metric, error (lower is better) and chance levels.

    ``readout == "last"``: the model predicts from ``h_T`` only and ``output`` has shape ``(B, output_size)``.
    ``readout == "all"``: it predicts at every step and ``output`` has shape ``(B, L, output_size)``.
    Classification outputs are logits.
    """

    name: str
    input_size: int
    output_size: int
    readout: Literal["last", "all"]
    metric_name: Literal["mse", "accuracy"]
    min_seq_len: int = 2

    def check_seq_len(self, seq_len: int) -> int:
        """Validate the delay ``T``; ValueError naming the value and the task's minimum."""
        return check_int("seq_len", seq_len, self.min_seq_len, f"task {self.name!r}")

    def input_length(self, seq_len: int) -> int:
        """Number of time steps fed to the model; equal to ``T`` unless the task adds steps."""
        return self.check_seq_len(seq_len)

    @abstractmethod
    def value_ranges(self, seq_len: int) -> dict[str, tuple[float, float]]:
        """The closed range ``(low, high)`` of every array :meth:`generate` returns, at delay ``seq_len``: what a
        dataset file read back must hold (a symbol or label outside it would index past the one-hot width)."""

    def generate(self, seq_len: int, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw ``n`` sequences of delay ``seq_len`` from ``rng``; compact numpy arrays keyed by name."""
        seq_len = self.check_seq_len(seq_len)
        n = check_int("n", n, 1)
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return self._sample(seq_len, n, rng)

    @abstractmethod
    def _sample(self, seq_len: int, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The generator proper; arguments already validated."""

    @abstractmethod
    def to_tensors(self, arrays: dict[str, np.ndarray]) -> tuple[Tensor, Tensor]:
        """Inputs ``x`` (N, L, input_size) float32 and targets ``y`` from :meth:`generate`'s arrays."""

    @abstractmethod
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Scalar training loss, differentiable in ``output``."""

    def loss_and_gradient(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor] | None:
        """(:meth:`loss`, ∂loss/∂output) by the very kernels that ``loss(output, target).backward()`` runs, bit for
        bit (for :mod:`~rnn_gradients.engine.direct_step`), or None where the task leaves its gradient to
        autograd."""
        return None

    @abstractmethod
    def errors(self, output: Tensor, target: Tensor) -> Tensor:
        """Per-sequence error, float64 of shape (B,): the squared error, or the share of wrong predictions.

        The task's error is their mean; their spread gives its standard error.
        """

    def error(self, output: Tensor, target: Tensor) -> float:
        """Lower is better: the MSE, or ``1 - accuracy``."""
        return self.errors(output, target).mean().item()

    def metric_of(self, error: float) -> float:
        """The user-facing metric for an error: the MSE itself, or the accuracy ``1 - error``."""
        return error if self.metric_name == "mse" else 1.0 - error

    def metric(self, output: Tensor, target: Tensor) -> float:
        """User-facing metric: MSE or accuracy."""
        return self.metric_of(self.error(output, target))

    @abstractmethod
    def chance_loss(self, seq_len: int) -> float:
        """Loss of the best predictor that ignores the information the task asks to remember."""

    @abstractmethod
    def chance_metric(self, seq_len: int) -> float:
        """Metric of that memoryless predictor."""

    def chance_error(self, seq_len: int) -> float:
        """Error of that memoryless predictor."""
        value = self.chance_metric(seq_len)
        return value if self.metric_name == "mse" else 1.0 - value


class AddingTask(Task):
    """Adding problem, the variant of Arjovsky, Shah & Bengio 2016 (ICML).

    Input of length ``T`` with 2 channels: values ``u_t ~ U[0, 1)`` and a marker channel with exactly two
    ones, at ``a ~ U{0, ..., T//2 - 1}`` (first half) and ``b ~ U{T//2, ..., T - 1}`` (second half). Target
    ``y = u_a + u_b``, read from the last step; loss and metric are the MSE.

    Chance: predicting the mean ``E[y] = 1`` gives ``MSE = Var(u_a + u_b) = 2 / 12 = 1/6``.

    Arrays: ``values`` float32 (N, T), ``positions`` int32 (N, 2) = (a, b), ``target`` float32 (N,).
    Tensors: ``x`` (N, T, 2) with channels (value, marker); ``y`` float32 (N, 1).
    """

    name = "adding"
    input_size = 2
    output_size = 1
    readout = "last"
    metric_name = "mse"

    def _sample(self, seq_len: int, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        half = seq_len // 2
        values = rng.random((n, seq_len), dtype=np.float32)
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, seq_len, size=n)
        rows = np.arange(n)
        target = values[rows, first] + values[rows, second]
        return {
            "values": values,
            "positions": np.stack([first, second], axis=1).astype(np.int32),
            "target": target.astype(np.float32),
        }

    def value_ranges(self, seq_len: int) -> dict[str, tuple[float, float]]:
        length = self.input_length(seq_len)
        return {"values": (0.0, 1.0), "positions": (0, length - 1), "target": (0.0, 2.0)}

    def to_tensors(self, arrays: dict[str, np.ndarray]) -> tuple[Tensor, Tensor]:
        values = arrays["values"]
        markers = np.zeros_like(values, dtype=np.float32)
        rows = np.arange(values.shape[0])[:, None]
        markers[rows, arrays["positions"].astype(np.int64)] = 1.0
        x = torch.from_numpy(np.stack([values.astype(np.float32), markers], axis=-1))
        y = torch.from_numpy(arrays["target"].astype(np.float32)).unsqueeze(1)
        return x, y

    @staticmethod
    def _check_shapes(output: Tensor, target: Tensor) -> None:
        # A (B, 1) output against a (B,) target would broadcast to (B, B) and give a silently wrong MSE.
        if output.shape != target.shape or output.dim() != 2 or output.shape[1] != 1:
            raise ValueError(
                f"adding expects output and target of shape (B, 1), got {tuple(output.shape)} and {tuple(target.shape)}"
            )

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(output, target)
        return F.mse_loss(output, target)

    def loss_and_gradient(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """MSE = mean (o − y)², ∂/∂o = 2 (o − y) / N: autograd's ``mse_loss_backward`` from a seed of 1."""
        loss = self.loss(output, target)
        return loss, _mse_loss_backward(torch.ones_like(loss), output, target, _MEAN)

    def errors(self, output: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(output, target)
        return (output.detach().to(torch.float64) - target.to(torch.float64)).square().squeeze(1)

    def chance_loss(self, seq_len: int) -> float:
        self.check_seq_len(seq_len)
        return 1.0 / 6.0

    def chance_metric(self, seq_len: int) -> float:
        return self.chance_loss(seq_len)


class CopyTask(Task):
    """Copy memory, Arjovsky, Shah & Bengio 2016 (ICML).

    Alphabet of 10: data symbols 0..7, blank 8, delimiter 9. Input of length ``T + 20``: 10 data symbols drawn
    uniformly from the 8, then ``T - 1`` blanks, the delimiter, 10 blanks. Target of length ``T + 20``:
    ``T + 10`` blanks, then the 10 data symbols in order. One-hot input (10 channels), 9 output classes (the
    delimiter is never a target), cross-entropy averaged over all ``T + 20`` steps.

    Metric: accuracy on the last 10 outputs (chance 1/8). Chance loss: the memoryless predictor (blank with
    certainty for the first ``T + 10`` steps, uniform over the 8 data symbols on the last 10) pays ``ln 8`` on
    each of 10 steps: ``10 ln 8 / (T + 20)`` nats per step.

    Arrays: ``symbols`` uint8 (N, T + 20) input ids, ``labels`` uint8 (N, T + 20) target ids.
    Tensors: ``x`` (N, T + 20, 10) one-hot; ``y`` int64 (N, T + 20).
    """

    name = "copy"
    n_data = 8
    blank = 8
    delimiter = 9
    n_copy = 10
    input_size = 10
    output_size = 9
    readout = "all"
    metric_name = "accuracy"

    def input_length(self, seq_len: int) -> int:
        return self.check_seq_len(seq_len) + 2 * self.n_copy

    def _sample(self, seq_len: int, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        length = seq_len + 2 * self.n_copy
        data = rng.integers(0, self.n_data, size=(n, self.n_copy), dtype=np.uint8)
        symbols = np.full((n, length), self.blank, dtype=np.uint8)
        symbols[:, : self.n_copy] = data
        symbols[:, seq_len + self.n_copy - 1] = self.delimiter
        labels = np.full((n, length), self.blank, dtype=np.uint8)
        labels[:, -self.n_copy :] = data
        return {"symbols": symbols, "labels": labels}

    def value_ranges(self, seq_len: int) -> dict[str, tuple[float, float]]:
        self.check_seq_len(seq_len)
        return {"symbols": (0, self.input_size - 1), "labels": (0, self.output_size - 1)}

    def to_tensors(self, arrays: dict[str, np.ndarray]) -> tuple[Tensor, Tensor]:
        return _one_hot(arrays["symbols"], self.input_size), torch.from_numpy(arrays["labels"].astype(np.int64))

    def _check_shapes(self, output: Tensor, target: Tensor) -> None:
        if output.dim() != 3 or output.shape[:2] != target.shape or output.shape[2] != self.output_size:
            raise ValueError(
                f"copy expects logits (B, L, {self.output_size}) and targets (B, L), got "
                f"{tuple(output.shape)} and {tuple(target.shape)}"
            )

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(output, target)
        return F.cross_entropy(output.reshape(-1, self.output_size), target.reshape(-1))

    def errors(self, output: Tensor, target: Tensor) -> Tensor:
        """The share of the 10 recalled symbols each sequence gets wrong."""
        self._check_shapes(output, target)
        return _wrong(output[:, -self.n_copy :], target[:, -self.n_copy :]).mean(dim=1)

    def chance_loss(self, seq_len: int) -> float:
        return self.n_copy * math.log(self.n_data) / self.input_length(seq_len)

    def chance_metric(self, seq_len: int) -> float:
        self.check_seq_len(seq_len)
        return 1.0 / self.n_data


class LastStepClassification(Task):
    """Classification of a symbol sequence at the last step: one-hot inputs, logits ``(B, n_classes)``,
    cross-entropy loss, accuracy metric. The label is independent of everything a memoryless predictor sees
    and uniform over the classes, so chance is ``ln(n_classes)`` for the loss and ``1/n_classes`` accuracy.

    Arrays: ``symbols`` uint8 (N, T) input ids, ``labels`` uint8 (N,) class ids.
    Tensors: ``x`` (N, T, input_size) one-hot; ``y`` int64 (N,).
    """

    readout = "last"
    metric_name = "accuracy"

    def value_ranges(self, seq_len: int) -> dict[str, tuple[float, float]]:
        self.check_seq_len(seq_len)
        return {"symbols": (0, self.input_size - 1), "labels": (0, self.output_size - 1)}

    def to_tensors(self, arrays: dict[str, np.ndarray]) -> tuple[Tensor, Tensor]:
        return _one_hot(arrays["symbols"], self.input_size), torch.from_numpy(arrays["labels"].astype(np.int64))

    def _check_shapes(self, output: Tensor, target: Tensor) -> None:
        if output.dim() != 2 or output.shape[1] != self.output_size or target.shape != output.shape[:1]:
            raise ValueError(
                f"{self.name} expects logits (B, {self.output_size}) and targets (B,), got "
                f"{tuple(output.shape)} and {tuple(target.shape)}"
            )

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(output, target)
        return F.cross_entropy(output, target)

    def loss_and_gradient(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-entropy = −mean log softmax(o)_y, ∂/∂o = (softmax(o) − onehot(y)) / N, by the two kernels of
        ``F.cross_entropy`` (``_log_softmax``, ``nll_loss_forward``) and their backward kernels from a seed of 1."""
        self._check_shapes(output, target)
        log_p = torch.log_softmax(output, 1)
        loss, total_weight = _nll_loss_forward(log_p, target, None, _MEAN, _IGNORE_INDEX)
        grad = _nll_loss_backward(torch.ones_like(loss), log_p, target, None, _MEAN, _IGNORE_INDEX, total_weight)
        return loss, _log_softmax_backward(grad, log_p, 1, output.dtype)

    def errors(self, output: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(output, target)
        return _wrong(output, target)

    def chance_loss(self, seq_len: int) -> float:
        self.check_seq_len(seq_len)
        return math.log(self.output_size)

    def chance_metric(self, seq_len: int) -> float:
        self.check_seq_len(seq_len)
        return 1.0 / self.output_size


class TemporalOrderTask(LastStepClassification):
    """Temporal order, Hochreiter & Schmidhuber 1997 (exp. 6a), with the generator of Pascanu, Mikolov &
    Bengio 2013 (ICML).

    Length ``L = T``. Symbols: A = 0, B = 1, distractors 2..5 (6 one-hot channels). Two relevant symbols, each
    uniform in {A, B}, at positions ``p1 ~ U[floor(0.1 L), floor(0.2 L))`` and
    ``p2 ~ U[floor(0.5 L), floor(0.6 L))``; every other position holds one of the 4 distractors, drawn
    uniformly. Label at the last step: ``2 s1 + s2``, i.e. AA = 0, AB = 1, BA = 2, BB = 3. Chance:
    ``ln 4`` nats, accuracy 1/4, error 3/4.

    For ``L < 10`` the floors collapse, so each range is widened to at least one position and the second is
    shifted to start after the first (:meth:`ranges`); for ``L >= 10`` the ranges are exactly Pascanu's.
    """

    name = "temporal_order"
    input_size = 6
    output_size = 4
    n_distractors = 4

    @staticmethod
    def ranges(seq_len: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Half-open position ranges ``[lo, hi)`` of the two relevant symbols, non-empty and disjoint."""
        lo1 = seq_len // 10
        hi1 = max(seq_len // 5, lo1 + 1)
        lo2 = max(seq_len // 2, hi1)
        hi2 = max(6 * seq_len // 10, lo2 + 1)
        return (lo1, hi1), (lo2, hi2)

    def _sample(self, seq_len: int, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        (lo1, hi1), (lo2, hi2) = self.ranges(seq_len)
        symbols = rng.integers(2, 2 + self.n_distractors, size=(n, seq_len), dtype=np.uint8)
        first = rng.integers(0, 2, size=n, dtype=np.uint8)
        second = rng.integers(0, 2, size=n, dtype=np.uint8)
        rows = np.arange(n)
        symbols[rows, rng.integers(lo1, hi1, size=n)] = first
        symbols[rows, rng.integers(lo2, hi2, size=n)] = second
        return {"symbols": symbols, "labels": (2 * first + second).astype(np.uint8)}


class FirstSymbolTask(LastStepClassification):
    """First-symbol recall: a latching problem in the spirit of Bengio, Simard & Frasconi 1994 (IEEE TNN).

    Length ``L = T``, 4 one-hot channels: bit 0, bit 1, distractor 2, distractor 3. Step 1 carries a bit
    ``s ~ U{0, 1}``; steps 2..T carry distractors drawn uniformly from {2, 3}. Label at the last step: ``s``.
    Chance: ``ln 2`` nats, accuracy 1/2, error 1/2.
    """

    name = "first_symbol"
    input_size = 4
    output_size = 2

    def _sample(self, seq_len: int, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        symbols = rng.integers(2, 4, size=(n, seq_len), dtype=np.uint8)
        bits = rng.integers(0, 2, size=n, dtype=np.uint8)
        symbols[:, 0] = bits
        return {"symbols": symbols, "labels": bits}


_TASKS: dict[str, type[Task]] = {task.name: task for task in (AddingTask, CopyTask, TemporalOrderTask, FirstSymbolTask)}
TASKS: tuple[str, ...] = tuple(_TASKS)
"""Every task name, in the order configs and reports list them."""


def get_task(name: str) -> Task:
    """The task called ``name``; ValueError naming the bad name and listing :data:`TASKS`."""
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return _TASKS[name]()

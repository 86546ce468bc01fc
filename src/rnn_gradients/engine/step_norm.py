"""One normalization applied step by step inside a hand-written recurrence, and the per-step buffers those
recurrences fill.

:mod:`~rnn_gradients.engine.gru_norm_bptt` and :mod:`~rnn_gradients.engine.lstm_norm_bptt` normalize a (B, F)
block at every step t: N(z_t) = gain ⊙ (z_t − μ) / √(σ² + ε) + shift, with μ, σ² per example over the F features
(layer norm) or per feature over the batch (recurrent batch norm: the batch's in training, step t's running row in
evaluation). :class:`StepNorm` runs, for one step at a time, the same CPU kernels autograd runs through
``F.layer_norm`` and ``F.batch_norm`` (so the hand-written backward is autograd's, bit for bit), and describes the
normalization to the compiled loops of ``csrc/recurrence.cpp``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rnn_gradients.engine.bptt import _batch_norm_backward, _layer_norm_backward
from rnn_gradients.engine.normalization import LayerNorm, Normalizer, StepwiseBatchNorm


class StepNorm:
    """One normalization applied step by step inside a recurrence, with the parameters passed in explicitly.

    Layer norm: statistics per example over the F features, one (gain, shift) for all steps; recurrent batch
    norm: statistics per step over the batch (in training: the batch's, updating step t's running row in place;
    in evaluation: step t's running row, steps past ``max_len`` the last one), as
    :class:`~rnn_gradients.engine.normalization.StepwiseBatchNorm` does. ``forward`` and ``backward`` run the
    kernels autograd runs for ``F.layer_norm`` / ``F.batch_norm``; ``backward`` also adds step t's share of the
    gain's and shift's gradients into ``grad_weight`` and ``grad_bias``, as autograd through the unrolled loop
    accumulates them step by step (one (B, F) block at a time, in cache, where a sum over all steps afterwards
    would read (T, B, F) tensors again).
    """

    def __init__(self, module: Normalizer, weight: Tensor, bias: Tensor | None) -> None:
        self.module, self.weight, self.bias = module, weight, bias
        self.eps = module.eps
        self.layer = isinstance(module, LayerNorm)
        self.shape = (weight.shape[0],)
        self._saved: list[tuple[Tensor, Tensor]] = []
        self._statistics: tuple[Tensor, Tensor] | None = None
        self.grad_weight = torch.zeros_like(weight)
        self.grad_bias = None if bias is None else torch.zeros_like(bias)
        if isinstance(module, StepwiseBatchNorm):
            self.training, self.momentum = module.training, module.momentum
            self.rows = module.max_len

    # Per-step views made when the Python loops first ask for them: the compiled loops never do, and 60 views of a
    # (T, ·) tensor cost about 45 µs to make.
    @functools.cached_property
    def means(self) -> tuple[Tensor, ...]:
        """Batch norm's running means, one row view per step (updated in place by the forward)."""
        return self.module.running_mean.unbind(0)

    @functools.cached_property
    def variances(self) -> tuple[Tensor, ...]:
        """Batch norm's running variances, one row view per step."""
        return self.module.running_var.unbind(0)

    @property
    def saved(self) -> list[tuple[Tensor, Tensor]]:
        """Every step's two statistics so far: appended by :meth:`forward`, or from :meth:`use_statistics`."""
        if self._statistics is not None:
            self._saved = list(zip(*(s.unbind(0) for s in self._statistics), strict=True))
            self._statistics = None
        return self._saved

    def _row(self, t: int) -> int:
        return min(t, self.rows - 1)

    def forward(self, z: Tensor, t: int) -> Tensor:
        """N(z) for step t's (B, F) input; saves what the backward needs."""
        if self.layer:
            y, mean, rstd = torch.native_layer_norm(z, self.shape, self.weight, self.bias, self.eps)
        else:
            row = self._row(t)
            y, mean, rstd = torch.native_batch_norm(
                z,
                self.weight,
                self.bias,
                self.means[row],
                self.variances[row],
                self.training,
                self.momentum,
                self.eps,
            )
        self.saved.append((mean, rstd))
        return y

    def backward(self, grad: Tensor, z: Tensor, t: int) -> Tensor:
        """∂L/∂z from ∂L/∂N(z) at step t; adds step t's share of ∂L/∂gain and ∂L/∂shift."""
        mean, rstd = self.saved[t]
        mask = [True, True, self.bias is not None]
        if self.layer:
            dz, dweight, dbias = _layer_norm_backward(grad, z, self.shape, mean, rstd, self.weight, self.bias, mask)
        else:
            row = self._row(t)
            dz, dweight, dbias = _batch_norm_backward(
                grad, z, self.weight, self.means[row], self.variances[row], mean, rstd, self.training, self.eps, mask
            )
        self.grad_weight += dweight
        if self.grad_bias is not None:
            self.grad_bias += dbias
        return dz

    def compiled_arguments(self) -> tuple[Any, ...] | None:
        """What the compiled forward loops (``csrc/recurrence.cpp``: ``gru_norm_forward``, ``lstm_norm_forward``)
        take for this normalization: (layer, gain, shift, running mean, running variance, training, momentum,
        eps); None where they do not cover it (a layer norm without a shift)."""
        if self.layer:
            if self.bias is None:
                return None
            return (True, self.weight, self.bias, None, None, False, 0.0, self.eps)
        module = self.module
        return (False, self.weight, self.bias, module.running_mean, module.running_var, self.training, self.momentum,
                self.eps)  # fmt: skip

    def compiled_backward_arguments(self, statistics: tuple[Tensor, Tensor]) -> tuple[Any, ...]:
        """What the compiled backward loops take for this normalization, with the statistics the compiled forward
        returned: (layer, gain, shift, running mean, running variance, first statistic, second statistic,
        training, eps). They add the gain's and shift's gradients into ``grad_weight`` and ``grad_bias``."""
        layer, gain, shift, running_mean, running_var, training, _, eps = self.compiled_arguments()
        return (layer, gain, shift, running_mean, running_var, *statistics, training, eps)

    def use_statistics(self, statistics: tuple[Tensor, Tensor]) -> None:
        """Take every step's statistics from a compiled forward's (T, ·) pair, so that :meth:`backward` can run
        after it."""
        self._statistics = statistics

    def parameter_grads(self) -> tuple[Tensor, Tensor | None]:
        """(∂L/∂gain, ∂L/∂shift or None), summed over the steps by :meth:`backward` (or the compiled backward)."""
        return self.grad_weight, self.grad_bias


def use_compiled_statistics(
    norms: Sequence[StepNorm], statistics: Sequence[Tensor]
) -> tuple[tuple[Tensor, Tensor], ...]:
    """Hand each of ``norms`` its two statistics from a compiled forward's list (two per normalization, in the order
    of ``norms``, as ``gru_norm_forward`` and ``lstm_norm_forward`` return them); returns the pairs, which the
    compiled backward takes."""
    pairs = tuple(zip(statistics[::2], statistics[1::2], strict=True))
    for norm, pair in zip(norms, pairs, strict=True):
        norm.use_statistics(pair)
    return pairs


def per_step(like: Tensor, steps: int, shape: tuple[int, ...], keep: bool) -> Tensor:
    """A per-step buffer: a (steps, *shape) tensor kept for the backward pass, or, when nothing will be
    differentiated (``keep`` False: evaluation), one scratch row (*shape) reused by every step."""
    return like.new_empty(steps, *shape) if keep else like.new_empty(*shape)


def step_rows(buffer: Tensor, steps: int, keep: bool) -> tuple[Tensor, ...]:
    """The rows of a :func:`per_step` buffer, one per step (the scratch row ``steps`` times where not ``keep``), for
    the Python loops: the compiled loops take the buffer itself, and making its views costs about 0.7 µs each."""
    return buffer.unbind(0) if keep else (buffer,) * steps

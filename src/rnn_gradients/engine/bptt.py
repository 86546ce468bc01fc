"""Backpropagation through time by hand: the recurrence of a whole sequence as one autograd node.

The reference path (:meth:`RecurrentLayer.forward_with_states`) builds a graph of a few small autograd nodes per
time step; at the study's shapes (B = 64, H = 64) walking that graph backwards costs more than the matmuls it
computes. Here each recurrence is one :class:`torch.autograd.Function`, as cuDNN does it:

- **forward**, without a graph: the states go into one preallocated (T+1, B, H) buffer, h_0 = 0, whose rows
  1..T first receive the input parts in one bulk copy; then each step is one in-place ``addmm_`` (a_t = u_t +
  h_{t−1} W_hhᵀ) and an in-place activation, on per-step views made once by ``unbind`` (indexing or slicing
  inside the loop costs 1-2 µs a view, a per-step ``addmm(out=)`` one more copy). Every tanh here (the tanh RNN's,
  the GRU's candidate) is 2σ(2a) − 1 from a doubled preactivation (:func:`tanh_from_twice`), at a third of
  ``torch.tanh``'s cost. The input part u_t = W_ih x_t + b of every step is computed *outside* the recurrence,
  over the whole sequence at once (:class:`InputProjection`), so dW_ih and the biases get their gradients from one
  GEMM / one reduction over all steps. Where the input part is normalized (the gated cells under a normalization:
  :mod:`~rnn_gradients.engine.gru_norm_bptt`, :mod:`~rnn_gradients.engine.lstm_norm_bptt`; the vanilla cells under
  batch norm on the compiled path: :mod:`~rnn_gradients.engine.fused_batch_norm`), only W_ih x_t is computed
  outside, and the normalization runs step by step inside the loops.
- **backward**: a reverse-time loop for the recurrent part only. With g_t = ∂L/∂h_t from the outputs,

      vanilla:  δ_t = (g_t + δ_{t+1} W_hh) ⊙ φ'(a_t),   φ'(a_t) from h_t, in bulk before the loop,

  then ∂L/∂u_t = δ_t and the weight gradient as ONE matmul over all steps: ∂L/∂W_hh = Σ_t δ_tᵀ h_{t−1}
  = Δᵀ H_prev with Δ, H_prev the (T·B, H) stacks.

The layer-norm and batch-norm variants put the normalization's backward in the loop
(``aten.native_layer_norm_backward`` / ``aten.native_batch_norm_backward``, the kernels autograd itself uses).
The GRU's backward precomputes every factor that does not depend on ∂L/∂h in bulk (see :class:`GRURecurrence`),
leaving three ops per step.

Where :mod:`~rnn_gradients.engine.extension` offers its compiled module (``kernels``), the time loops of the
vanilla recurrences and of the GRU (plain here, normalized in :mod:`~rnn_gradients.engine.gru_norm_bptt`) run in
C++ instead: the same ATen GEMM calls, the normalizations' own CPU kernels called without the op's per-call
checks and allocations, each step's elementwise work in one pass, bit for bit the results of the Python loops
below (which stay the fallback, and the definition of what the compiled loops must reproduce).

The results agree with autograd through the reference cells to float32 rounding, not bit for bit (another order
of the same sums); ``tests/test_engine_equivalence.py`` checks every path. NaN and Inf propagate as through the
reference ops (the ReLU's derivative is a ``masked_fill`` like ``threshold_backward``, not a multiplication by 0).
The gradient probes keep the reference path: they need ∂L/∂h_t for every t as graph nodes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

_MINUS_ONE = torch.tensor(-1.0)


def tanh_from_twice(x2: Tensor, out: Tensor) -> Tensor:
    """tanh(x) from x2 = 2x, written to ``out`` (which may be x2): tanh(x) = 2σ(2x) − 1.

    The identity is exact; the point is speed. On one CPU thread ``torch.tanh`` (Sleef's 1-ulp tanh) takes
    ~2.8 ns a float32 element, ``torch.sigmoid`` ~0.6: for a (64, 64) block 11 µs against 2.3 + 1.6 µs for the
    sigmoid and the fused 2s − 1 (``add`` with ``alpha``), so the tanh is no longer the most expensive op of a step.
    The price is accuracy near 0: the error is absolute, a few ulp of ½ (≤ 1.8e-7 measured), not 1 ulp of the
    result; a state entering a matmul with O(1) weights, and compared to float64 relative to its largest entry
    (``tests/test_engine_equivalence.py``), does not need more. The callers double the preactivation for free:
    ``addmm_(alpha=2)``, a normalization's gain and shift doubled, ``addcmul(value=2)`` — multiplying by 2 is exact.
    NaN and ±Inf map as through tanh (σ(±∞) = 1 or 0, so ±1). Only the engine's BPTT paths use it; the reference
    cells, the probes and the fused kernels keep ``torch.tanh``.
    """
    sigma = torch.sigmoid(x2, out=out)
    return torch.add(_MINUS_ONE, sigma, alpha=2, out=sigma)


def input_scale(kind: str) -> float:
    """The factor an activation's input arrives multiplied by on the BPTT paths: 2 for tanh
    (:func:`tanh_from_twice`), 1 for the sigmoid and the ReLU."""
    return 2.0 if kind == "rnn_tanh" else 1.0


def _activate_(kind: str, a: Tensor) -> Tensor:
    """φ in place, from ``input_scale(kind)`` · a: tanh (from 2a), logistic sigmoid or ReLU."""
    if kind == "rnn_tanh":
        return tanh_from_twice(a, a)
    if kind == "rnn_sigmoid":
        return a.sigmoid_()
    return a.relu_()


def _activate(kind: str, a: Tensor, out: Tensor) -> Tensor:
    """φ from ``input_scale(kind)`` · a, written to ``out``; the same kernels as :func:`_activate_` (ATen's ReLU is
    ``clamp_min(·, 0)``)."""
    if kind == "rnn_tanh":
        return tanh_from_twice(a, out)
    if kind == "rnn_sigmoid":
        return torch.sigmoid(a, out=out)
    return torch.clamp_min(a, 0.0, out=out)


class _Derivative:
    """φ'(a_t) from h_t = φ(a_t), applied per step in place: ``apply_(grad, t)`` = grad ⊙ φ'(a_t).

    tanh: 1 − h², sigmoid: h (1 − h), both computed for all steps at once; ReLU: ``threshold_backward`` (the
    kernel of autograd's ReLU) per step, grad where h > 0 and 0 elsewhere: a selection, not a multiplication by 0,
    so that an Inf or NaN gradient is zeroed where the unit is off, and a NaN state lets the gradient through.
    """

    def __init__(self, kind: str, h: Tensor) -> None:
        self.kind = kind
        if kind == "rnn_tanh":
            factor = 1.0 - h * h
        elif kind == "rnn_sigmoid":
            factor = h * (1.0 - h)
        # Per-step views made once (``unbind``): indexing a (T, B, H) tensor inside the loop costs 1-2 µs a step.
        self.rows = (h if kind == "rnn_relu" else factor).unbind(0)

    def apply_(self, grad: Tensor, t: int) -> Tensor:
        if self.kind == "rnn_relu":
            return _threshold_backward(grad, self.rows[t], 0.0, grad_input=grad)
        return grad.mul_(self.rows[t])


_threshold_backward = torch.ops.aten.threshold_backward.grad_input
# The overloads themselves: calling the packet resolves the overload on every call (2 µs of a 5 µs kernel here).
_layer_norm_backward = torch.ops.aten.native_layer_norm_backward.default
_batch_norm_backward = torch.ops.aten.native_batch_norm_backward.default


COMPILED_KINDS = {"rnn_tanh": 0, "rnn_sigmoid": 1, "rnn_relu": 2}
"""A vanilla cell -> its kind code in the compiled loops (``csrc/recurrence.cpp``), which also run the GRU
(:class:`GRURecurrence`, and the normalized one of :mod:`~rnn_gradients.engine.gru_norm_bptt`)."""


def _compiled(kernels: ModuleType | None, *tensors: Tensor) -> bool:
    """Whether to run the compiled loops of ``kernels`` (:mod:`~rnn_gradients.engine.extension`) on ``tensors``:
    they take float32 CPU tensors only; everything else (float64 in the tests, CUDA) takes the Python loop."""
    return kernels is not None and all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


def _states_buffer(u: Tensor, hidden: int) -> Tensor:
    """The (T+1, B, H) state buffer with h_0 = 0 in row 0, for u (T, B, ·)."""
    return states_buffer(u, u.shape[0], u.shape[1], hidden)


def states_buffer(like: Tensor, steps: int, batch: int, hidden: int) -> Tensor:
    """A (steps+1, batch, hidden) state buffer of ``like``'s dtype and device, with h_0 = 0 in row 0."""
    hs = like.new_empty(steps + 1, batch, hidden)
    hs[0].zero_()
    return hs


class _OutputGrad:
    """∂L/∂h_t as it arrives from the layer's outputs: for every step (T, B, H), or for the last step alone (B, H)
    when the model reads out h_T only (most tasks; the layer then returns h_T alone, see ``last``).

    ``final`` is g_T; ``recurrent(δ_t, W_hh, t, out)`` is g_{t−1} + δ_t W_hh, just δ_t W_hh where only g_T is
    non-zero: a model read out at the last step does not add T − 1 blocks of zeros, and no (T, B, H) tensor of
    zeros is built for it.
    """

    def __init__(self, grad: Tensor) -> None:
        self.last_only = grad.dim() == 2
        self.final = grad if self.last_only else grad[-1]
        self._grad = grad

    @functools.cached_property
    def rows(self) -> tuple[Tensor, ...]:
        """g_1..g_T as row views, made when the Python loops first ask (the compiled loops take the whole block)."""
        return () if self.last_only else self._grad.unbind(0)

    def recurrent(self, delta: Tensor, w_hh: Tensor, t: int, out: Tensor | None) -> Tensor:
        if self.last_only:
            return torch.mm(delta, w_hh, out=out)
        return torch.addmm(self.rows[t - 1], delta, w_hh, out=out)


def _outputs(hs: Tensor, last: bool) -> Tensor:
    """What a recurrence returns from its (T+1, B, H) state buffer: h_1..h_T, or h_T alone when ``last``."""
    return hs[-1] if last else hs[1:]


def consume(ctx: Any, *buffers: Tensor) -> tuple[Tensor, ...]:
    """The forward's ``buffers`` as the backward's gradient buffers: a normalized recurrence's backward writes
    ∂L/∂z_t over z_t (and ∂L/∂v_t over v_t, its input projections) once step t has read them for the last time, so
    that it brings two fewer (T, B, ·) blocks into the cache. Each buffer's version counter moves on, so that an
    autograd node that saved one of them (none does in the engine: the input projections are read by the
    recurrence alone) raises instead of reading gradients; a second backward through the same forward raises too."""
    if getattr(ctx, "consumed", False):
        raise RuntimeError(
            "a second backward through a normalized recurrence: its first backward overwrote the forward's "
            "buffers with gradients (run the forward again instead of retain_graph=True)"
        )
    ctx.consumed = True
    for buffer in buffers:
        torch.autograd.graph.increment_version(buffer)
    return buffers


def _flat(t: Tensor) -> Tensor:
    """(T, B, F) -> (T·B, F)."""
    return t.reshape(-1, t.shape[-1])


class InputProjection(torch.autograd.Function):
    """u = x W_ihᵀ + b for x (N, I) of all steps at once; b may be None.

    As ``F.linear``, except for the weight gradient: ∂L/∂W_ih = (xᵀ ∂L/∂u)ᵀ, an (I × N) @ (N × G·H) product,
    which is 5-7× faster on one CPU thread than autograd's (∂L/∂u)ᵀ x for the study's tiny input sizes I.

    ``forward`` can also write s·u straight into ``out`` (a recurrence's state buffer; s = 2 for tanh, see
    :func:`input_scale`) as one ``addmm`` with α = β = s: scaling by a power of two is exact, so that is 2u to the
    bit, without a pass over the whole (T, B, H) block to double it. The gradient is still the one of u.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, scale: float = 1.0, out: Tensor | None = None
    ) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.mm(x, weight.t(), out=out) if scale == 1 else torch.mul(x.mm(weight.t()), scale, out=out)
        return torch.addmm(bias, x, weight.t(), beta=scale, alpha=scale, out=out)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None, None, None]:
        x, weight = ctx.saved_tensors
        grad_x = grad.mm(weight) if ctx.needs_input_grad[0] else None
        grad_weight = x.t().mm(grad).t().contiguous()
        grad_bias = grad.sum(0) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias, None, None


def project(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """(..., I) -> (..., G·H) by :class:`InputProjection` over the flattened leading dimensions."""
    u = InputProjection.apply(x.reshape(-1, x.shape[-1]), weight, bias)
    return u.view(*x.shape[:-1], weight.shape[0])


class VanillaRecurrence(torch.autograd.Function):
    """h_t = φ(u_t + W_hh h_{t−1}), h_0 = 0, for u (T, B, H) time-major; returns h_1..h_T (T, B, H), or h_T
    (B, H) when ``last`` (as every recurrence here)."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, w_hh: Tensor, kind: str, last: bool, kernels: ModuleType | None) -> Tensor:
        hs = _states_buffer(u, w_hh.shape[0])
        scale = input_scale(kind)
        # s·a_t = s·u_t + s·h_{t−1} W_hhᵀ accumulates in place: one bulk copy, not one per step.
        if scale != 1:
            torch.mul(u, scale, out=hs[1:])
        else:
            hs[1:].copy_(u)
        return VanillaRecurrence.run(ctx, hs, w_hh, kind, last, kernels)

    @staticmethod
    def run(ctx: Any, hs: Tensor, w_hh: Tensor, kind: str, last: bool, kernels: ModuleType | None) -> Tensor:
        """The forward from a (T+1, B, H) state buffer that holds h_0 = 0 and s·u_1..s·u_T (s = ``input_scale``):
        its rows 1..T become h_1..h_T."""
        scale = input_scale(kind)
        w_t = w_hh.t()
        if _compiled(kernels, hs):
            kernels.vanilla_forward(hs, w_t, COMPILED_KINDS[kind], scale)
        else:
            rows = hs.unbind(0)
            for t in range(hs.shape[0] - 1):
                _activate_(kind, rows[t + 1].addmm_(rows[t], w_t, alpha=scale))
        ctx.kind, ctx.hs, ctx.kernels = kind, hs, kernels
        ctx.save_for_backward(w_hh)
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None, None, None]:
        (w_hh,) = ctx.saved_tensors
        hs = ctx.hs
        steps = hs.shape[0] - 1
        delta = torch.empty_like(hs[1:])
        output = _OutputGrad(grad)
        if _compiled(ctx.kernels, hs, grad):
            outputs = None if output.last_only else grad
            ctx.kernels.vanilla_backward(delta, hs, w_hh, COMPILED_KINDS[ctx.kind], output.final, outputs)
        else:
            derivative = _Derivative(ctx.kind, hs[1:])
            rows = delta.unbind(0)
            derivative.apply_(rows[-1].copy_(output.final), steps - 1)
            for t in range(steps - 1, 0, -1):
                derivative.apply_(output.recurrent(rows[t], w_hh, t, rows[t - 1]), t - 1)
        grad_w_hh = _flat(delta).t().mm(_flat(hs[:-1]))
        return delta, grad_w_hh, None, None, None


class VanillaLayerNormRecurrence(torch.autograd.Function):
    """h_t = φ(LN(u_t + W_hh h_{t−1}; g, β)), LN(a) = g ⊙ (a − μ(a)) / √(σ²(a) + ε) + β, per example.

    ``beta`` is the LN shift plus the cell's biases (b_ih + b_hh come right after the LN, so they fold into it).
    Backward per step: ∂L/∂a_t = LN'ᵀ(δ_t) with δ_t = (g_t + ∂L/∂a_{t+1} W_hh) ⊙ φ'; then in bulk
    ∂L/∂g = Σ δ ⊙ â (â the normalized a), ∂L/∂β = Σ δ, ∂L/∂W_hh = Σ_t (∂L/∂a_t)ᵀ h_{t−1}.
    """

    @staticmethod
    def forward(
        ctx: Any,
        u: Tensor,
        w_hh: Tensor,
        gain: Tensor,
        beta: Tensor,
        kind: str,
        eps: float,
        last: bool,
        kernels: ModuleType | None,
    ) -> Tensor:
        hidden = w_hh.shape[0]
        hs = _states_buffer(u, hidden)
        pre = u.clone(memory_format=torch.contiguous_format)  # a_t accumulates in place over u_t
        w_t = w_hh.t()
        scale = input_scale(kind)  # s·LN(a; g, β) = LN(a; s·g, s·β): the activation's input comes scaled for free
        gain_s, beta_s = (gain * scale, beta * scale) if scale != 1 else (gain, beta)
        if _compiled(kernels, hs):
            mean, rstd = kernels.layer_norm_forward(hs, pre, w_t, gain_s, beta_s, COMPILED_KINDS[kind], eps)
        else:
            states, pres = hs.unbind(0), pre.unbind(0)
            means, rstds = [], []
            for t in range(u.shape[0]):
                a = pres[t].addmm_(states[t], w_t)
                y, mean, rstd = torch.native_layer_norm(a, (hidden,), gain_s, beta_s, eps)
                _activate(kind, y, states[t + 1])
                means.append(mean)
                rstds.append(rstd)
            mean, rstd = torch.stack(means), torch.stack(rstds)
        ctx.kind, ctx.hs, ctx.pre, ctx.kernels = kind, hs, pre, kernels
        ctx.save_for_backward(w_hh, gain, beta, mean, rstd)
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        w_hh, gain, beta, mean, rstd = ctx.saved_tensors
        hs, pre = ctx.hs, ctx.pre
        steps = hs.shape[0] - 1
        delta = torch.empty_like(pre)  # ∂L/∂(LN output)
        grad_pre = torch.empty_like(pre)  # ∂L/∂a
        output = _OutputGrad(grad)
        if _compiled(ctx.kernels, hs, grad):
            outputs = None if output.last_only else grad
            code = COMPILED_KINDS[ctx.kind]
            ctx.kernels.layer_norm_backward(
                delta, grad_pre, hs, pre, mean, rstd, w_hh, gain, beta, code, output.final, outputs
            )
        else:
            shape = (w_hh.shape[0],)
            derivative = _Derivative(ctx.kind, hs[1:])
            deltas, grad_pres, pres = delta.unbind(0), grad_pre.unbind(0), pre.unbind(0)
            means, rstds = mean.unbind(0), rstd.unbind(0)
            mask = [True, False, False]
            deltas[-1].copy_(output.final)
            for t in range(steps - 1, -1, -1):
                d = derivative.apply_(deltas[t], t)  # ∂L/∂h_t ⊙ φ', written over ∂L/∂h_t
                da = _layer_norm_backward(d, pres[t], shape, means[t], rstds[t], gain, beta, mask)[0]
                grad_pres[t].copy_(da)
                if t > 0:
                    output.recurrent(da, w_hh, t, deltas[t - 1])
        # ∂L/∂g = Σ δ ⊙ â, â = (a − μ)·rstd: one (T, B, H) temporary, overwritten in place (the compiled module
        # makes the same products in one pass).
        if _compiled(ctx.kernels, pre, grad):
            terms = ctx.kernels.layer_norm_gain_terms(pre, mean, rstd, delta)
        else:
            terms = pre.sub(mean).mul_(rstd).mul_(delta)
        grad_gain = _flat(terms).sum(0)
        grad_beta = _flat(delta).sum(0)
        grad_w_hh = _flat(grad_pre).t().mm(_flat(hs[:-1]))
        return grad_pre, grad_w_hh, grad_gain, grad_beta, None, None, None, None


class VanillaBatchNormRecurrence(torch.autograd.Function):
    """h_t = φ(u_t + BN_t(W_hh h_{t−1}; γ)), BN_t with step t's batch statistics (training) or step t's
    population statistics (evaluation: row min(t, max_len − 1)); no shift. Training updates the running rows in
    place, as ``F.batch_norm`` on the reference path does.

    Backward per step: ∂L/∂z_t = BN_tᵀ(δ_t) with δ_t = (g_t + ∂L/∂z_{t+1} W_hh) ⊙ φ' (= ∂L/∂u_t); then in bulk
    ∂L/∂γ = Σ δ ⊙ ẑ (ẑ the normalized z) and ∂L/∂W_hh = Σ_t (∂L/∂z_t)ᵀ h_{t−1}.
    """

    @staticmethod
    def forward(
        ctx: Any,
        u: Tensor,
        w_hh: Tensor,
        gain: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
        kind: str,
        training: bool,
        momentum: float,
        eps: float,
        last: bool,
        kernels: ModuleType | None,
    ) -> Tensor:
        scale = input_scale(kind)  # the activation's input s·(u_t + BN_t(z; γ)) = s·u_t + BN_t(z; s·γ)
        if scale != 1:  # time-major in memory, as contiguous() makes it (mul alone keeps u's batch-major layout)
            u = torch.mul(u, scale, out=torch.empty_like(u, memory_format=torch.contiguous_format))
        else:
            u = u.contiguous()
        gain_s = gain * scale if scale != 1 else gain
        hs = _states_buffer(u, w_hh.shape[0])
        pre = torch.empty_like(u)
        w_t = w_hh.t()
        if _compiled(kernels, hs):
            code = COMPILED_KINDS[kind]
            save_mean, save_invstd = kernels.batch_norm_forward(
                hs, pre, u, w_t, gain_s, running_mean, running_var, code, training, momentum, eps
            )
        else:
            states, pres, us = hs.unbind(0), pre.unbind(0), u.unbind(0)
            means, variances = running_mean.unbind(0), running_var.unbind(0)  # views: updated in place
            rows = running_mean.shape[0]
            save_means, save_invstds = [], []
            for t in range(u.shape[0]):
                z = torch.mm(states[t], w_t, out=pres[t])
                row = min(t, rows - 1)
                y, step_mean, step_invstd = torch.native_batch_norm(
                    z, gain_s, None, means[row], variances[row], training, momentum, eps
                )
                _activate_(kind, torch.add(y, us[t], out=states[t + 1]))
                save_means.append(step_mean)
                save_invstds.append(step_invstd)
            save_mean, save_invstd = torch.stack(save_means), torch.stack(save_invstds)
        ctx.kind, ctx.hs, ctx.pre, ctx.kernels = kind, hs, pre, kernels
        ctx.training, ctx.eps = training, eps
        # Not saved for backward: training updates them in place, and its backward does not read them.
        ctx.running = (running_mean, running_var)
        ctx.save_for_backward(w_hh, gain, save_mean, save_invstd)
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        w_hh, gain, save_mean, save_invstd = ctx.saved_tensors
        running_mean, running_var = ctx.running
        hs, pre = ctx.hs, ctx.pre
        steps = hs.shape[0] - 1
        delta = torch.empty_like(pre)  # ∂L/∂u = ∂L/∂(BN output)
        grad_pre = torch.empty_like(pre)  # ∂L/∂z
        grad_gain = torch.zeros_like(gain)
        output = _OutputGrad(grad)
        if _compiled(ctx.kernels, hs, grad):
            ctx.kernels.batch_norm_backward(
                delta,
                grad_pre,
                grad_gain,
                hs,
                pre,
                save_mean,
                save_invstd,
                w_hh,
                gain,
                running_mean,
                running_var,
                COMPILED_KINDS[ctx.kind],
                ctx.training,
                ctx.eps,
                output.final,
                None if output.last_only else grad,
            )
        else:
            rows = running_mean.shape[0]
            derivative = _Derivative(ctx.kind, hs[1:])
            deltas, grad_pres, pres = delta.unbind(0), grad_pre.unbind(0), pre.unbind(0)
            means, variances = running_mean.unbind(0), running_var.unbind(0)
            save_means, save_invstds = save_mean.unbind(0), save_invstd.unbind(0)
            mask = [True, True, False]
            deltas[-1].copy_(output.final)
            for t in range(steps - 1, -1, -1):
                d = derivative.apply_(deltas[t], t)
                row = min(t, rows - 1)
                dz, dgain, _ = _batch_norm_backward(
                    d,
                    pres[t],
                    gain,
                    means[row],
                    variances[row],
                    save_means[t],
                    save_invstds[t],
                    ctx.training,
                    ctx.eps,
                    mask,
                )
                grad_pres[t].copy_(dz)
                grad_gain += dgain
                if t > 0:
                    output.recurrent(dz, w_hh, t, deltas[t - 1])
        grad_w_hh = _flat(grad_pre).t().mm(_flat(hs[:-1]))
        return delta, grad_w_hh, grad_gain, None, None, None, None, None, None, None, None


class GRURecurrence(torch.autograd.Function):
    """The GRU recurrence for u (T, B, 3H) = W_i x_t + b_i (gates r, z, n), h_0 = 0; returns h_1..h_T.

    Forward per step, with gh_t = W_hh h_{t−1} + b_hh = (gh_r, gh_z, gh_n):

        (r, z) = σ(u_rz + gh_rz),   n = tanh(u_n + r ⊙ gh_n),   h_t = n + z ⊙ (h_{t−1} − n)  (``torch.lerp``)

    Backward: with dh_t = ∂L/∂h_t (total), every other derivative is dh_t times a factor known after the forward:

        ∂L/∂a_n = dh ⊙ A,  A = (1 − z)(1 − n²);    ∂L/∂a_r = dh ⊙ A ⊙ gh_n ⊙ r(1 − r);
        ∂L/∂a_z = dh ⊙ (h_{t−1} − n) ⊙ z(1 − z);   ∂L/∂gh_n = dh ⊙ A ⊙ r;   ∂L/∂u = (∂L/∂a_r, ∂L/∂a_z, ∂L/∂a_n)

    so the loop is: ∂L/∂gh_t = dh_t ⊙ F_t (one multiplication by the bulk factor F), and
    dh_{t−1} = g_{t−1} + dh_t ⊙ z_t + (∂L/∂gh_t) W_hh. Then in bulk ∂L/∂u, ∂L/∂W_hh = Σ_t (∂L/∂gh_t)ᵀ h_{t−1},
    ∂L/∂b_hh = Σ ∂L/∂gh.
    """

    @staticmethod
    def forward(
        ctx: Any, u: Tensor, w_hh: Tensor, b_hh: Tensor, last: bool, kernels: ModuleType | None = None
    ) -> Tensor:
        u = u.contiguous()
        steps, batch, _ = u.shape
        hidden = w_hh.shape[0] // 3
        hs = _states_buffer(u, hidden)
        gh = b_hh.expand_as(u).contiguous()  # gh_t = b_hh + W_hh h_{t−1} accumulates in place
        rz = u.new_empty(steps, batch, 2 * hidden)
        n = u.new_empty(steps, batch, hidden)
        w_t = w_hh.t()
        ctx.hs, ctx.gh, ctx.rz, ctx.n, ctx.kernels = hs, gh, rz, n, kernels
        ctx.save_for_backward(w_hh)
        if _compiled(kernels, u):
            kernels.gru_forward(hs, gh, rz, n, u, w_t)
            return _outputs(hs, last)
        two = 2 * hidden
        # Every per-step view made once (``unbind``): slicing inside the loop costs 1-2 µs a view.
        states, ghs, rzs, ns = hs.unbind(0), gh.unbind(0), rz.unbind(0), n.unbind(0)
        u_rz, u_n = u[..., :two].unbind(0), torch.mul(u[..., two:], 2.0).unbind(0)  # 2·u_n: see tanh_from_twice
        gh_rz, gh_n = gh[..., :two].unbind(0), gh[..., two:].unbind(0)
        r, z = rz[..., :hidden].unbind(0), rz[..., hidden:].unbind(0)
        for t in range(steps):
            ghs[t].addmm_(states[t], w_t)
            torch.add(u_rz[t], gh_rz[t], out=rzs[t]).sigmoid_()
            cand = tanh_from_twice(torch.addcmul(u_n[t], r[t], gh_n[t], value=2.0, out=ns[t]), ns[t])
            torch.lerp(cand, states[t], z[t], out=states[t + 1])
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
        (w_hh,) = ctx.saved_tensors
        hs, gh, rz, n = ctx.hs, ctx.gh, ctx.rz, ctx.n
        steps, batch, hidden = n.shape
        output = _OutputGrad(grad)
        if _compiled(ctx.kernels, hs, grad):
            # The factors of gru_factors step by step inside the loop: no (T, B, 3, H) factor tensor.
            dh, dgh, a = torch.empty_like(n), n.new_empty(steps, batch, 3, hidden), torch.empty_like(n)
            ctx.kernels.gru_backward(dh, dgh, a, hs, gh, rz, n, w_hh, output.final, None if output.last_only else grad)
        else:
            a, factor, z = gru_factors(hs, gh, rz, n)
            dh, dgh = gru_backward_loop(output, factor, z, w_hh)
        dgh_flat = dgh.view(steps * batch, 3 * hidden)
        grad_w_hh = dgh_flat.t().mm(_flat(hs[:-1]))
        grad_b_hh = dgh_flat.sum(0)
        # ∂L/∂u equals ∂L/∂gh in the r and z blocks; in the n block it is dh ⊙ A: overwrite, dgh is spent.
        torch.mul(dh, a, out=dgh[:, :, 2])
        return dgh.view(steps, batch, 3 * hidden), grad_w_hh, grad_b_hh, None, None


def gru_factors(hs: Tensor, gh: Tensor, rz: Tensor, n: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The GRU's backward factors of every step, known after the forward (:class:`GRURecurrence`):
    (A = (1 − z)(1 − n²), the factor F (T, B, 3, H) with ∂L/∂gh_t = dh_t ⊙ F_t, the update gate z)."""
    steps, batch, hidden = n.shape
    r, z = rz[..., :hidden], rz[..., hidden:]
    a = (1.0 - z) * (1.0 - n * n)
    factor = n.new_empty(steps, batch, 3, hidden)
    torch.mul(a * gh[..., 2 * hidden :], r * (1.0 - r), out=factor[:, :, 0])
    torch.mul(hs[:-1] - n, z * (1.0 - z), out=factor[:, :, 1])
    torch.mul(a, r, out=factor[:, :, 2])
    return a, factor, z


def gru_backward_loop(
    output: _OutputGrad,
    factor: Tensor,
    z: Tensor,
    w_hh: Tensor,
    recurrent: Callable[[Tensor, int], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """The GRU's reverse-time loop: (dh = ∂L/∂h_t (T, B, H), dgh = ∂L/∂gh_t = dh_t ⊙ F_t (T, B, 3, H)).

    dh_{t−1} = g_{t−1} + dh_t ⊙ z_t + d_t W_hh, with F and z from :func:`gru_factors` and d_t = ∂L/∂gh_t as a
    (B, 3H) row — or ``recurrent(∂L/∂gh_t, t)``, called at every step, where a normalization sits between
    W_hh h_{t−1} and gh_t (:mod:`~rnn_gradients.engine.gru_norm_bptt`).
    """
    steps, batch, hidden = z.shape
    dh = z.new_empty(steps, batch, hidden)
    dgh = torch.empty_like(factor)
    dh[-1].copy_(output.final)
    dhs, dh_gates, factors = dh.unbind(0), dh.unsqueeze(2).unbind(0), factor.unbind(0)
    dghs, dgh_rows, zs = dgh.unbind(0), dgh.view(steps, batch, -1).unbind(0), z.unbind(0)
    for t in range(steps - 1, -1, -1):
        torch.mul(dh_gates[t], factors[t], out=dghs[t])
        through = dgh_rows[t] if recurrent is None else recurrent(dgh_rows[t], t)
        if t == 0:
            break
        if output.last_only:
            torch.mul(dhs[t], zs[t], out=dhs[t - 1])
        else:
            torch.addcmul(output.rows[t - 1], dhs[t], zs[t], out=dhs[t - 1])
        dhs[t - 1].addmm_(through, w_hh)
    return dh, dgh


def vanilla_states_(u: Tensor, w_hh: Tensor, kind: str, kernels: ModuleType | None = None) -> Tensor:
    """Without a graph: h_t = φ(u_t + W_hh h_{t−1}) written over u (T, B, H) itself, which it returns.

    One float per sequence, step and unit, as torch's fused kernel; for evaluation, where nothing is saved.
    """
    w_t = w_hh.t()
    scale = input_scale(kind)
    if scale != 1:
        u.mul_(scale)
    if _compiled(kernels, u):
        kernels.vanilla_states(u, w_t, COMPILED_KINDS[kind], scale)
        return u
    _activate_(kind, u[0])  # h_0 = 0: a_1 = u_1
    for t in range(1, u.shape[0]):
        _activate_(kind, u[t].addmm_(u[t - 1], w_t, alpha=scale))
    return u


def gru_states_(u: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """Without a graph: the GRU recurrence of :class:`GRURecurrence`, h_t written over the spent u_n of step t.

    Returns the (T, B, H) view u[..., 2H:] (strided): three floats per sequence, step and unit, as the fused
    kernel's input projection; for evaluation, where nothing is saved.
    """
    steps, batch, _ = u.shape
    hidden = w_hh.shape[0] // 3
    two = 2 * hidden
    w_t = w_hh.t()
    gh = u.new_empty(batch, 3 * hidden)
    rz = u.new_empty(batch, two)
    n = u.new_empty(batch, hidden)
    h_prev = u.new_zeros(batch, hidden)
    u[..., two:].mul_(2.0)  # 2·u_n: see tanh_from_twice
    for t in range(steps):
        g = torch.addmm(b_hh, h_prev, w_t, out=gh)
        gates = torch.add(u[t, :, :two], g[:, :two], out=rz).sigmoid_()
        cand = tanh_from_twice(torch.addcmul(u[t, :, two:], gates[:, :hidden], g[:, two:], value=2.0, out=n), n)
        h_prev = torch.lerp(cand, h_prev, gates[:, hidden:], out=u[t, :, two:])
    return u[..., two:]

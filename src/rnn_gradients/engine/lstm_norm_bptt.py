"""Backpropagation through time by hand for the LSTM under layer or recurrent batch normalization.

As :mod:`rnn_gradients.engine.gru_norm_bptt` does for the GRU: the recurrence of a whole sequence is one
:class:`torch.autograd.Function`, its forward fills preallocated (T, B, ·) buffers without a graph, its backward is
one reverse-time loop with every factor computed step by step inside it (no (T, B, 4H) factor tensor: at T = 1000
those bulk tensors fall out of cache); ∂L/∂W_hh is one GEMM after the loop, and the normalizations' gain and shift
gradients are added step by step inside it (:class:`~rnn_gradients.engine.step_norm.StepNorm`). The input part
u_t = N_x(W_ih x_t) + b_ih + b_hh is computed outside, over the whole sequence, by ordinary autograd ops. Per step,
with N_h the normalization of the recurrent term and N_c that of the cell state
(:mod:`rnn_gradients.engine.normalization`):

    z_t = h_{t−1} W_hhᵀ,   (i, f, g, o) = u_t + N_h(z_t),   c_t = σ(f) ⊙ c_{t−1} + σ(i) ⊙ tanh(g)
    h_t = σ(o) ⊙ tanh(N_c(c_t))

with tanh(g) computed as 2σ(2g) − 1 (:func:`~rnn_gradients.engine.bptt.tanh_from_twice`) but tanh(N_c(c_t)) by
``torch.tanh``: that one multiplies σ(o) straight into h_t, and the identity's absolute error near 0 (a few ulp of
½) doubled the fast path's distance to float64 there, past the 1e-5 the equivalence tests allow. Backward, with
dh_t = ∂L/∂h_t (total) and the carry k_t = ∂L/∂c_t ⊙ σ(f_t) that c_{t−1} receives from step t (k_T = 0):

    ∂L/∂o = (dh_t ⊙ tanh ĉ_t) ⊙ σ(o)(1 − σ(o)),   δ_t = ∂L/∂N_c(c_t) = (dh_t ⊙ σ(o)) ⊙ (1 − tanh² ĉ_t)
    ∂L/∂c_t = N_cᵀ(δ_t) + k_{t+1}
    ∂L/∂i = (∂L/∂c_t ⊙ tanh g) ⊙ σ(i)(1 − σ(i)),   ∂L/∂f = (∂L/∂c_t ⊙ c_{t−1}) ⊙ σ(f)(1 − σ(f)),
    ∂L/∂g = (∂L/∂c_t ⊙ σ(i)) ⊙ (1 − tanh² g),      k_t = ∂L/∂c_t ⊙ σ(f)
    ∂L/∂z_t = N_hᵀ(∂L/∂(i, f, g, o)),   dh_{t−1} = g_{t−1} + (∂L/∂z_t) W_hh

and ∂L/∂u_t = ∂L/∂(i, f, g, o). ``tests/test_engine_equivalence.py`` checks it against autograd through the
reference cell (``RecurrentLayer.reference``). Where the compiled module runs (:mod:`~rnn_gradients.engine.extension`),
both loops run in C++ instead (``lstm_norm_forward``, ``lstm_norm_backward`` in ``csrc/recurrence.cpp``), bit for
bit the loops below, which stay the fallback and the definition.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from rnn_gradients.engine.bptt import (
    _compiled,
    _flat,
    _OutputGrad,
    _outputs,
    _states_buffer,
    states_buffer,
    tanh_from_twice,
)
from rnn_gradients.engine.normalization import Normalizer
from rnn_gradients.engine.step_norm import StepNorm, per_step


def _cell_states(like: Tensor, steps: int, batch: int, hidden: int, keep: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
    """A buffer for c_0 = 0, c_1, ..., c_T and its rows: (T+1, B, H), kept for the backward pass, or, when nothing
    will be differentiated (``keep`` False: evaluation), two rows used in turn."""
    if keep:
        buffer = states_buffer(like, steps, batch, hidden)
        return buffer, buffer.unbind(0)
    buffer = like.new_zeros(2, batch, hidden)
    pair = buffer.unbind(0)
    return buffer, tuple(pair[t % 2] for t in range(steps + 1))


class LSTMNormRecurrence(torch.autograd.Function):
    """The LSTM recurrence with N_h and N_c (module docstring) for u (T, B, 4H) = N_x(W_ih x_t) + b, h_0 = c_0 = 0.

    Arguments after u and W_hh: the gain and shift (None for batch norm) of N_h, those of N_c, the two modules,
    ``last``, ``keep``: False when no backward will follow (evaluation), so that only h_1..h_T is kept, and
    ``kernels``: the compiled module (:mod:`~rnn_gradients.engine.extension`), whose loops run the forward and the
    backward instead of :func:`_forward_loop` and :func:`_backward_loop` where there is a backward to come, with the
    same bits (its load check compares them).
    """

    @staticmethod
    def forward(
        ctx: Any,
        u: Tensor,
        w_hh: Tensor,
        hidden_weight: Tensor,
        hidden_bias: Tensor | None,
        cell_weight: Tensor,
        cell_bias: Tensor | None,
        hidden_module: Normalizer,
        cell_module: Normalizer,
        last: bool,
        keep: bool,
        kernels: ModuleType | None = None,
    ) -> Tensor:
        if keep:
            u = u.contiguous()
        steps, batch, features = u.shape
        hidden = features // 4
        norm_h = StepNorm(hidden_module, hidden_weight, hidden_bias)
        norm_c = StepNorm(cell_module, cell_weight, cell_bias)
        hs = _states_buffer(u, hidden)
        c, cells = _cell_states(u, steps, batch, hidden, keep)
        z, zs = per_step(u, steps, (batch, features), keep)
        gates, gs = per_step(u, steps, (batch, features), keep)  # (σ(i), σ(f), tanh g, σ(o)) of every step
        tc, tcs = per_step(u, steps, (batch, hidden), keep)  # tanh N_c(c_t)
        arguments = (norm_h.compiled_arguments(), norm_c.compiled_arguments())
        ctx.compiled = keep and _compiled(kernels, u) and None not in arguments
        if ctx.compiled:
            statistics = kernels.lstm_norm_forward(hs, c, z, gates, tc, u, w_hh.t(), *arguments[0], *arguments[1])
            ctx.statistics = (statistics[0], statistics[1]), (statistics[2], statistics[3])
            norm_h.use_statistics(ctx.statistics[0])
            norm_c.use_statistics(ctx.statistics[1])
        else:
            _forward_loop(u, w_hh, norm_h, norm_c, hs.unbind(0), cells, zs, gs, tcs)
        if keep:
            ctx.hs, ctx.c, ctx.z, ctx.gates, ctx.tc = hs, c, z, gates, tc
            ctx.norm_h, ctx.norm_c, ctx.kernels = norm_h, norm_c, kernels
            ctx.save_for_backward(w_hh)
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (w_hh,) = ctx.saved_tensors
        hs, c, z, gates, tc, norm_h, norm_c = ctx.hs, ctx.c, ctx.z, ctx.gates, ctx.tc, ctx.norm_h, ctx.norm_c
        output = _OutputGrad(grad)
        dh = torch.empty_like(tc)  # ∂L/∂h_t
        dgates = torch.empty_like(gates)  # ∂L/∂(i, f, g, o) = ∂L/∂u
        dz = torch.empty_like(z)  # ∂L/∂z = N_hᵀ(∂L/∂(i, f, g, o))
        if ctx.compiled and _compiled(ctx.kernels, grad):
            ctx.kernels.lstm_norm_backward(
                dh, dgates, dz, norm_h.grad_weight, norm_h.grad_bias, norm_c.grad_weight, norm_c.grad_bias,
                c, z, gates, tc, w_hh, *norm_h.compiled_backward_arguments(ctx.statistics[0]),
                *norm_c.compiled_backward_arguments(ctx.statistics[1]), output.final,
                None if output.last_only else grad,
            )  # fmt: skip
        else:
            _backward_loop(output, w_hh, norm_h, norm_c, c.unbind(0), z, gates, tc, dh, dgates, dz)
        grad_w_hh = _flat(dz).t().mm(_flat(hs[:-1]))
        return dgates, grad_w_hh, *norm_h.parameter_grads(), *norm_c.parameter_grads(), None, None, None, None, None


def _forward_loop(
    u: Tensor,
    w_hh: Tensor,
    norm_h: StepNorm,
    norm_c: StepNorm,
    states: tuple[Tensor, ...],
    cells: tuple[Tensor, ...],
    zs: tuple[Tensor, ...],
    gs: tuple[Tensor, ...],
    tcs: tuple[Tensor, ...],
) -> None:
    """The forward's time loop in torch ops, into the rows of its buffers: h_t into ``states[t]``, c_t into
    ``cells[t]``, z_t, the activated gates and tanh N_c(c_t) into ``zs``, ``gs`` and ``tcs``."""
    hidden = states[0].shape[1]
    two, three = 2 * hidden, 3 * hidden
    w_t = w_hh.t()
    for t, u_t in enumerate(u.unbind(0)):
        a = torch.add(u_t, norm_h.forward(torch.mm(states[t], w_t, out=zs[t]), t), out=gs[t])
        a[:, :two].sigmoid_()
        a[:, three:].sigmoid_()
        g = a[:, two:three]
        tanh_from_twice(g.mul_(2.0), g)
        c_t = torch.mul(a[:, hidden:two], cells[t], out=cells[t + 1]).addcmul_(a[:, :hidden], g)
        torch.tanh(norm_c.forward(c_t, t), out=tcs[t])
        torch.mul(a[:, three:], tcs[t], out=states[t + 1])


def _backward_loop(
    output: _OutputGrad,
    w_hh: Tensor,
    norm_h: StepNorm,
    norm_c: StepNorm,
    cells: tuple[Tensor, ...],
    z: Tensor,
    gates: Tensor,
    tc: Tensor,
    dh: Tensor,
    dgates: Tensor,
    dz: Tensor,
) -> None:
    """The backward's reverse-time loop in torch ops (module docstring): ∂L/∂h_t into ``dh``, ∂L/∂(i, f, g, o) into
    ``dgates``, ∂L/∂z_t into ``dz``; the normalizations add their gains' and shifts' gradients as they go."""
    steps, batch, hidden = tc.shape
    two, three = 2 * hidden, 3 * hidden
    delta = tc.new_empty(batch, hidden)  # ∂L/∂N_c(c_t)
    carry = tc.new_empty(batch, hidden)  # k_{t+1} = ∂L/∂c_{t+1} ⊙ σ(f_{t+1})
    dhs, dgs, dzs = dh.unbind(0), dgates.unbind(0), dz.unbind(0)
    gs, tcs, zs = gates.unbind(0), tc.unbind(0), z.unbind(0)
    dhs[-1].copy_(output.final)
    for t in range(steps - 1, -1, -1):
        a, d, dg = gs[t], dhs[t], dgs[t]
        i, f, g, o = a[:, :hidden], a[:, hidden:two], a[:, two:three], a[:, three:]
        torch.mul(d, tcs[t], out=dg[:, three:]).mul_(o * (1.0 - o))
        torch.mul(d, o, out=delta).mul_(1.0 - tcs[t] * tcs[t])
        dc = norm_c.backward(delta, cells[t + 1], t)
        if t < steps - 1:
            dc = dc.add_(carry)
        torch.mul(dc, g, out=dg[:, :hidden]).mul_(i * (1.0 - i))
        torch.mul(dc, cells[t], out=dg[:, hidden:two]).mul_(f * (1.0 - f))
        torch.mul(dc, i, out=dg[:, two:three]).mul_(1.0 - g * g)
        torch.mul(dc, f, out=carry)
        through = dzs[t].copy_(norm_h.backward(dg, zs[t], t))
        if t > 0:
            output.recurrent(through, w_hh, t, dhs[t - 1])

"""Backpropagation through time by hand for the LSTM under layer or recurrent batch normalization.

As :mod:`rnn_gradients.engine.gru_norm_bptt` does for the GRU: the recurrence of a whole sequence is one
:class:`torch.autograd.Function`, its forward fills preallocated (T, B, ·) buffers without a graph, its backward is
one reverse-time loop with every factor computed step by step inside it (no (T, B, 4H) factor tensor: at T = 1000
those bulk tensors fall out of cache); ∂L/∂W_hh is one GEMM after the loop, and the normalizations' gain and shift
gradients are added step by step inside it (:class:`~rnn_gradients.engine.step_norm.StepNorm`). Only the input
projections v_t = W_ih x_t are computed outside, over the whole sequence (one GEMM, and one for ∂L/∂W_ih); their
normalization runs step by step inside the loops, on the (B, 4H) block of the step at hand, where computing it over
the whole (T, B, 4H) block outside cost passes over several MB each way (a bias, a layout copy, the gradient's). Per
step, with N_x the normalization of the input part (its shift the bias b_ih + b_hh, plus layer norm's own shift),
N_h that of the recurrent term and N_c that of the cell state (:mod:`rnn_gradients.engine.normalization`):

    u_t = N_x(v_t),   z_t = h_{t−1} W_hhᵀ,   (i, f, g, o) = u_t + N_h(z_t),   c_t = σ(f) ⊙ c_{t−1} + σ(i) ⊙ tanh(g)
    h_t = σ(o) ⊙ tanh(N_c(c_t))

with tanh(g) computed as 2σ(2g) − 1 (:func:`~rnn_gradients.engine.bptt.tanh_from_twice`) but tanh(N_c(c_t)) by
``torch.tanh``: that one multiplies σ(o) straight into h_t, and the identity's absolute error near 0 (a few ulp of
½) doubled the fast path's distance to float64 there, past the 1e-5 the equivalence tests allow. Backward, with
dh_t = ∂L/∂h_t (total) and the carry k_t = ∂L/∂c_t ⊙ σ(f_t) that c_{t−1} receives from step t (k_T = 0):

    ∂L/∂o = (dh_t ⊙ tanh ĉ_t) ⊙ σ(o)(1 − σ(o)),   δ_t = ∂L/∂N_c(c_t) = (dh_t ⊙ σ(o)) ⊙ (1 − tanh² ĉ_t)
    ∂L/∂c_t = N_cᵀ(δ_t) + k_{t+1}
    ∂L/∂i = (∂L/∂c_t ⊙ tanh g) ⊙ σ(i)(1 − σ(i)),   ∂L/∂f = (∂L/∂c_t ⊙ c_{t−1}) ⊙ σ(f)(1 − σ(f)),
    ∂L/∂g = (∂L/∂c_t ⊙ σ(i)) ⊙ (1 − tanh² g),      k_t = ∂L/∂c_t ⊙ σ(f)
    ∂L/∂z_t = N_hᵀ(∂L/∂(i, f, g, o)),   ∂L/∂v_t = N_xᵀ(∂L/∂(i, f, g, o)),   dh_{t−1} = g_{t−1} + (∂L/∂z_t) W_hh

as ∂L/∂u_t = ∂L/∂(i, f, g, o). ``tests/test_engine_equivalence.py`` checks it against autograd through the
reference cell (``RecurrentLayer.reference``). Where the compiled module runs (:mod:`~rnn_gradients.engine.extension`),
both loops run in C++ instead (``lstm_norm_forward``, ``lstm_norm_backward`` in ``csrc/recurrence.cpp``), bit for
bit the loops below, which stay the fallback and the definition.
"""

from __future__ import annotations

import itertools
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
    consume,
    states_buffer,
    tanh_from_twice,
)
from rnn_gradients.engine.normalization import Normalizer
from rnn_gradients.engine.step_norm import StepNorm, per_step, step_rows, use_compiled_statistics


def _cell_states(like: Tensor, steps: int, batch: int, hidden: int, keep: bool) -> Tensor:
    """A buffer for c_0 = 0, c_1, ..., c_T: (T+1, B, H), kept for the backward pass, or, when nothing will be
    differentiated (``keep`` False: evaluation), two rows (2, B, H) used in turn (:func:`_cell_rows`)."""
    if keep:
        return states_buffer(like, steps, batch, hidden)
    return like.new_zeros(2, batch, hidden)


def _cell_rows(buffer: Tensor, steps: int, keep: bool) -> tuple[Tensor, ...]:
    """The rows c_0, ..., c_T of a :func:`_cell_states` buffer, for the Python loop (the two rows in turn where not
    ``keep``)."""
    rows = buffer.unbind(0)
    return rows if keep else tuple(rows[t % 2] for t in range(steps + 1))


class LSTMNormRecurrence(torch.autograd.Function):
    """The LSTM recurrence with N_x, N_h and N_c (module docstring) for v (T, B, 4H) = W_ih x_t, h_0 = c_0 = 0.

    Arguments after v and W_hh: the gain and shift of N_x (its shift the input bias), those of N_h (the shift None
    for batch norm), those of N_c, the three modules,
    ``last``, ``keep``: False when no backward will follow (evaluation), so that only h_1..h_T is kept, and
    ``kernels``: the compiled module (:mod:`~rnn_gradients.engine.extension`), whose loops run the forward and the
    backward instead of :func:`_forward_loop` and :func:`_backward_loop` where there is a backward to come, with the
    same bits (its load check compares them).

    The backward writes ∂L/∂v over ``v`` (:func:`~rnn_gradients.engine.bptt.consume`): one backward per forward.
    """

    @staticmethod
    def forward(
        ctx: Any,
        v: Tensor,
        w_hh: Tensor,
        input_weight: Tensor,
        input_shift: Tensor,
        hidden_weight: Tensor,
        hidden_bias: Tensor | None,
        cell_weight: Tensor,
        cell_bias: Tensor | None,
        input_module: Normalizer,
        hidden_module: Normalizer,
        cell_module: Normalizer,
        last: bool,
        keep: bool,
        kernels: ModuleType | None = None,
    ) -> Tensor:
        v = v.contiguous()
        steps, batch, features = v.shape
        hidden = features // 4
        norm_x = StepNorm(input_module, input_weight, input_shift)
        norm_h = StepNorm(hidden_module, hidden_weight, hidden_bias)
        norm_c = StepNorm(cell_module, cell_weight, cell_bias)
        hs = _states_buffer(v, hidden)
        c = _cell_states(v, steps, batch, hidden, keep)
        z = per_step(v, steps, (batch, features), keep)
        gates = per_step(v, steps, (batch, features), keep)  # (σ(i), σ(f), tanh g, σ(o)) of every step
        tc = per_step(v, steps, (batch, hidden), keep)  # tanh N_c(c_t)
        norms = (norm_x, norm_h, norm_c)
        arguments = [norm.compiled_arguments() for norm in norms]
        ctx.compiled = keep and _compiled(kernels, v) and None not in arguments
        if ctx.compiled:
            statistics = kernels.lstm_norm_forward(hs, c, z, gates, tc, v, w_hh.t(), *itertools.chain(*arguments))
            ctx.statistics = use_compiled_statistics(norms, statistics)
        else:
            zs, gs, tcs = (step_rows(buffer, steps, keep) for buffer in (z, gates, tc))
            _forward_loop(v, w_hh, norm_x, norm_h, norm_c, hs.unbind(0), _cell_rows(c, steps, keep), zs, gs, tcs)
        if keep:
            ctx.hs, ctx.c, ctx.z, ctx.v, ctx.gates, ctx.tc = hs, c, z, v, gates, tc
            ctx.norm_x, ctx.norm_h, ctx.norm_c, ctx.kernels = norm_x, norm_h, norm_c, kernels
            ctx.save_for_backward(w_hh)
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (w_hh,) = ctx.saved_tensors
        hs, c, z, v, gates, tc = ctx.hs, ctx.c, ctx.z, ctx.v, ctx.gates, ctx.tc
        norm_x, norm_h, norm_c = ctx.norm_x, ctx.norm_h, ctx.norm_c
        output = _OutputGrad(grad)
        dh = torch.empty_like(tc)  # ∂L/∂h_t
        dgates = gates.new_empty(gates.shape[1:])  # ∂L/∂(i, f, g, o) = ∂L/∂u of the step at hand
        # ∂L/∂z = N_hᵀ(∂L/∂(i, f, g, o)) and ∂L/∂v = N_xᵀ(∂L/∂(i, f, g, o)) overwrite z and v, row t as step t's
        # backward ends (z_t's and v_t's last use): two fewer (T, B, 4H) blocks to bring into the cache.
        dz, dv = consume(ctx, z, v)
        if ctx.compiled and _compiled(ctx.kernels, grad):
            x_statistics, h_statistics, c_statistics = ctx.statistics
            ctx.kernels.lstm_norm_backward(
                dh, dgates, dz, dv, *norm_x.parameter_grads(), *norm_h.parameter_grads(), *norm_c.parameter_grads(),
                c, z, v, gates, tc, w_hh, *norm_x.compiled_backward_arguments(x_statistics),
                *norm_h.compiled_backward_arguments(h_statistics), *norm_c.compiled_backward_arguments(c_statistics),
                output.final, None if output.last_only else grad,
            )  # fmt: skip
        else:
            _backward_loop(output, w_hh, norm_x, norm_h, norm_c, c.unbind(0), z, v, gates, tc, dh, dgates, dz, dv)
        grad_w_hh = _flat(dz).t().mm(_flat(hs[:-1]))
        parameter_grads = (grad for norm in (norm_x, norm_h, norm_c) for grad in norm.parameter_grads())
        return dv, grad_w_hh, *parameter_grads, *(None,) * 6


def _forward_loop(
    v: Tensor,
    w_hh: Tensor,
    norm_x: StepNorm,
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
    for t, v_t in enumerate(v.unbind(0)):
        a = torch.add(norm_x.forward(v_t, t), norm_h.forward(torch.mm(states[t], w_t, out=zs[t]), t), out=gs[t])
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
    norm_x: StepNorm,
    norm_h: StepNorm,
    norm_c: StepNorm,
    cells: tuple[Tensor, ...],
    z: Tensor,
    v: Tensor,
    gates: Tensor,
    tc: Tensor,
    dh: Tensor,
    dg: Tensor,
    dz: Tensor,
    dv: Tensor,
) -> None:
    """The backward's reverse-time loop in torch ops (module docstring): ∂L/∂h_t into ``dh``, step t's
    ∂L/∂(i, f, g, o) into the row ``dg``, ∂L/∂z_t into ``dz``, ∂L/∂v_t into ``dv``; the normalizations add their
    gains' and shifts' gradients as they go."""
    steps, batch, hidden = tc.shape
    two, three = 2 * hidden, 3 * hidden
    delta = tc.new_empty(batch, hidden)  # ∂L/∂N_c(c_t)
    carry = tc.new_empty(batch, hidden)  # k_{t+1} = ∂L/∂c_{t+1} ⊙ σ(f_{t+1})
    dhs, dzs, dvs = dh.unbind(0), dz.unbind(0), dv.unbind(0)
    gs, tcs, zs, vs = gates.unbind(0), tc.unbind(0), z.unbind(0), v.unbind(0)
    dhs[-1].copy_(output.final)
    for t in range(steps - 1, -1, -1):
        a, d = gs[t], dhs[t]
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
        dvs[t].copy_(norm_x.backward(dg, vs[t], t))
        if t > 0:
            output.recurrent(through, w_hh, t, dhs[t - 1])

"""Backpropagation through time by hand for the GRU under layer or recurrent batch normalization.

As :mod:`rnn_gradients.engine.bptt` does for the vanilla cells and the plain GRU: the recurrence of a whole
sequence is one :class:`torch.autograd.Function`, its forward fills preallocated (T, B, ·) buffers without a graph,
its backward is one reverse-time loop, and ∂L/∂W_hh and ∂L/∂b_hh, sums over steps, are one GEMM and one reduction
after the loop; the normalization's gain and shift gradients are added step by step inside it, by
:class:`~rnn_gradients.engine.step_norm.StepNorm`, as autograd through the unrolled loop adds them. The input part
u_t = N_x(W_ih x_t) + b_ih is computed outside, over the whole sequence, by ordinary autograd ops. Per step, with
N_h the normalization of the recurrent term (:mod:`rnn_gradients.engine.normalization` for where it sits):

    z_t = h_{t−1} W_hhᵀ,   gh_t = N_h(z_t) + b_hh,   then the gates of :class:`~rnn_gradients.engine.bptt.GRURecurrence`

Backward: the plain GRU's loop (∂L/∂gh_t = dh_t ⊙ F_t with the bulk factor F of
:func:`~rnn_gradients.engine.bptt.gru_factors`), with ∂L/∂z_t = N_hᵀ(∂L/∂gh_t) by the kernel autograd itself
runs (``native_layer_norm_backward``, ``native_batch_norm_backward``) before the GEMM
dh_{t−1} = g_{t−1} + dh_t ⊙ z_t + (∂L/∂z_t) W_hh. ``tests/test_engine_equivalence.py`` checks it against autograd
through the reference cell (``RecurrentLayer.reference``). Where the compiled module runs
(:mod:`~rnn_gradients.engine.extension`), both loops run in C++ instead (``gru_norm_forward``,
``gru_norm_backward`` in ``csrc/recurrence.cpp``: the plain GRU's per-step passes with the normalization's CPU
kernels between them), bit for bit the loops below, which stay the fallback and the definition.

The LSTM under a normalization has its own module, :mod:`~rnn_gradients.engine.lstm_norm_bptt`, along the same
lines.
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
    gru_backward_loop,
    gru_factors,
    tanh_from_twice,
)
from rnn_gradients.engine.normalization import Normalizer
from rnn_gradients.engine.step_norm import StepNorm, per_step


class GRUNormRecurrence(torch.autograd.Function):
    """The GRU recurrence with N_h (module docstring) for u (T, B, 3H) = N_x(W_ih x_t) + b_ih, h_0 = 0.

    Arguments after u, W_hh and b_hh: the gain and shift (None for batch norm) of N_h, its module, ``last``,
    ``keep``: False when no backward will follow (evaluation), so that only h_1..h_T is kept, not every step's
    gates and normalization inputs, and ``kernels``: the compiled module
    (:mod:`~rnn_gradients.engine.extension`), whose loops run the forward and the backward instead of the Python
    loops below where there is a backward to come and :meth:`StepNorm.compiled_arguments` covers N_h, with the
    same bits (its load check compares them).
    """

    @staticmethod
    def forward(
        ctx: Any,
        u: Tensor,
        w_hh: Tensor,
        b_hh: Tensor,
        hidden_weight: Tensor,
        hidden_bias: Tensor | None,
        module: Normalizer,
        last: bool,
        keep: bool,
        kernels: ModuleType | None = None,
    ) -> Tensor:
        if keep:
            u = u.contiguous()
        steps, batch, features = u.shape
        hidden = features // 3
        two = 2 * hidden
        norm_h = StepNorm(module, hidden_weight, hidden_bias)
        hs = _states_buffer(u, hidden)
        z, zs = per_step(u, steps, (batch, features), keep)
        gh, ghs = per_step(u, steps, (batch, features), keep)
        rz, rzs = per_step(u, steps, (batch, two), keep)
        n, ns = per_step(u, steps, (batch, hidden), keep)
        w_t = w_hh.t()
        compiled = norm_h.compiled_arguments() if keep and _compiled(kernels, u) else None
        if compiled is not None:
            ctx.statistics = kernels.gru_norm_forward(hs, z, gh, rz, n, u, w_t, b_hh, *compiled)
            norm_h.use_statistics(ctx.statistics)
        else:
            # 2·u_n: the candidate's tanh comes from its doubled input (bptt.tanh_from_twice).
            states, u_rz, u_n = hs.unbind(0), u[..., :two].unbind(0), torch.mul(u[..., two:], 2.0).unbind(0)
            for t in range(steps):
                g = torch.add(norm_h.forward(torch.mm(states[t], w_t, out=zs[t]), t), b_hh, out=ghs[t])
                gates = torch.add(u_rz[t], g[:, :two], out=rzs[t]).sigmoid_()
                cand = torch.addcmul(u_n[t], gates[:, :hidden], g[:, two:], value=2.0, out=ns[t])
                torch.lerp(tanh_from_twice(cand, ns[t]), states[t], gates[:, hidden:], out=states[t + 1])
        if keep:
            ctx.hs, ctx.z, ctx.gh, ctx.rz, ctx.n = hs, z, gh, rz, n
            ctx.norm_h, ctx.kernels, ctx.compiled = norm_h, kernels, compiled
            ctx.save_for_backward(w_hh)
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (w_hh,) = ctx.saved_tensors
        hs, z, gh, rz, n, norm_h = ctx.hs, ctx.z, ctx.gh, ctx.rz, ctx.n, ctx.norm_h
        steps, batch, hidden = n.shape
        dz = torch.empty_like(z)  # ∂L/∂z = N_hᵀ(∂L/∂gh)
        output = _OutputGrad(grad)
        if ctx.compiled is not None and _compiled(ctx.kernels, grad):
            # As the plain GRU's compiled backward: the factors step by step inside the loop.
            dh, dgh, a = torch.empty_like(n), n.new_empty(steps, batch, 3, hidden), torch.empty_like(n)
            outputs = None if output.last_only else grad
            ctx.kernels.gru_norm_backward(
                dh, dgh, a, dz, norm_h.grad_weight, hs, z, gh, rz, n, w_hh,
                *norm_h.compiled_backward_arguments(ctx.statistics), output.final, outputs, norm_h.grad_bias,
            )  # fmt: skip
        else:
            a, factor, zg = gru_factors(hs, gh, rz, n)
            dzs, zs = dz.unbind(0), z.unbind(0)

            def through_norm(dgh_t: Tensor, t: int) -> Tensor:
                return dzs[t].copy_(norm_h.backward(dgh_t, zs[t], t))

            dh, dgh = gru_backward_loop(output, factor, zg, w_hh, through_norm)
        dgh_all = dgh.view(steps, batch, 3 * hidden)
        grad_w_hh = _flat(dz).t().mm(_flat(hs[:-1]))
        grad_b_hh = _flat(dgh_all).sum(0)
        # ∂L/∂u equals ∂L/∂gh in the r and z blocks; in the n block it is dh ⊙ A: overwrite, dgh is spent.
        torch.mul(dh, a, out=dgh[:, :, 2])
        return dgh_all, grad_w_hh, grad_b_hh, *norm_h.parameter_grads(), None, None, None, None

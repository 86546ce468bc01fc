"""Backpropagation through time by hand for the GRU under layer or recurrent batch normalization.

As :mod:`rnn_gradients.engine.bptt` does for the vanilla cells and the plain GRU: the recurrence of a whole
sequence is one :class:`torch.autograd.Function`, its forward fills preallocated (T, B, ·) buffers without a graph,
its backward is one reverse-time loop, and ∂L/∂W_hh and ∂L/∂b_hh, sums over steps, are one GEMM and one reduction
after the loop; the normalizations' gain and shift gradients are added step by step, by
:class:`~rnn_gradients.engine.step_norm.StepNorm`, as autograd through the unrolled loop adds them. Only the input
projections v_t = W_ih x_t are computed outside, over the whole sequence (one GEMM, and one for ∂L/∂W_ih); their
normalization N_x runs step by step inside the loops, on the (B, 3H) block of the step at hand, where computing it
over the whole (T, B, 3H) block outside cost passes over several MB each way (a bias, a layout copy, the
gradient's). Per step, with N_x's shift the input bias b_ih (plus layer norm's own shift) and N_h the
normalization of the recurrent term (:mod:`rnn_gradients.engine.normalization` for where they sit):

    u_t = N_x(v_t),   z_t = h_{t−1} W_hhᵀ,   gh_t = N_h(z_t) + b_hh,
    then the gates of :class:`~rnn_gradients.engine.bptt.GRURecurrence`

Backward: the plain GRU's loop (∂L/∂gh_t = dh_t ⊙ F_t with the bulk factor F of
:func:`~rnn_gradients.engine.bptt.gru_factors`), with ∂L/∂z_t = N_hᵀ(∂L/∂gh_t) by the kernel autograd itself
runs (``native_layer_norm_backward``, ``native_batch_norm_backward``) before the GEMM
dh_{t−1} = g_{t−1} + dh_t ⊙ z_t + (∂L/∂z_t) W_hh; then ∂L/∂u_t, which is ∂L/∂gh_t in the r and z blocks and
dh_t ⊙ A_t in the n block, and ∂L/∂v_t = N_xᵀ(∂L/∂u_t), step by step from the last.
``tests/test_engine_equivalence.py`` checks it against autograd through the reference cell
(``RecurrentLayer.reference``). Where the compiled module runs (:mod:`~rnn_gradients.engine.extension`), both loops
run in C++ instead (``gru_norm_forward``, ``gru_norm_backward`` in ``csrc/recurrence.cpp``: the plain GRU's per-step
passes with the normalizations' CPU kernels between them, N_x's backward inside the backward loop), bit for bit the
loops below, which stay the fallback and the definition.

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
    consume,
    gru_backward_loop,
    gru_factors,
    tanh_from_twice,
)
from rnn_gradients.engine.normalization import Normalizer
from rnn_gradients.engine.step_norm import StepNorm, per_step, step_rows, use_compiled_statistics


class GRUNormRecurrence(torch.autograd.Function):
    """The GRU recurrence with N_x and N_h (module docstring) for v (T, B, 3H) = W_ih x_t, h_0 = 0.

    Arguments after v, W_hh and b_hh: the gain and shift of N_x (its shift the input bias b_ih, plus layer norm's
    own shift), those of N_h (None for batch norm), the two modules, ``last``, ``keep``: False when no backward will
    follow (evaluation), so that only h_1..h_T is kept, not every step's gates and normalization inputs, and
    ``kernels``: the compiled module (:mod:`~rnn_gradients.engine.extension`), whose loops run the forward and the
    backward instead of the Python loops below where there is a backward to come and
    :meth:`StepNorm.compiled_arguments` covers both normalizations, with the same bits (its load check compares
    them).

    The backward writes ∂L/∂v over ``v`` (:func:`~rnn_gradients.engine.bptt.consume`): one backward per forward.
    """

    @staticmethod
    def forward(
        ctx: Any,
        v: Tensor,
        w_hh: Tensor,
        b_hh: Tensor,
        input_weight: Tensor,
        input_shift: Tensor,
        hidden_weight: Tensor,
        hidden_bias: Tensor | None,
        input_module: Normalizer,
        hidden_module: Normalizer,
        last: bool,
        keep: bool,
        kernels: ModuleType | None = None,
    ) -> Tensor:
        v = v.contiguous()
        steps, batch, features = v.shape
        hidden = features // 3
        two = 2 * hidden
        norm_x = StepNorm(input_module, input_weight, input_shift)
        norm_h = StepNorm(hidden_module, hidden_weight, hidden_bias)
        hs = _states_buffer(v, hidden)
        z, gh = per_step(v, steps, (batch, features), keep), per_step(v, steps, (batch, features), keep)
        rz, n = per_step(v, steps, (batch, two), keep), per_step(v, steps, (batch, hidden), keep)
        w_t = w_hh.t()
        arguments = (norm_x.compiled_arguments(), norm_h.compiled_arguments())
        compiled = keep and _compiled(kernels, v) and None not in arguments
        if compiled:
            statistics = kernels.gru_norm_forward(hs, z, gh, rz, n, v, w_t, b_hh, *arguments[0], *arguments[1])
            ctx.statistics = use_compiled_statistics((norm_x, norm_h), statistics)
        else:
            states = hs.unbind(0)
            zs, ghs, rzs, ns = (step_rows(buffer, steps, keep) for buffer in (z, gh, rz, n))
            for t, v_t in enumerate(v.unbind(0)):
                u = norm_x.forward(v_t, t)
                g = torch.add(norm_h.forward(torch.mm(states[t], w_t, out=zs[t]), t), b_hh, out=ghs[t])
                gates = torch.add(u[:, :two], g[:, :two], out=rzs[t]).sigmoid_()
                # 2·u_n: the candidate's tanh comes from its doubled input (bptt.tanh_from_twice).
                cand = torch.addcmul(u[:, two:].mul_(2.0), gates[:, :hidden], g[:, two:], value=2.0, out=ns[t])
                torch.lerp(tanh_from_twice(cand, ns[t]), states[t], gates[:, hidden:], out=states[t + 1])
        if keep:
            ctx.hs, ctx.z, ctx.gh, ctx.rz, ctx.n, ctx.v = hs, z, gh, rz, n, v
            ctx.norm_x, ctx.norm_h, ctx.kernels, ctx.compiled = norm_x, norm_h, kernels, compiled
            ctx.save_for_backward(w_hh)
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (w_hh,) = ctx.saved_tensors
        hs, z, gh, rz, n, v, norm_x, norm_h = ctx.hs, ctx.z, ctx.gh, ctx.rz, ctx.n, ctx.v, ctx.norm_x, ctx.norm_h
        steps, batch, hidden = n.shape
        # ∂L/∂z = N_hᵀ(∂L/∂gh) and ∂L/∂v = N_xᵀ(∂L/∂u) overwrite z and v (as in lstm_norm_bptt).
        dz, dv = consume(ctx, z, v)
        output = _OutputGrad(grad)
        if ctx.compiled and _compiled(ctx.kernels, grad):
            # As the plain GRU's compiled backward: the factors step by step inside the loop, and N_x's backward.
            dh, dgh, a = torch.empty_like(n), n.new_empty(steps, batch, 3, hidden), torch.empty_like(n)
            outputs = None if output.last_only else grad
            ctx.kernels.gru_norm_backward(
                dh, dgh, a, dz, dv, *norm_x.parameter_grads(), norm_h.grad_weight, hs, z, gh, rz, n, v, w_hh,
                *norm_x.compiled_backward_arguments(ctx.statistics[0]),
                *norm_h.compiled_backward_arguments(ctx.statistics[1]), output.final, outputs, norm_h.grad_bias,
            )  # fmt: skip
            dgh_all = dgh.view(steps, batch, 3 * hidden)
        else:
            a, factor, zg = gru_factors(hs, gh, rz, n)
            dzs, zs = dz.unbind(0), z.unbind(0)

            def through_norm(dgh_t: Tensor, t: int) -> Tensor:
                return dzs[t].copy_(norm_h.backward(dgh_t, zs[t], t))

            dh, dgh = gru_backward_loop(output, factor, zg, w_hh, through_norm)
            dgh_all = dgh.view(steps, batch, 3 * hidden)
            # ∂L/∂u equals ∂L/∂gh in the r and z blocks; in the n block it is dh ⊙ A. Then N_x's backward, step by
            # step from the last as the compiled loop runs it.
            du = dgh_all.clone()
            torch.mul(dh, a, out=du.view(steps, batch, 3, hidden)[:, :, 2])
            dvs, dus, vs = dv.unbind(0), du.unbind(0), v.unbind(0)
            for t in range(steps - 1, -1, -1):
                dvs[t].copy_(norm_x.backward(dus[t], vs[t], t))
        grad_w_hh = _flat(dz).t().mm(_flat(hs[:-1]))
        grad_b_hh = _flat(dgh_all).sum(0)
        return dv, grad_w_hh, grad_b_hh, *norm_x.parameter_grads(), *norm_h.parameter_grads(), *(None,) * 5

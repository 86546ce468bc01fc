"""The vanilla cell under recurrent batch normalization with its input part's batch norm inside the compiled loop.

h_t = φ(BN_x,t(W_ih x_t; γ_x) + b + BN_t(W_hh h_{t−1}; γ)), both batch norms with step t's statistics
(Cooijmans et al. 2016). The reference path computes the input part for the whole sequence at once:
:meth:`~rnn_gradients.engine.normalization.StepwiseBatchNorm.sequence` normalizes the (B, T·H) block, one
batch-norm channel per (step, unit), by autograd, and :class:`~rnn_gradients.engine.bptt.VanillaBatchNormRecurrence`
runs the recurrence on it. Each of those bulk passes walks 1 MB blocks at the study's shapes, where the loop works on
one step's 16 KB: here ``csrc/recurrence.cpp`` (``batch_norm_fused_forward`` and ``batch_norm_fused_backward``)
normalizes step t's input part inside step t, in cache.

Channel by channel the arithmetic is the bulk's, so the results are its bit for bit (the load check of
:mod:`~rnn_gradients.engine.extension` and ``tests/test_extension.py`` compare them): per channel, ATen's
batch-norm kernels reduce over the batch rows in order, and the compiled loop reproduces their one-thread
arithmetic. The gain's and the bias's gradients are left to the same autograd nodes as on the reference path:
the function takes γ_x repeated T times (``repeat``, whose backward sums the T per-step gradients) and the bias
expanded to (B, T, H) (``expand``, whose backward sums its gradient over batch and time), and hands back the
per-step gradient and ∂L/∂u_t in the layouts the reference path's nodes receive.

It runs where that arithmetic is the one ATen takes: the compiled module loaded, float32, one thread, B > 1
(:func:`applies`); everywhere else the reference path runs.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from rnn_gradients.engine.bptt import (
    COMPILED_KINDS,
    _compiled,
    _flat,
    _OutputGrad,
    _outputs,
    consume,
    input_scale,
    states_buffer,
)


def applies(kernels: ModuleType | None, v: Tensor) -> bool:
    """Whether the fused path runs on input projections ``v`` (B, T, H): compiled loops for float32 CPU tensors,
    one thread, B > 1 (with more threads, or a batch of one, ATen's batch norm accumulates differently)."""
    return _compiled(kernels, v) and torch.get_num_threads() == 1 and v.shape[0] > 1


class FusedVanillaBatchNorm(torch.autograd.Function):
    """h_1..h_T (or h_T when ``last``) of the vanilla recurrence under batch norm on both parts, from the input
    projections ``v`` = W_ih x_t (B, T, H) batch-major, ``in_gain_rep`` = γ_x repeated T times (T·H), ``bias`` the
    folded bias expanded to (B, T, H), the recurrent weight and gain, and both batch norms' running statistics
    ((max_len, H) each; training updates their rows in place).

    Backward: ∂L/∂v (B, T, H), the per-step ∂L/∂γ_x (T·H, summed by ``repeat``'s backward), ∂L/∂u_t as (B, T, H)
    (summed to the bias by ``expand``'s backward), ∂L/∂W_hh = Σ_t (∂L/∂z_t)ᵀ h_{t−1} and ∂L/∂γ; ∂L/∂v is written
    over ``v`` (:func:`~rnn_gradients.engine.bptt.consume`): one backward per forward.
    """

    @staticmethod
    def forward(
        ctx: Any,
        v: Tensor,
        in_gain_rep: Tensor,
        bias: Tensor,
        w_hh: Tensor,
        gain: Tensor,
        in_running: tuple[Tensor, Tensor],
        running: tuple[Tensor, Tensor],
        kind: str,
        training: bool,
        momentum: tuple[float, float],
        eps: tuple[float, float],
        last: bool,
        kernels: ModuleType,
    ) -> Tensor:
        batch, steps, hidden = v.shape
        v = v.contiguous()
        scale = input_scale(kind)  # the activation's input s·(u_t + BN_t(z; γ)) = s·u_t + BN_t(z; s·γ)
        gain_s = gain * scale if scale != 1 else gain
        in_gain = in_gain_rep[:hidden].contiguous()
        hs = states_buffer(v, steps, batch, hidden)
        pre = v.new_empty(steps, batch, hidden)
        stats = kernels.batch_norm_fused_forward(
            hs,
            pre,
            v,
            in_gain,
            bias[0, 0].contiguous(),
            scale,
            *in_running,
            w_hh.t(),
            gain_s,
            *running,
            COMPILED_KINDS[kind],
            training,
            momentum[1],
            eps[1],
            momentum[0],
            eps[0],
        )
        ctx.kind, ctx.hs, ctx.pre, ctx.v, ctx.kernels = kind, hs, pre, v, kernels
        ctx.training, ctx.eps = training, eps
        # Not saved for backward: training updates them in place, and its backward does not read them.
        ctx.in_running, ctx.running = in_running, running
        ctx.save_for_backward(w_hh, gain, in_gain, *stats)
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        w_hh, gain, in_gain, *stats = ctx.saved_tensors
        hs, pre, v = ctx.hs, ctx.pre, ctx.v
        delta = torch.empty_like(pre)  # ∂L/∂u_t
        # ∂L/∂z_t and ∂L/∂v overwrite z_t and v, step t's rows as its backward ends (their last use; the written-out
        # batch norm reads each element before it writes its gradient): two fewer blocks to bring into the cache.
        grad_pre, grad_v = consume(ctx, pre, v)
        grad_gain = torch.zeros_like(gain)
        grad_in_gain = v.new_empty(v.shape[1], v.shape[2])
        output = _OutputGrad(grad)
        ctx.kernels.batch_norm_fused_backward(
            delta,
            grad_pre,
            grad_gain,
            grad_v,
            grad_in_gain,
            hs,
            pre,
            v,
            stats,
            w_hh,
            gain,
            in_gain,
            *ctx.running,
            *ctx.in_running,
            COMPILED_KINDS[ctx.kind],
            ctx.training,
            ctx.eps[1],
            ctx.eps[0],
            output.final,
            None if output.last_only else grad,
        )
        grad_w_hh = _flat(grad_pre).t().mm(_flat(hs[:-1]))
        nothing = (None,) * 8
        return grad_v, grad_in_gain.view(-1), delta.transpose(0, 1), grad_w_hh, grad_gain, *nothing

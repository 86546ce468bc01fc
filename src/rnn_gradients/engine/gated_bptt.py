"""Backpropagation through time by hand for the gated cells under layer or recurrent batch normalization.

As :mod:`rnn_gradients.engine.bptt` does for the vanilla cells and the plain GRU: the recurrence of a whole
sequence is one :class:`torch.autograd.Function`, its forward fills preallocated (T, B, ·) buffers without a graph,
its backward is one reverse-time loop, and every gradient that is a sum over steps (∂L/∂W_hh, the normalizations'
gains and shifts) is one GEMM or one reduction after the loop. The input part u_t (W_ih x_t through the input
normalization, plus the biases) is computed outside, over the whole sequence, by ordinary autograd ops.

Per step, with N_h the normalization of the recurrent term and N_c the LSTM's normalization of its cell state
(:mod:`rnn_gradients.engine.normalization` for where they sit):

    LSTM:  a_t = u_t + N_h(h_{t−1} W_hhᵀ) = (a_i, a_f, a_g, a_o),   i, f, o = σ(a_i, a_f, a_o),  g = tanh(a_g)
           c_t = f ⊙ c_{t−1} + i ⊙ g,   k_t = tanh(N_c(c_t)),   h_t = o ⊙ k_t
    GRU:   gh_t = N_h(h_{t−1} W_hhᵀ) + b_hh,   then the gates of :class:`~rnn_gradients.engine.bptt.GRURecurrence`

Backward of the LSTM, with dh_t = ∂L/∂h_t (from the output and from step t + 1) and dc the carry ∂L/∂c_t from
step t + 1 (dc_{t+1} ⊙ f_{t+1}):

    ∂L/∂a_o = dh ⊙ k ⊙ o(1 − o),    dc_t = carry + N_cᵀ(dh ⊙ o ⊙ (1 − k²)),
    (∂L/∂a_i, ∂L/∂a_f, ∂L/∂a_g) = dc_t ⊙ (g ⊙ i(1 − i), c_{t−1} ⊙ f(1 − f), i ⊙ (1 − g²)),
    ∂L/∂z_t = N_hᵀ(∂L/∂a_t),   dh_{t−1} = g_{t−1} + (∂L/∂z_t) W_hh

where every factor after a ⊙ is known after the forward and is computed for all steps at once, so that a step of
the loop is a few multiplications, the two normalizations' backward kernels (the ones autograd itself runs:
``native_layer_norm_backward``, ``native_batch_norm_backward``) and one GEMM. The GRU's loop is the plain GRU's
with N_hᵀ before the GEMM. ``tests/test_engine_equivalence.py`` checks both against autograd through the
reference cells (``RecurrentLayer.reference``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnn_gradients.engine.bptt import _flat, _OutputGrad, _outputs, _states_buffer, gru_factors
from rnn_gradients.engine.normalization import LayerNorm, Normalizer, StepwiseBatchNorm

_layer_norm_backward = torch.ops.aten.native_layer_norm_backward.default
_batch_norm_backward = torch.ops.aten.native_batch_norm_backward.default


class StepNorm:
    """One normalization applied step by step inside a recurrence, with the parameters passed in explicitly.

    Layer norm: statistics per example over the F features, one (gain, shift) for all steps; recurrent batch
    norm: statistics per step over the batch (in training: the batch's, updating step t's running row in place;
    in evaluation: step t's running row, steps past ``max_len`` the last one), as
    :class:`~rnn_gradients.engine.normalization.StepwiseBatchNorm` does. ``forward`` and ``backward`` run the
    kernels autograd runs for ``F.layer_norm`` / ``F.batch_norm``; the gain's and shift's gradients are summed
    by :meth:`parameter_grads` (layer norm: in bulk after the loop; batch norm: per step, by its kernel).
    """

    def __init__(self, module: Normalizer, weight: Tensor, bias: Tensor | None) -> None:
        self.weight, self.bias = weight, bias
        self.eps = module.eps
        self.layer = isinstance(module, LayerNorm)
        self.shape = (weight.shape[0],)
        self.saved: list[tuple[Tensor, Tensor]] = []
        if isinstance(module, StepwiseBatchNorm):
            self.training, self.momentum = module.training, module.momentum
            self.means, self.variances = module.running_mean.unbind(0), module.running_var.unbind(0)
            self.rows = module.max_len
            self.grad_weight = torch.zeros_like(weight)
            self.grad_bias = None if bias is None else torch.zeros_like(bias)

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
        """∂L/∂z from ∂L/∂N(z) at step t (batch norm also adds step t's share of the gain's and shift's)."""
        mean, rstd = self.saved[t]
        if self.layer:
            mask = [True, False, False]
            return _layer_norm_backward(grad, z, self.shape, mean, rstd, self.weight, self.bias, mask)[0]
        row = self._row(t)
        mask = [True, True, self.bias is not None]
        dz, dweight, dbias = _batch_norm_backward(
            grad, z, self.weight, self.means[row], self.variances[row], mean, rstd, self.training, self.eps, mask
        )
        self.grad_weight += dweight
        if self.grad_bias is not None:
            self.grad_bias += dbias
        return dz

    def parameter_grads(self, grads: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor | None]:
        """(∂L/∂gain, ∂L/∂shift or None) from ∂L/∂N(z) and z of every step, (T, B, F) each."""
        if not self.layer:
            return self.grad_weight, self.grad_bias
        mean = torch.stack([m for m, _ in self.saved])
        rstd = torch.stack([r for _, r in self.saved])
        normalized = (inputs - mean) * rstd
        grad_bias = None if self.bias is None else _flat(grads).sum(0)
        return _flat(grads * normalized).sum(0), grad_bias


def _per_step(like: Tensor, steps: int, shape: tuple[int, ...], keep: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
    """A per-step buffer and its rows: a (steps, *shape) tensor kept for the backward pass, or, when nothing will
    be differentiated (``keep`` False: evaluation), one scratch row reused by every step."""
    if keep:
        buffer = like.new_empty(steps, *shape)
        return buffer, buffer.unbind(0)
    row = like.new_empty(*shape)
    return row, (row,) * steps


class LSTMNormRecurrence(torch.autograd.Function):
    """The LSTM recurrence with N_h and N_c (module docstring) for u (T, B, 4H), h_0 = c_0 = 0.

    Arguments after u and W_hh: the gain and shift (None for batch norm's N_h) of N_h, then of N_c, the two
    normalization modules (for their kind, ε and running statistics), ``last``, and ``keep``: False when no
    backward will follow (evaluation), so that only h_1..h_T is kept, not every step's gates and cell states.
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
        modules: tuple[Normalizer, Normalizer],
        last: bool,
        keep: bool,
    ) -> Tensor:
        if keep:
            u = u.contiguous()
        steps, batch, features = u.shape
        hidden = features // 4
        norm_h = StepNorm(modules[0], hidden_weight, hidden_bias)
        norm_c = StepNorm(modules[1], cell_weight, cell_bias)
        hs = _states_buffer(u, hidden)
        states, us = hs.unbind(0), u.unbind(0)
        z, zs = _per_step(u, steps, (batch, features), keep)  # h_{t−1} W_hhᵀ, the input of N_h
        act, acts = _per_step(u, steps, (batch, features), keep)  # (i, f, g, o) after their nonlinearities
        k, ks = _per_step(u, steps, (batch, hidden), keep)  # tanh(N_c(c_t))
        if keep:
            cs = _states_buffer(u, hidden)  # c_0 = 0 in row 0
            cells = cs.unbind(0)
        else:
            cs = u.new_zeros(2, batch, hidden)
            cells = tuple(cs[t % 2] for t in range(steps + 1))
        i_g, f_g, g_g, o_g = zip(*(a.view(batch, 4, hidden).unbind(1) for a in acts), strict=True)
        g_pre = u.new_empty(batch, hidden)
        w_t = w_hh.t()
        for t in range(steps):
            a = torch.add(us[t], norm_h.forward(torch.mm(states[t], w_t, out=zs[t]), t), out=acts[t])
            torch.tanh(g_g[t], out=g_pre)
            a.sigmoid_()
            g_g[t].copy_(g_pre)
            torch.mul(f_g[t], cells[t], out=cells[t + 1]).addcmul_(i_g[t], g_g[t])
            torch.tanh(norm_c.forward(cells[t + 1], t), out=ks[t])
            torch.mul(o_g[t], ks[t], out=states[t + 1])
        if keep:
            ctx.hs, ctx.cs, ctx.z, ctx.act, ctx.k = hs, cs, z, act, k
            ctx.norms = (norm_h, norm_c)
            ctx.save_for_backward(w_hh)
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (w_hh,) = ctx.saved_tensors
        hs, cs, z, act, k = ctx.hs, ctx.cs, ctx.z, ctx.act, ctx.k
        norm_h, norm_c = ctx.norms
        steps, batch, features = act.shape
        hidden = features // 4
        i, f, g, o = act.view(steps, batch, 4, hidden).unbind(2)
        # The factors of the module docstring, for all steps at once.
        out_factor = k * o * (1.0 - o)  # ∂L/∂a_o = dh ⊙ out_factor
        cell_factor = o * (1.0 - k * k)  # ∂L/∂N_c(c) = dh ⊙ cell_factor
        gate_factor = act.new_empty(steps, batch, 3, hidden)  # (∂L/∂a_i, ∂L/∂a_f, ∂L/∂a_g) = dc ⊙ gate_factor
        torch.mul(g, i * (1.0 - i), out=gate_factor[:, :, 0])
        torch.mul(cs[:-1], f * (1.0 - f), out=gate_factor[:, :, 1])
        torch.mul(i, 1.0 - g * g, out=gate_factor[:, :, 2])
        da = torch.empty_like(act)  # ∂L/∂a = ∂L/∂u
        dz = torch.empty_like(act)  # ∂L/∂z, z = h W_hhᵀ
        dm = torch.empty_like(k)  # ∂L/∂N_c(c)
        dh = torch.empty_like(k)
        dc = torch.empty_like(k)
        da_gates = da.view(steps, batch, 4, hidden)
        da_ifg, da_o = da_gates[:, :, :3].unbind(0), da_gates[:, :, 3].unbind(0)
        das, dzs, dms, dhs, dcs = da.unbind(0), dz.unbind(0), dm.unbind(0), dh.unbind(0), dc.unbind(0)
        zs, cells = z.unbind(0), cs.unbind(0)
        out_factors, cell_factors, gate_factors, forget = (
            out_factor.unbind(0),
            cell_factor.unbind(0),
            gate_factor.unbind(0),
            f.unbind(0),
        )
        output = _OutputGrad(grad)
        dhs[-1].copy_(output.final)
        carry = None  # ∂L/∂c_t from step t + 1
        for t in range(steps - 1, -1, -1):
            torch.mul(dhs[t], cell_factors[t], out=dms[t])
            dn = norm_c.backward(dms[t], cells[t + 1], t)
            dc_t = dn if carry is None else torch.add(carry, dn, out=dcs[t])
            torch.mul(dc_t.unsqueeze(1), gate_factors[t], out=da_ifg[t])
            torch.mul(dhs[t], out_factors[t], out=da_o[t])
            dzs[t].copy_(norm_h.backward(das[t], zs[t], t))
            if t == 0:
                break
            carry = torch.mul(dc_t, forget[t], out=dcs[t - 1])
            output.recurrent(dzs[t], w_hh, t, dhs[t - 1])
        grad_w_hh = _flat(dz).t().mm(_flat(hs[:-1]))
        hidden_grads = norm_h.parameter_grads(da, z)
        cell_grads = norm_c.parameter_grads(dm, cs[1:])
        return da, grad_w_hh, *hidden_grads, *cell_grads, None, None, None


class GRUNormRecurrence(torch.autograd.Function):
    """The GRU recurrence with N_h (module docstring) for u (T, B, 3H) = N_x(W_ih x_t) + b_ih, h_0 = 0.

    Arguments after u, W_hh and b_hh: the gain and shift (None for batch norm) of N_h, its module, ``last`` and
    ``keep`` (as :class:`LSTMNormRecurrence`).
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
    ) -> Tensor:
        if keep:
            u = u.contiguous()
        steps, batch, features = u.shape
        hidden = features // 3
        two = 2 * hidden
        norm_h = StepNorm(module, hidden_weight, hidden_bias)
        hs = _states_buffer(u, hidden)
        states, u_rz, u_n = hs.unbind(0), u[..., :two].unbind(0), u[..., two:].unbind(0)
        z, zs = _per_step(u, steps, (batch, features), keep)
        gh, ghs = _per_step(u, steps, (batch, features), keep)
        rz, rzs = _per_step(u, steps, (batch, two), keep)
        n, ns = _per_step(u, steps, (batch, hidden), keep)
        w_t = w_hh.t()
        for t in range(steps):
            g = torch.add(norm_h.forward(torch.mm(states[t], w_t, out=zs[t]), t), b_hh, out=ghs[t])
            gates = torch.add(u_rz[t], g[:, :two], out=rzs[t]).sigmoid_()
            cand = torch.addcmul(u_n[t], gates[:, :hidden], g[:, two:], out=ns[t]).tanh_()
            torch.lerp(cand, states[t], gates[:, hidden:], out=states[t + 1])
        if keep:
            ctx.hs, ctx.z, ctx.gh, ctx.rz, ctx.n = hs, z, gh, rz, n
            ctx.norm_h = norm_h
            ctx.save_for_backward(w_hh)
        return _outputs(hs, last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (w_hh,) = ctx.saved_tensors
        hs, z, gh, rz, n, norm_h = ctx.hs, ctx.z, ctx.gh, ctx.rz, ctx.n, ctx.norm_h
        steps, batch, hidden = n.shape
        a, factor, zg = gru_factors(hs, gh, rz, n)
        dh = torch.empty_like(n)
        dgh = torch.empty_like(factor)  # ∂L/∂gh = ∂L/∂N_h(z)
        dz = torch.empty_like(z)
        output = _OutputGrad(grad)
        dh[-1].copy_(output.final)
        dhs, dh_gates, factors = dh.unbind(0), dh.unsqueeze(2).unbind(0), factor.unbind(0)
        dghs, dgh_flat, zgs = dgh.unbind(0), dgh.view(steps, batch, -1).unbind(0), zg.unbind(0)
        dzs, zs = dz.unbind(0), z.unbind(0)
        for t in range(steps - 1, -1, -1):
            torch.mul(dh_gates[t], factors[t], out=dghs[t])
            dzs[t].copy_(norm_h.backward(dgh_flat[t], zs[t], t))
            if t == 0:
                break
            if output.last_only:
                torch.mul(dhs[t], zgs[t], out=dhs[t - 1])
            else:
                torch.addcmul(output.rows[t - 1], dhs[t], zgs[t], out=dhs[t - 1])
            dhs[t - 1].addmm_(dzs[t], w_hh)
        dgh_all = dgh.view(steps, batch, 3 * hidden)
        grad_w_hh = _flat(dz).t().mm(_flat(hs[:-1]))
        grad_b_hh = _flat(dgh_all).sum(0)
        hidden_grads = norm_h.parameter_grads(dgh_all, z)
        # ∂L/∂u equals ∂L/∂gh in the r and z blocks; in the n block it is dh ⊙ A: overwrite, dgh is spent.
        torch.mul(dh, a, out=dgh[:, :, 2])
        return dgh_all, grad_w_hh, grad_b_hh, *hidden_grads, None, None, None

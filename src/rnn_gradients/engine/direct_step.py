"""A training step's loss and gradients without autograd, for the models whose every part has its backward here.

``loss.backward()`` on a BPTT path walks a graph of about ten nodes — the bias sum, the input projection, the
recurrence, the read-out, the loss — and records it first during the forward, each node a dispatch with its own
bookkeeping. At the study's shapes (B = 64, H = 64) that costs about a sixth of a vanilla cell's step
(``benchmarks/README.md``). Here the same computations run in the same order by the same code: the recurrences'
and the input projection's own ``forward`` and ``backward`` (:mod:`~rnn_gradients.engine.bptt`, called with a
plain context), the loss's backward kernels (:meth:`Task.loss_and_gradient`) and the read-out's backward as
autograd's formulas compute it. So the loss and every gradient are the autograd path's bit for bit
(``tests/test_direct_step.py``), NaN and Inf included, and a run trains to the same bits either way.

For the linear read-out y = h Wᵀ + b (``F.linear``) and the seed g = ∂L/∂y from the loss:

    ∂L/∂h = g W,   ∂L/∂W = gᵀ h,   ∂L/∂b = Σ_batch g

and a sum of biases (b_ih + b_hh, or the layer norm's shift β + b_ih + b_hh) passes its gradient to each term.
Under batch norm (:mod:`~rnn_gradients.engine.fused_batch_norm`) the input gain γ_x enters repeated over the T
steps and the bias expanded over (B, T, H); their gradients are what autograd's ``repeat`` and ``expand`` nodes
make of the per-step ones, with the same reductions:

    ∂L/∂γ_x = Σ_t ∂L/∂γ_x,t   (the (T·H) gradient viewed as (T, H), summed over t)
    ∂L/∂b = Σ_{b,t} ∂L/∂u_{b,t}   (summed over the batch and the steps at once)

The forward updates batch norm's running statistics as on the autograd path: it is the same call.

Covered: a task read out at the last step whose loss has its gradient written out, and, on their BPTT path, the
vanilla cells without a normalization, with layer norm, or with batch norm where its fused loops run (compiled
module, float32, one thread, B > 1), the plain GRU, and the GRU and the LSTM under layer or batch norm (whose
shift of N_x, a sum of biases, passes its gradient to each). Everything else — the plain LSTM (torch's fused
kernel), the vanilla cells' batch norm on its plain-torch path, a read-out at every step, the reference path, a
parameter that already holds a gradient — is left to autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnn_gradients.engine import bptt, extension, fused_batch_norm
from rnn_gradients.engine.cells import VANILLA_CELLS
from rnn_gradients.engine.model import SequenceModel
from rnn_gradients.engine.tasks import Task

COVERED = (
    *((cell, norm) for cell in VANILLA_CELLS for norm in ("none", "layer", "batch")),
    ("gru", "none"),
    *((cell, norm) for cell in ("gru", "lstm") for norm in ("layer", "batch")),
)
"""The (cell, norm) pairs whose step this module computes (on their BPTT path, read out at the last step; batch
norm where its fused loops run, :func:`~rnn_gradients.engine.fused_batch_norm.applies`)."""

Gradients = list[tuple[nn.Parameter, Tensor]]
"""(parameter, its gradient) pairs, in the order they are assigned."""


class _Context:
    """What the engine's autograd Functions use of ``ctx``, for calling their ``forward`` and ``backward``
    directly: ``save_for_backward``, ``saved_tensors``, ``needs_input_grad`` and plain attributes."""

    def __init__(self, *needs_input_grad: bool) -> None:
        self.needs_input_grad = needs_input_grad
        self.saved_tensors: tuple[Tensor, ...] = ()

    def save_for_backward(self, *tensors: Tensor) -> None:
        self.saved_tensors = tensors


def covers(model: SequenceModel, task: Task, x: Tensor) -> bool:
    """Whether :func:`loss_and_gradients` computes this step (else autograd does)."""
    layer = model.recurrent
    return (
        torch.is_grad_enabled()
        and model.readout == "last"
        and task.readout == "last"
        and layer.path == "bptt"
        and (layer.cell_type, layer.norm_kind) in COVERED
        and (layer.norm_kind != "batch" or fused_batch_norm.applies(extension.kernels(), x))
        and not x.requires_grad
        and all(p.requires_grad and p.grad is None for p in model.parameters())
    )


def loss_and_gradients(model: SequenceModel, task: Task, x: Tensor, y: Tensor) -> Tensor | None:
    """The loss of ``model`` on (x, y), every parameter's ``.grad`` set as ``loss.backward()`` would set it from
    None; or None, with nothing touched, where :func:`covers` says no or the task leaves its gradient to autograd.

    The loss comes back detached (``.item()`` reads it as before)."""
    if not covers(model, task, x):
        return None
    layer, head = model.recurrent, model.head
    layer._check_input(x)
    with torch.no_grad():
        h, backward = _recurrence(model, x)
        output = F.linear(h, head.weight, head.bias)
        written = task.loss_and_gradient(output, y)
        if written is None:
            return None
        loss, grad_output = written
        grads = backward(grad_output.mm(head.weight))
        grads.append((head.weight, grad_output.t().mm(h)))
        grads.append((head.bias, grad_output.sum(0)))
    _assign(grads)
    return loss


def _recurrence(model: SequenceModel, x: Tensor) -> tuple[Tensor, Callable[[Tensor], Gradients]]:
    """h_T of the model's recurrent layer, as ``RecurrentLayer.last_state`` computes it on the BPTT path, and the
    function from ∂L/∂h_T to the layer's (parameter, gradient) pairs."""
    layer = model.recurrent
    cell, kind, kernels = layer.cell, layer.cell_type, extension.kernels()
    xt = x.transpose(0, 1)
    x_flat = xt.reshape(-1, xt.shape[-1])  # as bptt.project flattens it
    steps, batch = xt.shape[:2]
    projection = _Context(False, True, True)
    recurrence = _Context()

    def project(bias: Tensor | None) -> Tensor:
        u = bptt.InputProjection.forward(projection, x_flat, cell.weight_ih, bias)
        return u.view(steps, batch, u.shape[-1])

    def project_backward(grad_u: Tensor) -> tuple[Tensor, Tensor | None]:
        _, grad_w_ih, grad_bias, *_ = bptt.InputProjection.backward(projection, grad_u.reshape(-1, grad_u.shape[-1]))
        return grad_w_ih, grad_bias

    if kind == "lstm" or (kind == "gru" and layer.norm_kind != "none"):
        layer.check_norm_lengths(steps)
        u = project(None)  # v_t = W_ih x_t: N_x's shift holds the input bias
        function, arguments, shift_terms = layer.gated_norm_recurrence()
        h = function.forward(recurrence, u, *arguments, True, True, kernels)

        def gated_norm_backward(grad_h: Tensor) -> Gradients:
            grad_v, *grads = function.backward(recurrence, grad_h)
            pairs = [(cell.weight_ih, project_backward(grad_v)[0])]
            for argument, grad in zip(arguments, grads, strict=False):
                if isinstance(argument, nn.Parameter):
                    pairs.append((argument, grad))
                elif isinstance(argument, Tensor):  # N_x's shift, a sum of parameters
                    pairs.extend((term, grad) for term in shift_terms)
            return pairs

        return h, gated_norm_backward
    if kind == "gru":
        u = project(cell.bias_ih)
        h = bptt.GRURecurrence.forward(recurrence, u, cell.weight_hh, cell.bias_hh, True, kernels)

        def gru_backward(grad_h: Tensor) -> Gradients:
            grad_u, grad_w_hh, grad_b_hh, *_ = bptt.GRURecurrence.backward(recurrence, grad_h)
            grad_w_ih, grad_b_ih = project_backward(grad_u)
            return [(cell.weight_ih, grad_w_ih), (cell.weight_hh, grad_w_hh), (cell.bias_ih, grad_b_ih),
                    (cell.bias_hh, grad_b_hh)]  # fmt: skip

        return h, gru_backward
    if layer.norm_kind == "batch":
        return _fused_batch_norm(model, x, kernels)
    if layer.norm_kind == "layer":
        ln = layer.norm.summed
        assert ln is not None
        u = project(None)
        beta = ln.bias + cell._input_bias()  # as RecurrentLayer._bptt
        h = bptt.VanillaLayerNormRecurrence.forward(
            recurrence, u, cell.weight_hh, ln.weight, beta, kind, ln.eps, True, kernels
        )

        def layer_norm_backward(grad_h: Tensor) -> Gradients:
            grad_u, grad_w_hh, grad_gain, grad_beta, *_ = bptt.VanillaLayerNormRecurrence.backward(recurrence, grad_h)
            grad_w_ih, _ = project_backward(grad_u)
            return [(cell.weight_ih, grad_w_ih), (cell.weight_hh, grad_w_hh), (ln.weight, grad_gain),
                    (ln.bias, grad_beta), (cell.bias_ih, grad_beta), (cell.bias_hh, grad_beta)]  # fmt: skip

        return h, layer_norm_backward
    # As RecurrentLayer._bptt, but s·u (s = 2 for tanh) goes straight into the state buffer, exactly.
    hidden = cell.weight_hh.shape[0]
    hs = bptt.states_buffer(x, steps, batch, hidden)
    scale = bptt.input_scale(kind)
    bptt.InputProjection.forward(projection, x_flat, cell.weight_ih, cell._input_bias(), scale, hs[1:].view(-1, hidden))
    h = bptt.VanillaRecurrence.run(recurrence, hs, cell.weight_hh, kind, True, kernels)

    def vanilla_backward(grad_h: Tensor) -> Gradients:
        grad_u, grad_w_hh, *_ = bptt.VanillaRecurrence.backward(recurrence, grad_h)
        grad_w_ih, grad_bias = project_backward(grad_u)
        assert grad_bias is not None
        return [(cell.weight_ih, grad_w_ih), (cell.weight_hh, grad_w_hh), (cell.bias_ih, grad_bias),
                (cell.bias_hh, grad_bias)]  # fmt: skip

    return h, vanilla_backward


def _fused_batch_norm(
    model: SequenceModel, x: Tensor, kernels: ModuleType | None
) -> tuple[Tensor, Callable[[Tensor], Gradients]]:
    """h_T and its backward for a vanilla cell under batch norm on both parts, as ``RecurrentLayer._bptt`` calls
    :class:`~rnn_gradients.engine.fused_batch_norm.FusedVanillaBatchNorm` (with the same length check first). Its
    input projections are batch-major (B, T, H), where the other paths' are time-major."""
    layer = model.recurrent
    cell, norms = layer.cell, layer.norm
    steps = x.shape[1]
    layer.check_norm_lengths(steps)
    projection, recurrence = _Context(False, True, True), _Context()
    x_flat = x.reshape(-1, x.shape[-1])  # batch-major, as bptt.project(x, ...) flattens it there
    v = bptt.InputProjection.forward(projection, x_flat, cell.weight_ih, None).view(*x.shape[:2], -1)
    h = fused_batch_norm.FusedVanillaBatchNorm.forward(
        recurrence, v, *layer.fused_batch_norm_arguments(v), True, kernels
    )

    def batch_norm_backward(grad_h: Tensor) -> Gradients:
        grad_v, grad_in_gain, grad_u, grad_w_hh, grad_gain, *_ = fused_batch_norm.FusedVanillaBatchNorm.backward(
            recurrence, grad_h
        )
        _, grad_w_ih, *_ = bptt.InputProjection.backward(projection, grad_v.reshape(-1, grad_v.shape[-1]))
        grad_in_gain = grad_in_gain.view(steps, -1).sum([0])  # repeat's backward
        grad_bias = grad_u.sum([0, 1], keepdim=True).view(grad_u.shape[-1])  # expand's backward (at::sum_to)
        pairs = [(cell.weight_ih, grad_w_ih), (cell.weight_hh, grad_w_hh), (norms.input.weight, grad_in_gain),
                 (norms.hidden.weight, grad_gain)]  # fmt: skip
        return pairs + [(term, grad_bias) for term in cell._input_bias_terms()]

    return h, batch_norm_backward


def _assign(grads: Gradients) -> None:
    """Set each parameter's ``.grad``; a tensor that is several parameters' gradient (a sum of biases) is copied
    for all but the first, so that an in-place clipping of one does not scale another."""
    seen: set[int] = set()
    for param, grad in grads:
        param.grad = grad.clone() if id(grad) in seen else grad
        seen.add(id(grad))

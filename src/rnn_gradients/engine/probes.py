"""Gradient probes: how the loss gradient flows back through time, measured on a fixed probe batch.

Backpropagation through time writes the gradient with respect to an early hidden state as a product of step
Jacobians (Pascanu, Mikolov & Bengio 2013):

    ∂L/∂h_k = ∂L/∂h_t · ∏_{i=k+1..t} J_i,   J_i = ∂h_i/∂h_{i−1} = diag(φ'(a_i)) W_hh   (vanilla cells).

With |φ'| ≤ γ (γ = 1 for tanh and ReLU, 1/4 for the logistic sigmoid) and σ_max the largest singular value of
W_hh, ‖J_i‖ ≤ γ σ_max, so ‖∂L/∂h_k‖ ≤ (γ σ_max)^{t−k} ‖∂L/∂h_t‖: the gradient vanishes geometrically when
γ σ_max < 1, and can only explode when σ_max > 1/γ. A probe records, at one training step:

- ``grad_norm_h[t]``: the *total* derivative ‖∂ℓ/∂h_t‖ for t = 1..L (every path through time, not only the direct
  read-out path), as the mean over probe sequences of the per-sequence norm (ℓ the per-sequence loss);
- ``spectral_radius`` ρ, ``sigma_max`` ‖·‖₂ and ``sigma_rms`` = ‖·‖_F / √H (the root-mean-square singular
  value) of the recurrent block on the candidate path
  (:func:`rnn_gradients.engine.initialization.candidate_block`: W_hh for vanilla cells);
- ``rms_dphi`` = √(mean φ'(a_t)²) over the batch, units and steps (vanilla cells only).

Two predictions of the decay per step follow (:mod:`rnn_gradients.study.analysis`): Pascanu's bound
ln(γ σ_max), with γ = sup |φ'|, which the measured decay cannot exceed, and the mean-field estimate
ln(σ_rms · rms φ') of signal-propagation theory (Pennington, Schoenholz & Ganguli 2017; Chen, Pennington &
Schoenholz 2018): for a gradient g and a random W_hh, E‖g diag(φ') W_hh‖² ≈ ‖g‖² · mean φ'² · ‖W_hh‖²_F / H,
so a typical gradient shrinks by σ_rms · rms φ' per step, while σ_max is the gain of the single worst direction.

A probe leaves the training state untouched: it uses ``torch.autograd.grad`` (parameter ``.grad`` is not
written) and restores the model's buffers (batch-norm running statistics) afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rnn_gradients.engine.cells import DERIVATIVE_FROM_STATE
from rnn_gradients.engine.initialization import candidate_block
from rnn_gradients.engine.model import SequenceModel
from rnn_gradients.engine.tasks import Task


@dataclass(frozen=True)
class ProbeResult:
    """One probe: the gradient profile over time and the quantities its decay is predicted from."""

    step: int
    loss: float
    grad_norm_h: np.ndarray
    spectral_radius: float
    sigma_max: float
    sigma_rms: float
    rms_dphi: float


def recurrent_matrix_norms(model: SequenceModel) -> tuple[float, float, float]:
    """(ρ, σ_max, σ_rms = ‖·‖_F/√H) of the candidate-path recurrent block."""
    block = candidate_block(model.recurrent.cell).detach().double().cpu()
    spectral_radius = torch.linalg.eigvals(block).abs().max().item()
    sigma_max = torch.linalg.matrix_norm(block, ord=2).item()
    sigma_rms = (torch.linalg.matrix_norm(block) / math.sqrt(block.shape[1])).item()
    return spectral_radius, sigma_max, sigma_rms


def gradient_profile(
    model: SequenceModel, task: Task, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, np.ndarray, list[torch.Tensor]]:
    """Loss, ‖∂ℓ/∂h_t‖ for t = 1..L (mean over sequences) and the hidden states of one unrolled pass.

    The batch-mean loss is scaled by the batch size so that row b of ∂(B·L)/∂h_t is the gradient of sequence
    b's own loss (sequences do not interact, except through batch-norm statistics).
    """
    output, states = model.forward_with_states(x)
    loss = task.loss(output, y)
    grads = torch.autograd.grad(loss * x.shape[0], states, allow_unused=True)
    # In float64: the squares inside a float32 norm underflow (and are flushed to zero) once the gradient's
    # entries fall below ~1e-19, long before the gradient itself does.
    norms = [
        torch.zeros((), dtype=torch.float64) if g is None else g.detach().double().norm(dim=-1).mean().cpu()
        for g in grads
    ]
    return loss.item(), torch.stack(norms).numpy(), states


def probe(model: SequenceModel, task: Task, x: torch.Tensor, y: torch.Tensor, step: int) -> ProbeResult:
    """Measure the gradient profile and Pascanu's quantities without changing the model's training state."""
    saved_buffers = {name: buf.clone() for name, buf in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        loss, grad_norm_h, states = gradient_profile(model, task, x, y)
        derivative = DERIVATIVE_FROM_STATE.get(model.recurrent.cell_type)
        rms_dphi = math.nan
        if derivative is not None:
            with torch.no_grad():
                rms_dphi = torch.stack([derivative(h.double()).square().mean() for h in states]).mean().sqrt().item()
    finally:
        with torch.no_grad():
            for name, buf in model.named_buffers():
                buf.copy_(saved_buffers[name])
        model.train(was_training)
    spectral_radius, sigma_max, sigma_rms = recurrent_matrix_norms(model)
    return ProbeResult(step, loss, grad_norm_h, spectral_radius, sigma_max, sigma_rms, rms_dphi)

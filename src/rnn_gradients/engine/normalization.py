"""Layer normalization and recurrent batch normalization inside a recurrent cell.

Both normalize pre-activations; they differ in the axis of the statistics and in where they sit.

Layer normalization (Ba, Kiros & Hinton 2016, "Layer Normalization", arXiv:1607.06450): statistics over the F
features of each example, LN(z) = g ⊙ (z − μ(z)) / sqrt(σ²(z) + ε) + b with g = 1, b = 0 at init, one (g, b)
shared over time. Placement (their §3.1 and LN-LSTM equations):

    vanilla:  h_t = φ(LN(W_hh h_{t−1} + W_ih x_t) + b)
    LSTM:     (i, f, g, o) = LN_h(W_hh h_{t−1}) + LN_x(W_ih x_t) + b,   h_t = σ(o) ⊙ tanh(LN_c(c_t))
    GRU:      (r, z, n) from LN_x(W_ih x_t) + b_ih and LN_h(W_hh h_{t−1}) + b_hh (same places as the LSTM)

LN over the whole stacked gate vector (F = G·H), as in the paper's equations.

Recurrent batch normalization (Cooijmans, Ballas, Laurent, Gülçehre & Courville 2016, "Recurrent Batch
Normalization", arXiv:1603.09025): statistics over the batch, kept separately for every time step t,
BN_t(z) = γ ⊙ (z − E_t[z]) / sqrt(Var_t[z] + ε) + β, with γ = 0.1 at init (γ = 1 saturates tanh and makes
gradients vanish) and γ, β shared over time. Placement:

    vanilla:  h_t = φ(BN_h(W_hh h_{t−1}) + BN_x(W_ih x_t) + b)
    LSTM:     (i, f, g, o) = BN_h(W_hh h_{t−1}) + BN_x(W_ih x_t) + b,   h_t = σ(o) ⊙ tanh(BN_c(c_t))
    GRU:      as LN-GRU, with BN in place of LN

BN_h and BN_x have no shift β: Cooijmans et al. set it to zero because the cell bias b already plays that role.
In training mode each step normalizes with its own batch statistics and updates its own running estimates
(running mean and unbiased variance, exponential average with momentum 0.1, as torch.nn.BatchNorm1d); in eval
mode step t uses the population statistics of step t, and steps t ≥ max_len those of the last step.

The running estimates lag the weights: they average batches seen under many earlier weights. Evaluation therefore
uses :func:`population_statistics`, which estimates each step's statistics afresh on training data for the
weights being evaluated, as Cooijmans et al. evaluate ("population statistics estimated over the training set").

Everywhere b = b_ih + b_hh are the cell's own biases, added after the normalization, so that the parameter names
and the meaning of gate biases (forget-gate bias, chrono initialization) do not change with the normalization.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("none", "layer", "batch")
FAMILIES = ("vanilla", "lstm", "gru")
_GATES = {"vanilla": 1, "lstm": 4, "gru": 3}

LAYER_NORM_GAIN = 1.0
BATCH_NORM_GAIN = 0.1


def validate_norm(name: str) -> str:
    """Return ``name`` if it is one of NORMS, else raise a ValueError naming it and the valid ones."""
    if name not in NORMS:
        raise ValueError(f"unknown normalization {name!r}; valid normalizations: {', '.join(NORMS)}")
    return name


class LayerNorm(nn.LayerNorm):
    """Layer normalization over the last dimension (Ba et al. 2016); gain 1, bias 0, shared over time."""

    def __init__(self, features: int) -> None:
        super().__init__(features)

    def step(self, z: Tensor, t: int) -> Tensor:
        """Normalize one step's (B, F) pre-activations; per-example statistics do not depend on t."""
        return self(z)

    def sequence(self, z: Tensor) -> Tensor:
        """Normalize (B, L, F) pre-activations of all steps at once."""
        return self(z)


class StepwiseBatchNorm(nn.Module):
    """Batch normalization with statistics per time step (Cooijmans et al. 2016).

    Parameters: ``weight`` γ (F,), initialized to 0.1, and, with ``shift``, ``bias`` β (F,), initialized to 0,
    both shared over time. Buffers: ``running_mean`` and ``running_var`` of shape (max_len, F), one row per step.
    """

    def __init__(self, features: int, max_len: int, *, shift: bool, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.features = features
        self.max_len = max_len
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(features))
        self.bias = nn.Parameter(torch.empty(features)) if shift else None
        self.register_buffer("running_mean", torch.empty(max_len, features))
        self.register_buffer("running_var", torch.empty(max_len, features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """γ = 0.1, β = 0, running statistics of every step back to mean 0, variance 1."""
        with torch.no_grad():
            self.weight.fill_(BATCH_NORM_GAIN)
            if self.bias is not None:
                self.bias.zero_()
            self.running_mean.zero_()
            self.running_var.fill_(1.0)

    def _check_training_length(self, length: int) -> None:
        if self.training and length > self.max_len:
            raise ValueError(
                f"recurrent batch normalization keeps statistics for max_len={self.max_len} steps, but a training "
                f"sequence has {length} steps; build the layer with max_len >= the training length"
            )

    def step(self, z: Tensor, t: int) -> Tensor:
        """Normalize step t's (B, F) pre-activations with step t's statistics."""
        self._check_training_length(t + 1)
        row = min(t, self.max_len - 1)
        # Row views of the buffers: batch_norm's in-place running update lands in step t's row.
        return F.batch_norm(
            z,
            self.running_mean[row],
            self.running_var[row],
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )

    def sequence(self, z: Tensor) -> Tensor:
        """Normalize (B, L, F) pre-activations of all steps at once, each step with its own statistics.

        The (B, L, F) tensor is viewed as (B, L·F): one batch-norm feature per (step, unit) pair, which is
        exactly per-step statistics; γ and β are repeated L times so they stay shared over time.
        """
        batch, length, features = z.shape
        self._check_training_length(length)
        if self.training:
            mean = self.running_mean[:length].view(-1)
            var = self.running_var[:length].view(-1)
        else:
            rows = torch.arange(length, device=z.device).clamp_(max=self.max_len - 1)
            mean = self.running_mean[rows].reshape(-1)
            var = self.running_var[rows].reshape(-1)
        out = F.batch_norm(
            z.reshape(batch, length * features),
            mean,
            var,
            self.weight.repeat(length),
            None if self.bias is None else self.bias.repeat(length),
            self.training,
            self.momentum,
            self.eps,
        )
        return out.view(batch, length, features)

    def extra_repr(self) -> str:
        return f"{self.features}, max_len={self.max_len}, shift={self.bias is not None}"


Normalizer = LayerNorm | StepwiseBatchNorm


class CellNorms(nn.Module):
    """The normalizations of one recurrent cell, each ``None`` where the scheme puts none.

    Attributes (see the module docstring for the equations):
        input:      on W_ih x_t, all steps at once (gated cells, and vanilla cells under batch norm)
        hidden:     on W_hh h_{t−1}, per step (same cases)
        summed:     on W_hh h_{t−1} + W_ih x_t (vanilla cells under layer norm)
        cell_state: on c_t before the output tanh (LSTM)
    """

    def __init__(self, kind: str, family: str, hidden_size: int, max_len: int = 1) -> None:
        super().__init__()
        validate_norm(kind)
        if family not in FAMILIES:
            raise ValueError(f"unknown cell family {family!r}; valid families: {', '.join(FAMILIES)}")
        self.kind = kind
        gate_features = _GATES[family] * hidden_size
        self.input: Normalizer | None = None
        self.hidden: Normalizer | None = None
        self.summed: Normalizer | None = None
        self.cell_state: Normalizer | None = None
        if kind == "layer" and family == "vanilla":
            self.summed = LayerNorm(hidden_size)
        elif kind == "layer":
            self.input = LayerNorm(gate_features)
            self.hidden = LayerNorm(gate_features)
        elif kind == "batch":
            self.input = StepwiseBatchNorm(gate_features, max_len, shift=False)
            self.hidden = StepwiseBatchNorm(gate_features, max_len, shift=False)
        if family == "lstm" and kind == "layer":
            self.cell_state = LayerNorm(hidden_size)
        elif family == "lstm" and kind == "batch":
            self.cell_state = StepwiseBatchNorm(hidden_size, max_len, shift=True)


@contextmanager
def population_statistics(model: nn.Module, x: Tensor, chunk: int = 1024) -> Iterator[None]:
    """Inside the block, every :class:`StepwiseBatchNorm` of ``model`` holds population statistics of ``x``.

    One pass over ``x`` (training data) in chunks of ``chunk`` sequences, in training mode and without gradients,
    with cumulative averages: the k-th chunk enters with weight 1/k, so the estimate is the mean of the chunks'
    per-step means and unbiased variances for the current weights. The training-time running estimates (and the
    model's mode) are restored on exit, so training continues exactly as if nothing had happened. Without batch
    normalization the block does nothing.
    """
    norms = [module for module in model.modules() if isinstance(module, StepwiseBatchNorm)]
    if not norms:
        yield
        return
    saved = [(norm.running_mean.clone(), norm.running_var.clone(), norm.momentum) for norm in norms]
    was_training = model.training
    try:
        model.train()
        with torch.no_grad():
            for k, start in enumerate(range(0, x.shape[0], chunk), start=1):
                for norm in norms:
                    norm.momentum = 1.0 / k
                model(x[start : start + chunk])
        yield
    finally:
        with torch.no_grad():
            for norm, (mean, var, momentum) in zip(norms, saved, strict=True):
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                norm.momentum = momentum
        model.train(was_training)

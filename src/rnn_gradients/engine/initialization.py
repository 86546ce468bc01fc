"""Initializations of the recurrent weights and of the gate biases.

Every draw comes from the ``torch.Generator`` passed in, on the generator's device, and is then copied to the
parameter, so a seed gives the same weights on CPU and CUDA. Functions that act on "the cell" accept the cell
itself or any module holding exactly one (a RecurrentLayer, a SequenceModel).

Schemes for W_hh (``init_recurrent``), applied to each gate's H×H block of W_hh separately:

- ``default``: PyTorch's U(−1/√H, 1/√H), left as it is. With H = 80–128 this gives ρ ≈ 0.6 and ‖W_hh‖₂ ≈ 1.1.
- ``orthogonal``: a Haar-random orthogonal block, so ρ = ‖W‖₂ = 1 (Saxe, McClelland & Ganguli 2013; Henaff,
  Szlam & LeCun 2016). W_ih and the biases keep their default draws.
- ``identity``: IRNN (Le, Jaitly & Hinton 2015): W_hh = I, all biases 0, W_ih ~ N(0, 0.001²). For gated cells
  every gate block gets the identity (there is no canonical gated IRNN; this is the literal extension).
- ``scaled``: a Gaussian block rescaled so that its largest singular value is exactly ``spectral_norm``. Pascanu,
  Mikolov & Bengio (2013) show that σ_max(W_hh) > 1/γ is necessary for exploding gradients (γ = max |φ'|);
  this scheme is used to provoke them on purpose.

Chrono initialization (``init_chrono``; Tallec & Ollivier 2018, "Can recurrent neural networks warp time?"):
gate biases drawn so that the characteristic forgetting times of the units spread over [1, T_max].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnn_gradients.engine.cells import GATED_CELLS, RecurrentCell
from rnn_gradients.engine.normalization import LayerNorm, StepwiseBatchNorm

INIT_SCHEMES = ("default", "orthogonal", "identity", "scaled")
IRNN_INPUT_STD = 0.001


def find_cell(module: nn.Module) -> RecurrentCell:
    """The one RecurrentCell in ``module`` (which may be the cell itself)."""
    cells = [m for m in module.modules() if isinstance(m, RecurrentCell)]
    if len(cells) != 1:
        raise ValueError(f"expected a module holding exactly one recurrent cell, found {len(cells)}")
    return cells[0]


def _standard_normal(rows: int, cols: int, generator: torch.Generator) -> Tensor:
    return torch.randn(rows, cols, generator=generator, dtype=torch.float64, device=generator.device)


def reset_linear(linear: nn.Linear, generator: torch.Generator) -> None:
    """nn.Linear's default init, from ``generator``: weight and bias ~ U(−1/√fan_in, 1/√fan_in)
    (kaiming_uniform with a = √5 reduces to that bound)."""
    bound = 1.0 / math.sqrt(linear.in_features)
    with torch.no_grad():
        for param in (linear.weight, linear.bias):
            if param is not None:
                draw = torch.empty(param.shape, dtype=param.dtype, device=generator.device)
                param.copy_(draw.uniform_(-bound, bound, generator=generator))


def init_default(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw every parameter with PyTorch's defaults, in module order: each recurrent cell's parameters
    ~ U(−1/√H, 1/√H), each nn.Linear's (the read-out head) ~ U(−1/√fan_in, 1/√fan_in); normalization gains
    and shifts and batch-norm running statistics go back to their initial values (no draws)."""
    for sub in module.modules():
        if isinstance(sub, RecurrentCell):
            sub.reset_parameters(generator)
        elif isinstance(sub, nn.Linear):
            reset_linear(sub, generator)
        elif isinstance(sub, LayerNorm | StepwiseBatchNorm):
            sub.reset_parameters()


def _orthogonal_block(size: int, generator: torch.Generator) -> Tensor:
    # QR of a Gaussian matrix with the signs of R's diagonal moved into Q gives the Haar measure (Mezzadri 2007).
    q, r = torch.linalg.qr(_standard_normal(size, size, generator))
    return q * torch.sign(torch.diagonal(r))


def _scaled_block(size: int, spectral_norm: float, generator: torch.Generator) -> Tensor:
    block = _standard_normal(size, size, generator)
    return block * (spectral_norm / torch.linalg.matrix_norm(block, ord=2))


def init_recurrent(
    cell: nn.Module, scheme: str, generator: torch.Generator, spectral_norm: float | None = None
) -> None:
    """Initialize W_hh (and, for ``identity``, W_ih and the biases) by ``scheme`` (see the module docstring).

    ``spectral_norm`` is required and must be > 0 for ``scaled``, and must be None for the other schemes.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown initialization scheme {scheme!r}; valid schemes: {', '.join(INIT_SCHEMES)}")
    if scheme == "scaled":
        if spectral_norm is None or not math.isfinite(spectral_norm) or spectral_norm <= 0:
            raise ValueError(f"scheme 'scaled' needs a finite spectral_norm > 0, got {spectral_norm!r}")
    elif spectral_norm is not None:
        raise ValueError(
            f"spectral_norm is only used by scheme 'scaled'; got spectral_norm={spectral_norm!r} with scheme {scheme!r}"
        )
    target = find_cell(cell)
    size, gates = target.hidden_size, target.gates
    with torch.no_grad():
        if scheme == "orthogonal":
            blocks = [_orthogonal_block(size, generator) for _ in range(gates)]
            target.weight_hh.copy_(torch.cat(blocks))
        elif scheme == "scaled":
            blocks = [_scaled_block(size, spectral_norm, generator) for _ in range(gates)]
            target.weight_hh.copy_(torch.cat(blocks))
        elif scheme == "identity":
            target.weight_hh.copy_(torch.eye(size).repeat(gates, 1))
            noise = _standard_normal(*target.weight_ih.shape, generator) * IRNN_INPUT_STD
            target.weight_ih.copy_(noise)
            target.bias_ih.zero_()
            target.bias_hh.zero_()


def init_chrono(cell: nn.Module, max_len: int, generator: torch.Generator) -> None:
    """Chrono initialization of the gate biases (Tallec & Ollivier 2018), T_max = ``max_len``.

    LSTM: b_f ~ log(U[1, T_max − 1]) and b_i = −b_f, so that unit j forgets on a time scale ≈ exp(b_f,j).
    GRU: in torch's convention h_t = (1 − z) ⊙ n + z ⊙ h_{t−1} the update gate z keeps the old state, so it
    plays the forget gate's role: b_z ~ log(U[1, T_max − 1]).
    The values go into ``bias_ih``; the same slices of ``bias_hh`` are zeroed so the total bias is as drawn.
    Vanilla cells have no gates: ValueError.
    """
    target = find_cell(cell)
    if target.kind not in GATED_CELLS:
        raise ValueError(
            f"chrono initialization needs a gated cell; got {target.kind!r}, valid cells: {', '.join(GATED_CELLS)}"
        )
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 2:
        raise ValueError(f"chrono initialization needs max_len >= 2, got {max_len!r}")
    size = target.hidden_size
    draw = torch.empty(size, dtype=torch.float64, device=generator.device)
    keep_bias = draw.uniform_(1.0, float(max_len - 1), generator=generator).log()
    keep = slice(size, 2 * size)  # LSTM: f in (i, f, g, o); GRU: z in (r, z, n)
    with torch.no_grad():
        target.bias_ih[keep] = keep_bias
        target.bias_hh[keep] = 0.0
        if target.kind == "lstm":
            target.bias_ih[:size] = -keep_bias
            target.bias_hh[:size] = 0.0


def recurrent_blocks(cell: nn.Module) -> list[Tensor]:
    """The G blocks (H, H) of W_hh, one per gate in torch's gate order (detached views, no copy)."""
    target = find_cell(cell)
    return list(target.weight_hh.detach().split(target.hidden_size))


def candidate_block(cell: nn.Module) -> Tensor:
    """The block of W_hh on the candidate path: W_hh (vanilla), W_hg (LSTM, the g block), W_hn (GRU, the n block).

    It multiplies h_{t−1} inside the tanh/φ of the new content, so its ρ and ‖·‖₂ are the ones Pascanu's bound
    speaks of for vanilla cells.
    """
    target = find_cell(cell)
    return recurrent_blocks(target)[target.candidate_gate]

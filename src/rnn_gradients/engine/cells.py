"""Hand-written recurrent cells and the recurrent layer that runs them over a sequence.

Every cell keeps PyTorch's parameter names and layouts, so that fused torch kernels can run on its weights and
tables speak PyTorch's language (G gates stacked along the first dimension):

    weight_ih (G·H, I),  weight_hh (G·H, H),  bias_ih (G·H),  bias_hh (G·H)

Vanilla cells, G = 1 (Elman 1990; φ = tanh, ReLU, or the logistic sigmoid σ):

    h_t = φ(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)

LSTM, G = 4 with gates stacked (i, f, g, o) as in torch.nn.LSTMCell (Hochreiter & Schmidhuber 1997, with the
forget gate of Gers, Schmidhuber & Cummins 2000):

    (i, f, g, o) = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
    c_t = σ(f) ⊙ c_{t−1} + σ(i) ⊙ tanh(g),   h_t = σ(o) ⊙ tanh(c_t)

GRU, G = 3 with gates stacked (r, z, n) as in torch.nn.GRUCell (Cho et al. 2014):

    r = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr),   z = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
    n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t−1} + b_hn)),   h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

A cell splits its work in two: ``project_inputs`` computes the input part of every step with one matmul (it does
not depend on the state), ``step`` the recurrent part of one step. ``RecurrentLayer`` runs the whole sequence
as one hand-written BPTT node (:mod:`rnn_gradients.engine.bptt`), hands it to the fused torch kernel, or unrolls
``step`` in Python; all give the same result to rounding.
Where normalization goes is described in :mod:`rnn_gradients.engine.normalization`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn

from rnn_gradients.engine import bptt, extension, fused_batch_norm, gru_norm_bptt, lstm_norm_bptt
from rnn_gradients.engine.normalization import CellNorms, LayerNorm, StepwiseBatchNorm, validate_norm

CELLS = ("rnn_tanh", "rnn_sigmoid", "rnn_relu", "lstm", "gru")
GATED_CELLS = ("lstm", "gru")
VANILLA_CELLS = ("rnn_tanh", "rnn_sigmoid", "rnn_relu")
FUSED_CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
BPTT_PATHS = (
    *((cell, norm) for cell in VANILLA_CELLS for norm in ("none", "layer", "batch")),
    ("lstm", "layer"),
    ("lstm", "batch"),
    ("gru", "none"),
    ("gru", "layer"),
    ("gru", "batch"),
)
"""(cell, norm) pairs that ``RecurrentLayer.forward`` runs by hand-written BPTT (:mod:`rnn_gradients.engine.bptt`,
:mod:`rnn_gradients.engine.gru_norm_bptt`, :mod:`rnn_gradients.engine.lstm_norm_bptt`); the plain LSTM keeps torch's
fused kernel (oneDNN's: faster here than a hand-written one)."""
PATHS = ("bptt", "fused", "unrolled")

State = Tensor | tuple[Tensor, Tensor]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "rnn_tanh": torch.tanh,
    "rnn_sigmoid": torch.sigmoid,
    "rnn_relu": torch.relu,
}
DERIVATIVE_BOUND: dict[str, float] = {"rnn_tanh": 1.0, "rnn_sigmoid": 0.25, "rnn_relu": 1.0}
"""γ = sup |φ'(a)| of each vanilla cell's activation: the constant of Pascanu's bound ‖J_t‖ ≤ γ σ_max(W_hh)."""
DERIVATIVE_FROM_STATE: dict[str, Callable[[Tensor], Tensor]] = {
    "rnn_tanh": lambda h: 1.0 - h * h,
    "rnn_sigmoid": lambda h: h * (1.0 - h),
    "rnn_relu": lambda h: (h > 0).to(h.dtype),
}
"""φ'(a_t) of each vanilla cell, computed from its output h_t = φ(a_t)."""
# The kernels behind torch.nn.RNN/LSTM/GRU; they take the flat weight list [w_ih, w_hh, b_ih, b_hh]. torch._VF is
# private, but it is exactly what torch.nn.RNN/LSTM/GRU.forward call, and it lets the hand-written cells share
# their parameters with the fused kernels without copying; tests/test_cells.py checks that every kernel still
# matches torch.nn's modules on the same weights, so a change in this private API fails the tests, not the study.
_FUSED_KERNELS = {"rnn_tanh": _VF.rnn_tanh, "rnn_relu": _VF.rnn_relu, "lstm": _VF.lstm, "gru": _VF.gru}


def validate_cell(name: str) -> str:
    """Return ``name`` if it is one of CELLS, else raise a ValueError naming it and the valid ones."""
    if name not in CELLS:
        raise ValueError(f"unknown cell {name!r}; valid cells: {', '.join(CELLS)}")
    return name


def default_generator() -> torch.Generator:
    """The generator used when a constructor is given none: seeded, so construction never touches global RNG."""
    return torch.Generator().manual_seed(0)


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class RecurrentCell(nn.Module, ABC):
    """Base of the hand-written cells: parameters, default init and the one-step forward.

    Subclasses set ``family`` ("vanilla", "lstm", "gru"), ``gates`` G and ``candidate_gate`` (the index of the
    gate block of W_hh on the candidate path: the one that multiplies h_{t−1} inside tanh/φ).
    """

    family: ClassVar[str]
    gates: ClassVar[int]
    candidate_gate: ClassVar[int]
    kind: str

    def __init__(self, input_size: int, hidden_size: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        _check_size("input_size", input_size)
        _check_size("hidden_size", hidden_size)
        self.input_size = input_size
        self.hidden_size = hidden_size
        features = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(features, input_size))
        self.weight_hh = nn.Parameter(torch.empty(features, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(features))
        self.bias_hh = nn.Parameter(torch.empty(features))
        self.reset_parameters(default_generator() if generator is None else generator)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """PyTorch's default: every parameter ~ U(−1/√H, 1/√H), drawn in the order weight_ih, weight_hh,
        bias_ih, bias_hh (draws happen on the generator's device, so CPU and CUDA models get the same values)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for param in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
                draw = torch.empty(param.shape, dtype=param.dtype, device=generator.device)
                param.copy_(draw.uniform_(-bound, bound, generator=generator))

    def initial_state(self, batch: int, like: Tensor) -> State:
        """The zero state h_0 (and c_0 for the LSTM), with ``like``'s dtype and device."""
        return like.new_zeros(batch, self.hidden_size)

    def hidden(self, state: State) -> Tensor:
        """The hidden state h_t of a cell state."""
        return state

    def _input_bias(self) -> Tensor:
        """The bias folded into the input part: b_ih + b_hh where b_hh only ever enters through that sum."""
        return self.bias_ih + self.bias_hh

    def _input_bias_terms(self) -> tuple[nn.Parameter, ...]:
        """The parameters ``_input_bias`` sums; each receives its gradient."""
        return (self.bias_ih, self.bias_hh)

    def project_inputs(self, x: Tensor, norms: CellNorms | None = None) -> Tensor:
        """The input part of every step at once, (B, L, I) -> (B, L, G·H): one matmul for the whole sequence.

        Without normalization this is W_ih x_t + bias (see ``_input_bias``); with an input normalization
        N_x(W_ih x_t) + bias; under vanilla layer norm the bare W_ih x_t, since the bias comes after the LN.
        """
        if norms is not None and norms.summed is not None:
            return F.linear(x, self.weight_ih)
        if norms is not None and norms.input is not None:
            return norms.input.sequence(F.linear(x, self.weight_ih)) + self._input_bias()
        return F.linear(x, self.weight_ih, self._input_bias())

    @abstractmethod
    def step(self, u: Tensor, state: State, norms: CellNorms | None, t: int) -> State:
        """One recurrent step from ``u`` = step t's slice of ``project_inputs`` and the previous state."""

    def forward(self, x: Tensor, state: State | None = None) -> State:
        """One step on (B, I) inputs, as torch.nn.RNNCell/LSTMCell/GRUCell(x, state); zero state if None."""
        if state is None:
            state = self.initial_state(x.shape[0], x)
        return self.step(self.project_inputs(x.unsqueeze(1))[:, 0], state, None, 0)

    def extra_repr(self) -> str:
        return f"{self.kind}, {self.input_size}, {self.hidden_size}"


class VanillaCell(RecurrentCell):
    """h_t = φ(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh) with φ = tanh, ReLU (Le et al. 2015) or the logistic
    sigmoid (``rnn_sigmoid``, no torch counterpart); |φ'| ≤ 1, 1, 1/4 respectively (Pascanu et al. 2013)."""

    family = "vanilla"
    gates = 1
    candidate_gate = 0

    def __init__(
        self, kind: str, input_size: int, hidden_size: int, *, generator: torch.Generator | None = None
    ) -> None:
        if kind not in VANILLA_CELLS:
            raise ValueError(f"unknown vanilla cell {kind!r}; valid vanilla cells: {', '.join(VANILLA_CELLS)}")
        super().__init__(input_size, hidden_size, generator=generator)
        self.kind = kind
        self.activation = _ACTIVATIONS[kind]

    def step(self, u: Tensor, state: Tensor, norms: CellNorms | None, t: int) -> Tensor:
        if norms is not None and norms.summed is not None:
            summed = torch.addmm(u, state, self.weight_hh.t())
            return self.activation(norms.summed.step(summed, t) + self._input_bias())
        if norms is not None and norms.hidden is not None:
            return self.activation(u + norms.hidden.step(state @ self.weight_hh.t(), t))
        return self.activation(torch.addmm(u, state, self.weight_hh.t()))


class LSTMCell(RecurrentCell):
    """LSTM cell, gates (i, f, g, o) as torch.nn.LSTMCell; the state is the pair (h_t, c_t)."""

    kind = "lstm"
    family = "lstm"
    gates = 4
    candidate_gate = 2
    forget_bias = 1.0

    def reset_parameters(self, generator: torch.Generator) -> None:
        """PyTorch's default U(−1/√H, 1/√H), then the forget-gate bias b_f = 1 (in bias_ih; zero in bias_hh).

        A forget bias of 1 is the common LSTM default (Gers, Schmidhuber & Cummins 2000; Jozefowicz, Zaremba &
        Sutskever 2015): the cell state is kept, not halved, at every step at initialization. Without it the
        LSTM failed temporal order at T = 50 in the study's tuning runs, at odds with the literature.
        """
        super().reset_parameters(generator)
        forget = slice(self.hidden_size, 2 * self.hidden_size)
        with torch.no_grad():
            self.bias_ih[forget] = self.forget_bias
            self.bias_hh[forget] = 0.0

    def initial_state(self, batch: int, like: Tensor) -> tuple[Tensor, Tensor]:
        zeros = like.new_zeros(batch, self.hidden_size)
        return zeros, zeros

    def hidden(self, state: tuple[Tensor, Tensor]) -> Tensor:
        return state[0]

    def step(self, u: Tensor, state: tuple[Tensor, Tensor], norms: CellNorms | None, t: int) -> tuple[Tensor, Tensor]:
        h, c = state
        if norms is not None and norms.hidden is not None:
            gates = u + norms.hidden.step(h @ self.weight_hh.t(), t)
        else:
            gates = torch.addmm(u, h, self.weight_hh.t())
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        c_out = c if norms is None or norms.cell_state is None else norms.cell_state.step(c, t)
        return torch.sigmoid(o) * torch.tanh(c_out), c


class GRUCell(RecurrentCell):
    """GRU cell, gates (r, z, n) as torch.nn.GRUCell; b_hn stays inside r ⊙ (W_hn h + b_hn)."""

    kind = "gru"
    family = "gru"
    gates = 3
    candidate_gate = 2

    def _input_bias(self) -> Tensor:
        # b_hn is gated by r, so b_hh cannot be folded into the input part.
        return self.bias_ih

    def _input_bias_terms(self) -> tuple[nn.Parameter, ...]:
        return (self.bias_ih,)

    def step(self, u: Tensor, state: Tensor, norms: CellNorms | None, t: int) -> Tensor:
        if norms is not None and norms.hidden is not None:
            gh = norms.hidden.step(state @ self.weight_hh.t(), t) + self.bias_hh
        else:
            gh = F.linear(state, self.weight_hh, self.bias_hh)
        u_r, u_z, u_n = u.chunk(3, 1)
        h_r, h_z, h_n = gh.chunk(3, 1)
        r = torch.sigmoid(u_r + h_r)
        z = torch.sigmoid(u_z + h_z)
        n = torch.tanh(u_n + r * h_n)
        return n + z * (state - n)


def make_cell(
    cell: str, input_size: int, hidden_size: int, *, generator: torch.Generator | None = None
) -> RecurrentCell:
    """The hand-written cell named ``cell`` (one of CELLS), default-initialized from ``generator``."""
    validate_cell(cell)
    if cell == "lstm":
        return LSTMCell(input_size, hidden_size, generator=generator)
    if cell == "gru":
        return GRUCell(input_size, hidden_size, generator=generator)
    return VanillaCell(cell, input_size, hidden_size, generator=generator)


class RecurrentLayer(nn.Module):
    """One recurrent layer over (B, L, I) sequences from the zero state, returning all hidden states (B, L, H).

    Attributes: ``cell`` (the :class:`RecurrentCell`; parameter names ``cell.weight_ih`` ...), ``norm``
    (:class:`~rnn_gradients.normalization.CellNorms`; parameters ``norm.*``), ``cell_type``, ``norm_kind``,
    ``max_len`` (the number of steps recurrent batch normalization keeps statistics for).

    ``forward`` runs by ``path``: hand-written BPTT for the (cell, norm) pairs of ``BPTT_PATHS``, the fused
    torch kernel for the LSTM without normalization (oneDNN: faster than a hand-written one here), the unrolled
    loop where ``reference`` is set (every cell × norm has one of the other two); ``forward_with_states`` always
    unrolls and returns every h_t as a node of the autograd graph, so ``torch.autograd.grad(loss, states)`` gives
    the total derivative ∂L/∂h_t through time (the probes).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        norm: str = "none",
        max_len: int = 1,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        validate_cell(cell)
        validate_norm(norm)
        _check_size("max_len", max_len)
        self.cell_type = cell
        self.norm_kind = norm
        self.max_len = max_len
        self.cell = make_cell(cell, input_size, hidden_size, generator=generator)
        self.norm = CellNorms(norm, self.cell.family, hidden_size, max_len)

    reference: bool = False
    """Set True (on the class or one layer) to run the engine as it was before hand-written BPTT: the fused
    kernel or the unrolled loop. The reference for tests and benchmarks; runs never set it."""

    @property
    def path(self) -> str:
        """How ``forward`` runs: ``bptt`` (one autograd node per sequence, :mod:`~rnn_gradients.engine.bptt`),
        ``fused`` (torch's fused kernel) or ``unrolled`` (the Python loop of ``step``)."""
        if not self.reference and (self.cell_type, self.norm_kind) in BPTT_PATHS:
            return "bptt"
        if self.norm_kind == "none" and self.cell_type in FUSED_CELLS:
            return "fused"
        return "unrolled"

    @property
    def fused(self) -> bool:
        """Whether ``forward`` runs a fused torch kernel."""
        return self.path == "fused"

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[1] < 1 or x.shape[2] != self.cell.input_size:
            raise ValueError(
                f"expected input of shape (batch, length >= 1, {self.cell.input_size}), got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """All hidden states (B, L, H) of the sequence x (B, L, I), by the fastest path (``path``)."""
        path = self.path
        if path == "unrolled":
            return self.forward_with_states(x)[0]
        self._check_input(x)
        if path == "bptt":
            return self._bptt(x, last=False).transpose(0, 1)
        cell = self.cell
        h0 = x.new_zeros(1, x.shape[0], cell.hidden_size)
        weights = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
        kernel = _FUSED_KERNELS[self.cell_type]
        # Arguments: has_biases, num_layers, dropout, train, bidirectional, batch_first.
        flags = (True, 1, 0.0, self.training, False, True)
        if self.cell_type == "lstm":
            return kernel(x, (h0, h0), weights, *flags)[0]
        return kernel(x, h0, weights, *flags)[0]

    def last_state(self, x: Tensor) -> Tensor:
        """h_L (B, H), the last hidden state of x (B, L, I): ``forward(x)[:, -1]`` with the same values, but on the
        bptt path the backward pass starts from ∂L/∂h_L alone (no zeros for the other steps)."""
        if self.path != "bptt":
            return self(x)[:, -1]
        self._check_input(x)
        return self._bptt(x, last=True)

    def _bptt(self, x: Tensor, last: bool) -> Tensor:
        """The states h_1..h_L time-major (L, B, H), or h_L (B, H) when ``last``, by
        :mod:`~rnn_gradients.engine.bptt`.

        The input projections W_ih x_t of every step are computed here over the whole sequence (so their weight's
        gradient is one GEMM over all steps), with the bias or, for the vanilla cells under batch norm on the
        plain-torch path, the input part's normalization by autograd; the gated cells' input normalization and
        the compiled vanilla batch norm's run inside the recurrence, which is one node. Without a graph
        (evaluation) the recurrence of the plain cells runs in place over the input projections.
        """
        cell, norms, kind = self.cell, self.norm, self.cell_type
        xt = x.transpose(0, 1)
        graph = torch.is_grad_enabled() and any(p.requires_grad for p in (x, *self.parameters()))
        if kind == "lstm" or (kind == "gru" and norms.hidden is not None):
            return self._gated_norm_bptt(x, last, keep=graph)
        if kind == "gru":
            u = bptt.project(xt, cell.weight_ih, cell.bias_ih)
            if not graph:
                states = bptt.gru_states_(u, cell.weight_hh, cell.bias_hh)
                return states[-1] if last else states
            return bptt.GRURecurrence.apply(u, cell.weight_hh, cell.bias_hh, last, extension.kernels())
        if isinstance(norms.summed, LayerNorm):
            ln = norms.summed
            u = bptt.project(xt, cell.weight_ih, None)
            beta = ln.bias + cell._input_bias()
            return bptt.VanillaLayerNormRecurrence.apply(
                u, cell.weight_hh, ln.weight, beta, kind, ln.eps, last, extension.kernels()
            )
        if isinstance(norms.hidden, StepwiseBatchNorm):
            bn, bn_x = norms.hidden, norms.input
            self.check_norm_lengths(x.shape[1])
            v = bptt.project(x, cell.weight_ih, None)
            if fused_batch_norm.applies(extension.kernels(), v):
                arguments = self.fused_batch_norm_arguments(v)
                return fused_batch_norm.FusedVanillaBatchNorm.apply(v, *arguments, last, extension.kernels())
            u = (bn_x.sequence(v) + cell._input_bias()).transpose(0, 1)
            return bptt.VanillaBatchNormRecurrence.apply(
                u,
                cell.weight_hh,
                bn.weight,
                bn.running_mean,
                bn.running_var,
                kind,
                bn.training,
                bn.momentum,
                bn.eps,
                last,
                extension.kernels(),
            )
        u = bptt.project(xt, cell.weight_ih, cell._input_bias())
        if not graph:
            states = bptt.vanilla_states_(u, cell.weight_hh, kind, extension.kernels())
            return states[-1] if last else states
        return bptt.VanillaRecurrence.apply(u, cell.weight_hh, kind, last, extension.kernels())

    def _input_projections(self, x: Tensor) -> Tensor:
        """For a gated cell under a normalization: the input projections v_t = W_ih x_t of every step, time-major
        (L, B, G·H), by one GEMM (``bptt.project``). Checks first that batch norm keeps statistics for every step of
        a training sequence."""
        self.check_norm_lengths(x.shape[1])
        return bptt.project(x.transpose(0, 1), self.cell.weight_ih, None)

    def check_norm_lengths(self, length: int) -> None:
        """Raise where a batch norm of this layer (on the input part, the recurrent term or the cell state) keeps
        fewer step statistics than a training sequence of ``length`` steps needs."""
        for module in (self.norm.input, self.norm.hidden, self.norm.cell_state):
            if isinstance(module, StepwiseBatchNorm):
                module._check_training_length(length)

    def gated_norm_recurrence(self) -> tuple[type[torch.autograd.Function], tuple[Any, ...], tuple[Tensor, ...]]:
        """For the GRU or the LSTM under a normalization: its recurrence (``GRUNormRecurrence`` or
        ``LSTMNormRecurrence``), the arguments it takes between v and (``last``, ``keep``, ``kernels``), and the
        parameters summed into N_x's shift (the input bias, ``_input_bias``, plus layer norm's own shift), each of
        which receives the shift's gradient."""
        cell, norms = self.cell, self.norm
        shift, shift_terms = cell._input_bias(), cell._input_bias_terms()
        if norms.input.bias is not None:
            shift, shift_terms = norms.input.bias + shift, (norms.input.bias, *shift_terms)
        if self.cell_type == "gru":
            arguments = (
                cell.weight_hh, cell.bias_hh, norms.input.weight, shift, norms.hidden.weight, norms.hidden.bias,
                norms.input, norms.hidden,
            )  # fmt: skip
            return gru_norm_bptt.GRUNormRecurrence, arguments, shift_terms
        arguments = (
            cell.weight_hh, norms.input.weight, shift, norms.hidden.weight, norms.hidden.bias,
            norms.cell_state.weight, norms.cell_state.bias, norms.input, norms.hidden, norms.cell_state,
        )  # fmt: skip
        return lstm_norm_bptt.LSTMNormRecurrence, arguments, shift_terms

    def fused_batch_norm_arguments(self, v: Tensor) -> tuple[Any, ...]:
        """For a vanilla cell under batch norm on its fused loops: the arguments ``FusedVanillaBatchNorm`` takes
        between the input projections v (B, T, H) and (``last``, ``kernels``): γ_x repeated T times, the input bias
        expanded to (B, T, H), W_hh, γ, both norms' running statistics, the cell, the mode, momenta and epsilons."""
        cell, bn, bn_x = self.cell, self.norm.hidden, self.norm.input
        assert isinstance(bn, StepwiseBatchNorm) and isinstance(bn_x, StepwiseBatchNorm)
        return (
            bn_x.weight.repeat(v.shape[1]), cell._input_bias().expand_as(v), cell.weight_hh, bn.weight,
            (bn_x.running_mean, bn_x.running_var), (bn.running_mean, bn.running_var), self.cell_type, bn.training,
            (bn_x.momentum, bn.momentum), (bn_x.eps, bn.eps),
        )  # fmt: skip

    def _gated_norm_bptt(self, x: Tensor, last: bool, keep: bool) -> Tensor:
        """The GRU or the LSTM under layer or batch norm by :mod:`~rnn_gradients.engine.gru_norm_bptt` or
        :mod:`~rnn_gradients.engine.lstm_norm_bptt`."""
        v = self._input_projections(x)
        recurrence, arguments, _ = self.gated_norm_recurrence()
        return recurrence.apply(v, *arguments, last, keep, extension.kernels())

    def forward_with_states(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(outputs (B, L, H), [h_1, ..., h_L]) by the unrolled loop; ``outputs`` stacks those same tensors."""
        self._check_input(x)
        cell = self.cell
        state = cell.initial_state(x.shape[0], x)
        states: list[Tensor] = []
        # unbind, not x[:, t]: indexing inside the loop makes the backward pass O(L²).
        for t, u in enumerate(cell.project_inputs(x, self.norm).unbind(1)):
            state = cell.step(u, state, self.norm, t)
            states.append(cell.hidden(state))
        return torch.stack(states, 1), states

    def extra_repr(self) -> str:
        return f"norm={self.norm_kind!r}, max_len={self.max_len}"

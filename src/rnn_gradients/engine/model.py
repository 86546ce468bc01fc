"""The sequence model of every run: one recurrent layer and a linear read-out.

h_1..h_L = RecurrentLayer(x_1..x_L),   y = W_o h_L + b_o  (readout "last")   or   y_t = W_o h_t + b_o  ("all")
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnn_gradients.engine.cells import RecurrentLayer, default_generator
from rnn_gradients.engine.initialization import reset_linear

READOUTS = ("last", "all")
PARAMETER_GROUPS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "head", "norm")


def parameter_group(name: str) -> str:
    """The gradient-norm group (one of PARAMETER_GROUPS) of a SequenceModel parameter name.

    ``recurrent.cell.weight_ih`` -> ``weight_ih`` (likewise the other cell parameters), ``recurrent.norm.*`` ->
    ``norm``, ``head.*`` -> ``head``; any other name raises a ValueError.
    """
    parts = name.split(".")
    if parts[0] == "head":
        return "head"
    if parts[:2] == ["recurrent", "norm"]:
        return "norm"
    if len(parts) == 3 and parts[:2] == ["recurrent", "cell"] and parts[2] in PARAMETER_GROUPS[:4]:
        return parts[2]
    raise ValueError(f"parameter {name!r} belongs to none of the groups {', '.join(PARAMETER_GROUPS)}")


class ReadOut(nn.Linear):
    """nn.Linear whose constructor draws nothing (its weights come from ``reset_linear`` and a generator).

    Not ``torch.nn.utils.skip_init``: that builds the module on the meta device, whose first use imports torch's
    reference implementations (``torch._refs``), about 1 s of every training process's setup.
    """

    def reset_parameters(self) -> None:
        """No draws here: nn.Linear's own reset would use the global RNG."""


class SequenceModel(nn.Module):
    """A recurrent layer (``recurrent``) and a linear read-out (``head``: nn.Linear(H, O)).

    ``forward`` gives (B, O) from h_L for readout "last", (B, L, O) from every h_t for readout "all", by the
    layer's fastest path; ``forward_with_states`` gives the same output by the unrolled loop, with the hidden
    states h_1..h_L as graph nodes for the gradient probes. Parameters are drawn from ``generator`` (the cell's,
    then the head's, as :func:`~rnn_gradients.engine.initialization.init_default` does), or from a generator seeded
    with 0 when none is given; construction never uses the global RNG.
    """

    parameter_group = staticmethod(parameter_group)

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        output_size: int,
        readout: str,
        norm: str = "none",
        max_len: int = 1,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; valid readouts: {', '.join(READOUTS)}")
        generator = default_generator() if generator is None else generator
        self.readout = readout
        self.recurrent = RecurrentLayer(cell, input_size, hidden_size, norm, max_len, generator=generator)
        self.head = ReadOut(hidden_size, output_size)
        reset_linear(self.head, generator)

    def _read_out(self, outputs: Tensor) -> Tensor:
        return self.head(outputs[:, -1] if self.readout == "last" else outputs)

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, I) -> (B, O) for readout "last", (B, L, O) for "all"."""
        if self.readout == "last":
            return self.head(self.recurrent.last_state(x))
        return self.head(self.recurrent(x))

    def forward_with_states(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(output as ``forward``, [h_1, ..., h_L]) by the unrolled loop; the output is computed from those h_t."""
        outputs, states = self.recurrent.forward_with_states(x)
        return self._read_out(outputs), states

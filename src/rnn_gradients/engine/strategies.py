"""Mitigation strategies: named, composable bundles of interventions against vanishing and exploding gradients.

A strategy is what a user writes in ``config/config.yaml``, e.g. ``clip_and_ln: {clip_norm: 1.0, norm: layer}``.
Each key is one intervention; an empty bundle (``none: {}``) is the control.

=================  ==========================================================================================
key                intervention
=================  ==========================================================================================
``clip_norm``      rescale the whole gradient when its global norm exceeds c: g ← c·g/‖g‖ (Pascanu et al.
                   2013, Alg. 1). The pre-clip norm is measured and recorded first.
``clip_value``     clamp every gradient element to [−v, v] (Mikolov 2012; Arjovsky et al. 2016 baselines).
``norm``           ``layer``: layer normalization (Ba, Kiros & Hinton 2016); ``batch``: recurrent batch
                   normalization with per-time-step statistics and γ₀ = 0.1 (Cooijmans et al. 2016).
``init``           recurrent-weight initialization: ``default`` (PyTorch's U(±1/√H)), ``orthogonal`` (Saxe et
                   al. 2013), ``identity`` (IRNN, Le, Jaitly & Hinton 2015), ``scaled`` (Gaussian blocks rescaled
                   to ‖W_hh‖₂ = ``spectral_norm``: σ_max > 1/γ is needed to *provoke* exploding gradients).
``spectral_norm``  the target largest singular value for ``init: scaled`` (required there, meaningless elsewhere).
``chrono``         chrono initialization of the gate biases (Tallec & Ollivier 2018); gated cells only.
=================  ==========================================================================================

When both clipping keys are given, the norm is clipped first, then the values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rnn_gradients.engine.cells import GATED_CELLS
from rnn_gradients.engine.initialization import INIT_SCHEMES
from rnn_gradients.engine.normalization import NORMS

STRATEGY_KEYS = ("clip_norm", "clip_value", "norm", "init", "spectral_norm", "chrono")


def _positive(strategy: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"strategy {strategy!r}: {key} must be a positive finite number, got {value!r}")
    return float(value)


def _choice(strategy: str, key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"strategy {strategy!r}: {key} = {value!r} is not allowed; allowed: {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Strategy:
    """One validated bundle of interventions (see the module docstring for the meaning of each field)."""

    name: str
    clip_norm: float | None = None
    clip_value: float | None = None
    norm: str = "none"
    init: str = "default"
    spectral_norm: float | None = None
    chrono: bool = False

    @classmethod
    def from_dict(cls, name: str, params: Mapping[str, Any] | None) -> Strategy:
        """Parse and validate a bundle; errors name the strategy, the key, the bad value and what is allowed."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(STRATEGY_KEYS))
        if unknown:
            raise ValueError(
                f"strategy {name!r}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"allowed keys: {', '.join(STRATEGY_KEYS)}"
            )
        fields: dict[str, Any] = {"name": name}
        for key in ("clip_norm", "clip_value", "spectral_norm"):
            if params.get(key) is not None:
                fields[key] = _positive(name, key, params[key])
        if "norm" in params:
            fields["norm"] = _choice(name, "norm", params["norm"], NORMS)
        if "init" in params:
            fields["init"] = _choice(name, "init", params["init"], INIT_SCHEMES)
        if "chrono" in params:
            if not isinstance(params["chrono"], bool):
                raise ValueError(f"strategy {name!r}: chrono must be true or false, got {params['chrono']!r}")
            fields["chrono"] = params["chrono"]
        strategy = cls(**fields)
        if strategy.init == "scaled" and strategy.spectral_norm is None:
            raise ValueError(f"strategy {name!r}: init 'scaled' needs spectral_norm (the target ‖W_hh‖₂)")
        if strategy.init != "scaled" and strategy.spectral_norm is not None:
            raise ValueError(
                f"strategy {name!r}: spectral_norm only applies with init 'scaled', not init {strategy.init!r}"
            )
        return strategy

    def check_applicable(self, cell: str) -> None:
        """Reject combinations that make no sense; chrono initialization needs gates."""
        if self.chrono and cell not in GATED_CELLS:
            raise ValueError(
                f"strategy {self.name!r} uses chrono initialization, which sets gate biases and cannot apply to "
                f"cell {cell!r}; it applies to: {', '.join(GATED_CELLS)}"
            )

    @property
    def clipped(self) -> bool:
        """Whether the strategy clips the gradient (by norm, by value or both)."""
        return self.clip_norm is not None or self.clip_value is not None

    @property
    def is_control(self) -> bool:
        """No intervention at all: the unmitigated control every remedy is compared with."""
        return not self.params()

    def params(self) -> dict[str, Any]:
        """The bundle as written in a config: only the interventions that differ from the control."""
        control = Strategy(name=self.name)
        return {k: v for k, v in asdict(self).items() if k != "name" and v != getattr(control, k)}

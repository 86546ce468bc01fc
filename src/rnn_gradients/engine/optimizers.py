"""The study's optimizers: Adam, RMSprop and SGD with momentum, bit for bit as ``torch.optim`` computes them.

Why not ``torch.optim`` itself: constructing its first optimizer in a process imports ``torch._dynamo`` (its
methods are wrapped by ``torch._disable_dynamo``, which imports the compiler on first call), 1.4 s on this
project's machine — paid once per training process, about 3.5 % of the default study's job time, for a compiler
the study never uses (``benchmarks/bench_levers.py``, lever 2). The update rules below are the few lines of
``torch.optim``'s single-tensor implementations (its default on the CPU) with the study's settings, the same
in-place kernels in the same order, so a run trains to the same bits either way;
``tests/test_optimizers.py`` checks every step of every rule against ``torch.optim``.

With g the gradient, θ a parameter, t = 1, 2, ... the step count and η the learning rate:

    Adam (Kingma & Ba 2015; β₁ = 0.9, β₂ = 0.999, ε = 1e-8):
        m ← m + (1 − β₁)(g − m),   v ← β₂ v + (1 − β₂) g²,
        θ ← θ − η/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
    RMSprop (Hinton 2012; α = 0.99, ε = 1e-8):
        v ← α v + (1 − α) g²,   θ ← θ − η g / (√v + ε)
    SGD with momentum μ = 0.9 (no dampening):
        b ← g at t = 1, else μ b + g,   θ ← θ − η b

A parameter whose gradient is None is skipped (its state is not created), as ``torch.optim`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch
from torch import Tensor, nn

from rnn_gradients.engine.run_spec import OPTIMIZERS


class Optimizer(Protocol):
    """What the training loop needs of an optimizer (``torch.optim`` optimizers have it too)."""

    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def step(self) -> None: ...


class _Rule:
    """The parameters, their per-parameter state and ``zero_grad``; subclasses define ``_update``."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.lr = float(lr)
        self.state: dict[int, dict[str, Tensor | float]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_()
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(p, p.grad, self.state.setdefault(i, {}))

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor | float]) -> None:
        raise NotImplementedError


class Adam(_Rule):
    """Adam with torch's defaults (β = (0.9, 0.999), ε = 1e-8), as ``torch.optim.Adam(params, lr)``."""

    betas = (0.9, 0.999)
    eps = 1e-8

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor | float]) -> None:
        beta1, beta2 = self.betas
        if not state:
            state["step"] = 0.0
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        # torch counts steps in a float32 tensor and reads it back as a Python float: exact up to 2^24 steps.
        step = state["step"] = float(state["step"]) + 1.0
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        assert isinstance(exp_avg, Tensor) and isinstance(exp_avg_sq, Tensor)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = self.lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        param.addcdiv_(exp_avg, denom, value=-step_size)


class RMSprop(_Rule):
    """RMSprop with torch's defaults (α = 0.99, ε = 1e-8, no momentum), as ``torch.optim.RMSprop(params, lr)``."""

    alpha = 0.99
    eps = 1e-8

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor | float]) -> None:
        if not state:
            state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        square_avg = state["square_avg"]
        assert isinstance(square_avg, Tensor)
        square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        param.addcdiv_(grad, square_avg.sqrt().add_(self.eps), value=-self.lr)


class SGD(_Rule):
    """SGD with momentum μ (no dampening, not Nesterov), as ``torch.optim.SGD(params, lr, momentum=μ)``."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, momentum: float = 0.9) -> None:
        super().__init__(params, lr)
        self.momentum = float(momentum)

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor | float]) -> None:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = grad.detach().clone()
        else:
            assert isinstance(buf, Tensor)
            buf.mul_(self.momentum).add_(grad)
        param.add_(buf, alpha=-self.lr)


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float) -> Optimizer:
    """The optimizer ``name`` (one of OPTIMIZERS) over ``params`` with learning rate ``lr``."""
    if name == "adam":
        return Adam(params, lr)
    if name == "rmsprop":
        return RMSprop(params, lr)
    if name == "sgd":
        return SGD(params, lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")

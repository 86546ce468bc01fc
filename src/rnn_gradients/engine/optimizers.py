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
from types import ModuleType
from typing import Protocol

import torch
from torch import Tensor, nn

from rnn_gradients.engine import extension
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
    """Adam with torch's defaults (β = (0.9, 0.999), ε = 1e-8), as ``torch.optim.Adam(params, lr)``.

    Where the compiled kernels are offered (:mod:`~rnn_gradients.engine.extension`) and every tensor is a
    contiguous float32 CPU tensor, one call updates every parameter (``csrc/update.cpp``): the same operations per
    element, bit for bit, without a dispatch per op and parameter (about 0.1 ms of a 1.2 ms step at the study's
    shapes). Everywhere else :meth:`_torch_update` runs them as torch ops.
    """

    betas = (0.9, 0.999)
    eps = 1e-8

    def step(self) -> None:
        """One update of every parameter that has a gradient, by the compiled kernels where they are offered."""
        if any(p.grad is not None for p in self.params):
            self.step_with(extension.kernels())

    @torch.no_grad()
    def step_with(self, kernels: ModuleType | None) -> None:
        """:meth:`step` by ``kernels``' ``adam_update`` where it takes every tensor (contiguous float32 CPU
        tensors), else (or None) by torch ops."""
        live = [(i, p, p.grad) for i, p in enumerate(self.params) if p.grad is not None]
        states = [self._state(p, i) for i, p, _ in live]
        steps = [float(state["step"]) + 1.0 for state in states]
        if kernels is not None and live:
            beta1, beta2 = self.betas
            corrections, step_sizes = zip(*map(self._coefficients, steps), strict=True)
            if kernels.adam_update(
                [p for _, p, _ in live], [g for _, _, g in live],
                [state["exp_avg"] for state in states], [state["exp_avg_sq"] for state in states],
                1 - beta1, beta2, 1 - beta2, self.eps, list(corrections), [-step_size for step_size in step_sizes],
            ):  # fmt: skip
                for state, step in zip(states, steps, strict=True):
                    state["step"] = step
                return
        for (_, p, g), state, step in zip(live, states, steps, strict=True):
            self._torch_update(p, g, state, step)

    def _state(self, param: Tensor, index: int) -> dict[str, Tensor | float]:
        """The parameter's state: created (moments zero, no step yet) before its first update."""
        state = self.state.setdefault(index, {})
        if not state:
            state["step"] = 0.0
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    def _coefficients(self, step: float) -> tuple[float, float]:
        """(√(1 − β₂ᵗ), η/(1 − β₁ᵗ)) of update t, in float64 as torch.optim computes them."""
        beta1, beta2 = self.betas
        return (1 - beta2**step) ** 0.5, self.lr / (1 - beta1**step)

    def _torch_update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor | float], step: float) -> None:
        """Update t = ``step`` of one parameter by torch ops."""
        beta1, beta2 = self.betas
        # torch counts steps in a float32 tensor and reads it back as a Python float: exact up to 2^24 steps.
        state["step"] = step
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        assert isinstance(exp_avg, Tensor) and isinstance(exp_avg_sq, Tensor)
        bias_correction2_sqrt, step_size = self._coefficients(step)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
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

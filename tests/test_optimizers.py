"""The study's optimizers against torch.optim: the same parameters, bit for bit, after every step."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rnn_gradients.engine import extension, optimizers

SHAPES = [(64, 64), (64, 2), (64,), (1, 64), (1,)]


def _params(seed: int) -> list[nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(shape, generator=generator)) for shape in SHAPES]


def _reference(name: str, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _assert_same_bits(ours: list[nn.Parameter], theirs: list[nn.Parameter], step: int) -> None:
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"step {step}: {m}")


def _train_both(name: str, lr: float, grads: list[list[torch.Tensor | None]]) -> None:
    ours, theirs = _params(0), _params(0)
    mine = optimizers.make_optimizer(name, ours, lr)
    reference = _reference(name, theirs, lr)
    for step, grad_list in enumerate(grads):
        for opt, params in ((mine, ours), (reference, theirs)):
            opt.zero_grad(set_to_none=True)
            for p, g in zip(params, grad_list, strict=True):
                p.grad = None if g is None else g.clone()
            opt.step()
        _assert_same_bits(ours, theirs, step)


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
@pytest.mark.parametrize("lr", [1e-3, 2e-3, 0.1])
def test_every_step_is_bit_identical_to_torch_optim(name: str, lr: float) -> None:
    generator = torch.Generator().manual_seed(1)
    # Gradients over several orders of magnitude, as in a run whose gradients vanish or explode.
    grads = [
        [torch.randn(shape, generator=generator) * 10.0 ** (step % 7 - 4) for shape in SHAPES] for step in range(60)
    ]
    _train_both(name, lr, grads)


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_a_parameter_without_gradient_is_skipped_as_torch_does(name: str) -> None:
    generator = torch.Generator().manual_seed(2)
    grads = [
        [None if (step + i) % 3 == 0 else torch.randn(shape, generator=generator) for i, shape in enumerate(SHAPES)]
        for step in range(20)
    ]
    _train_both(name, 1e-2, grads)


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_non_finite_gradients_propagate_as_in_torch(name: str) -> None:
    generator = torch.Generator().manual_seed(3)
    grads = []
    for step in range(6):
        step_grads = [torch.randn(shape, generator=generator) for shape in SHAPES]
        if step == 3:
            step_grads[0][0, 0] = math.nan
            step_grads[1][1, 0] = math.inf
        grads.append(step_grads)
    _train_both(name, 1e-3, grads)


def test_zero_grad_without_set_to_none_zeroes_in_place() -> None:
    params = _params(0)
    opt = optimizers.make_optimizer("adam", params, 1e-3)
    params[0].grad = torch.ones_like(params[0])
    grad = params[0].grad
    opt.zero_grad(set_to_none=False)
    assert params[0].grad is grad and not grad.any() and params[1].grad is None
    opt.zero_grad()
    assert params[0].grad is None


def test_unknown_optimizer_and_empty_parameter_list_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'; valid optimizers: adam, rmsprop, sgd"):
        optimizers.make_optimizer("adamw", _params(0), 1e-3)
    with pytest.raises(ValueError, match="empty parameter list"):
        optimizers.make_optimizer("adam", [], 1e-3)


def test_a_training_step_does_not_import_the_compiler() -> None:
    """The reason this module exists: a training process never imports torch._dynamo (1.4 s per process)."""
    import subprocess
    import sys

    code = """
import sys, torch
from rnn_gradients.engine import training
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.engine.tasks import get_task
spec = RunSpec(task="adding", seq_len=5, cell="rnn_tanh", strategy="clip", strategy_params={"clip_norm": 1.0},
               seed=0, device="cpu")
task, strategy = get_task("adding"), Strategy.from_dict(spec.strategy, spec.strategy_params)
model = training.build_model(spec, task, strategy)
optimizer = training.make_optimizer(spec, list(model.parameters()))
x, y = torch.rand(4, task.input_length(5), task.input_size), torch.rand(4, task.output_size)
record = training.optimization_step(0, model, optimizer, training.GradientMeter(model), strategy, task, x, y)
assert record.finite
print("torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_gradient_the_compiled_update_does_not_take_goes_to_the_torch_ops() -> None:
    """``adam_update`` declines a non-contiguous gradient before it touches anything; Adam then runs the torch ops,
    still bit for bit torch.optim's."""
    kernels = extension.kernels()
    if kernels is None:
        pytest.skip(f"the extension is not in use: {extension.status()}")
    param, moment = torch.randn(64, 64), torch.zeros(64, 64)
    before = param.clone()
    transposed = torch.randn(64, 64).t()
    coefficients = (0.1, 0.999, 0.001, 1e-8, [1.0], [-1.0])
    assert not kernels.adam_update([param], [transposed], [moment], [moment.clone()], *coefficients)
    assert torch.equal(param, before) and not moment.any()
    generator = torch.Generator().manual_seed(4)
    grads = [[torch.randn(shape[::-1], generator=generator).t() for shape in SHAPES] for _ in range(5)]
    _train_both("adam", 1e-2, grads)

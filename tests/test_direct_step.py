"""The training step without autograd (rnn_gradients.engine.direct_step) against ``loss.backward()``: the same loss
and every gradient bit for bit, NaN and Inf included, and whole runs byte for byte."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from rnn_gradients.engine import direct_step, extension
from rnn_gradients.engine.cells import RecurrentLayer
from rnn_gradients.engine.datasets import make_dataset, save_dataset
from rnn_gradients.engine.extension import same_bits
from rnn_gradients.engine.model import SequenceModel
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.engine.training import train_run

B, H = 16, 24
TASKS = ("adding", "temporal_order", "first_symbol")
LENGTHS = (1, 7, 60)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as every training job runs (and as batch norm's fused loops require)."""
    with extension._one_thread():
        yield


def model_and_batch(
    cell: str, norm: str, task_name: str, length: int, seed: int = 0
) -> tuple[SequenceModel, Tensor, Tensor]:
    task = get_task(task_name)
    generator = torch.Generator().manual_seed(seed)
    net = SequenceModel(cell, task.input_size, H, task.output_size, task.readout, norm, length, generator=generator)
    data = make_dataset(task_name, max(length, 7), seed=seed, train_size=B, val_size=1, test_size=1)
    x, y = task.to_tensors(data.train)
    return net, x[:, :length].contiguous(), y  # T = 1: the first step of a longer sequence (the target is moot)


def autograd_step(net: SequenceModel, task_name: str, x: Tensor, y: Tensor) -> list[Tensor | None]:
    loss = get_task(task_name).loss(net(x), y)
    loss.backward()
    return [loss.detach(), *(p.grad for p in net.parameters())]


def direct(net: SequenceModel, task_name: str, x: Tensor, y: Tensor) -> list[Tensor | None]:
    loss = direct_step.loss_and_gradients(net, get_task(task_name), x, y)
    assert loss is not None, "the step is covered, so the direct path must compute it"
    return [loss, *(p.grad for p in net.parameters())]


def assert_same(got: list[Tensor | None], want: list[Tensor | None]) -> None:
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert (a is None) == (b is None), f"entry {i}: a gradient on one path only"
        if a is not None and b is not None:
            assert same_bits(a, b), f"entry {i} differs: max |Δ| {(a - b).abs().max().item():.3g}"


@pytest.mark.parametrize(("cell", "norm"), direct_step.COVERED)
@pytest.mark.parametrize("task_name", TASKS)
@pytest.mark.parametrize("length", LENGTHS)
def test_loss_and_every_gradient_are_autograds_bit_for_bit(cell: str, norm: str, task_name: str, length: int) -> None:
    net, x, y = model_and_batch(cell, norm, task_name, length)
    reference, _, _ = model_and_batch(cell, norm, task_name, length)
    assert_same(direct(net, task_name, x, y), autograd_step(reference, task_name, x, y))


@pytest.mark.parametrize(("cell", "norm"), direct_step.COVERED)
@pytest.mark.parametrize("poison", ["nan", "inf", "huge"])
def test_nan_and_inf_propagate_as_through_autograd(cell: str, norm: str, poison: str) -> None:
    """A NaN or Inf weight, or read-out weights large enough to overflow: the same non-finite entries on both paths (the
    training loop records a divergence from them, it must see the same one)."""
    nets = [model_and_batch(cell, norm, "adding", 20)[0] for _ in range(2)]
    _, x, y = model_and_batch(cell, norm, "adding", 20)
    for net in nets:
        with torch.no_grad():
            if poison == "huge":  # an output near 1e30: its square and the gradient through the head overflow
                net.head.weight.mul_(1e30)
            else:
                net.recurrent.cell.weight_hh[0, 0] = math.nan if poison == "nan" else math.inf
    got, want = direct(nets[0], "adding", x, y), autograd_step(nets[1], "adding", x, y)
    assert not all(torch.isfinite(t).all() for t in want if t is not None), "the poison must reach the gradients"
    assert_same(got, want)


def test_a_gradient_shared_by_two_biases_is_two_tensors() -> None:
    """b_ih and b_hh get the same values; clipping one in place must not scale the other."""
    net, x, y = model_and_batch("rnn_tanh", "none", "adding", 7)
    direct(net, "adding", x, y)
    cell = net.recurrent.cell
    assert torch.equal(cell.bias_ih.grad, cell.bias_hh.grad)
    assert cell.bias_ih.grad.data_ptr() != cell.bias_hh.grad.data_ptr()


@pytest.mark.parametrize(
    ("cell", "norm", "task_name", "why"),
    [
        ("lstm", "none", "adding", "the LSTM keeps torch's fused kernel"),
        ("rnn_tanh", "none", "copy", "a read-out at every step"),
    ],
)
def test_what_it_does_not_cover_is_left_to_autograd_untouched(cell: str, norm: str, task_name: str, why: str) -> None:
    net, x, y = model_and_batch(cell, norm, task_name, 12)
    assert direct_step.loss_and_gradients(net, get_task(task_name), x, y) is None, why
    assert all(p.grad is None for p in net.parameters())


def test_batch_norm_off_its_fused_loops_is_left_to_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the compiled module, with two threads or with a batch of one, batch norm takes its plain-torch path,
    whose input normalization is autograd's: the direct step does not cover it."""
    net, x, y = model_and_batch("rnn_tanh", "batch", "adding", 12)
    task = get_task("adding")
    assert direct_step.covers(net, task, x)
    assert not direct_step.covers(net, task, x[:1])
    torch.set_num_threads(2)
    assert not direct_step.covers(net, task, x)
    torch.set_num_threads(1)
    monkeypatch.setattr(extension, "kernels", lambda: None)
    assert direct_step.loss_and_gradients(net, task, x, y) is None
    assert all(p.grad is None for p in net.parameters())


def test_the_reference_path_and_existing_gradients_are_left_to_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x, y = model_and_batch("rnn_tanh", "none", "adding", 12)
    monkeypatch.setattr(RecurrentLayer, "reference", True)
    assert direct_step.loss_and_gradients(net, get_task("adding"), x, y) is None
    monkeypatch.setattr(RecurrentLayer, "reference", False)
    net.head.bias.grad = torch.zeros_like(net.head.bias)  # autograd would add to it
    assert direct_step.loss_and_gradients(net, get_task("adding"), x, y) is None
    assert torch.equal(net.head.bias.grad, torch.zeros_like(net.head.bias))


@pytest.mark.parametrize(
    ("cell", "strategy", "params", "task_name"),
    [
        ("rnn_tanh", "clip_norm", {"clip_norm": 0.5}, "adding"),
        ("rnn_relu", "ln", {"norm": "layer"}, "temporal_order"),
        ("rnn_sigmoid", "batch_norm", {"norm": "batch"}, "adding"),
        ("gru", "none", {}, "adding"),
        ("gru", "ln", {"norm": "layer"}, "adding"),
        ("lstm", "batch_norm", {"norm": "batch"}, "temporal_order"),
    ],
)
def test_a_run_is_byte_identical_with_and_without_the_direct_step(
    tmp_path, monkeypatch: pytest.MonkeyPatch, cell: str, strategy: str, params: dict, task_name: str
) -> None:
    """Whole runs (steps, clipping, evaluations, probes), once as the engine trains them and once with the direct
    step switched off: every run file but the timings the same bytes."""
    length = 10
    data = tmp_path / "data.npz"
    save_dataset(make_dataset(task_name, length, seed=0, train_size=128, val_size=32, test_size=32), data)
    spec = RunSpec(
        task=task_name, seq_len=length, cell=cell, strategy=strategy, strategy_params=params, seed=0,
        train_size=128, val_size=32, test_size=32, hidden_size=16, batch_size=32, steps=60, eval_every=20,
        probe_every=30, probe_batch=8, early_stop=False, device="cpu",
    )  # fmt: skip
    train_run(spec, data, tmp_path / "direct")
    monkeypatch.setattr(direct_step, "loss_and_gradients", lambda *args: None)
    train_run(spec, data, tmp_path / "autograd")
    names = sorted(p.name for p in (tmp_path / "direct").iterdir() if p.name != "runtime.json")
    assert "steps.csv" in names
    for name in names:
        assert (tmp_path / "direct" / name).read_bytes() == (tmp_path / "autograd" / name).read_bytes(), name

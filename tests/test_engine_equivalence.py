"""The fast engine against autograd through the reference cells: same outputs and gradients, same runs.

Every (cell, norm) runs through ``RecurrentLayer.path`` (hand-written BPTT, fused kernel or unrolled loop) and,
with ``reference = True``, through the engine as it was before BPTT (fused kernel or unrolled autograd loop).
Errors are relative to the largest entry of each tensor: max |a − b| / max |b| ≤ 1e-5 in float32.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor, nn

from rnn_gradients.engine.bptt import tanh_from_twice
from rnn_gradients.engine.cells import BPTT_PATHS, CELLS
from rnn_gradients.engine.datasets import make_dataset, save_dataset
from rnn_gradients.engine.initialization import init_recurrent
from rnn_gradients.engine.model import SequenceModel
from rnn_gradients.engine.normalization import NORMS, population_statistics
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.training import train_run, train_runs

B, N_IN, H, N_OUT = 8, 3, 16, 2
LENGTHS = (1, 5, 60)
TOLERANCE = 1e-5


def relative_error(got: Tensor, want: Tensor) -> float:
    scale = want.detach().abs().max().item()
    return (got.detach() - want.detach()).abs().max().item() / (scale if scale > 0 else 1.0)


def model(cell: str, norm: str, length: int, readout: str = "all", dtype: torch.dtype = torch.float32) -> SequenceModel:
    built = SequenceModel(cell, N_IN, H, N_OUT, readout, norm, length, generator=torch.Generator().manual_seed(3))
    return built.to(dtype)


def inputs(length: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(length)
    x = torch.randn(B, length, N_IN, generator=generator)
    weights = torch.randn(B, length, N_OUT, generator=generator)
    return x.to(dtype), weights.to(dtype)


def outputs_and_gradients(net: SequenceModel, x: Tensor, weights: Tensor, reference: bool) -> list[Tensor]:
    """[output, ∂L/∂x, ∂L/∂θ for every parameter] for L = Σ output ⊙ weights (every step's output counts)."""
    net.recurrent.reference = reference
    x = x.clone().requires_grad_()
    out = net(x)
    loss = (out * (weights if out.dim() == 3 else weights[:, -1])).sum()
    return [out, *torch.autograd.grad(loss, [x, *net.parameters()])]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tanh_from_twice_is_tanh_within_two_ulp_of_one_and_maps_nan_and_inf_alike(dtype: torch.dtype) -> None:
    """The BPTT paths' tanh, 2σ(2x) − 1: absolute error within 2 ulp of 1 against tanh in float64 (torch.tanh's
    own float32 error is 1/4 of an ulp of 1 here), NaN to NaN, ±Inf and the largest floats to ±1 exactly, written in
    place or into another tensor."""
    x = torch.linspace(-12, 12, 2_000_001, dtype=torch.float64).to(dtype)
    out = torch.empty_like(x)
    got = tanh_from_twice(2 * x, out)
    assert got.data_ptr() == out.data_ptr() and got.dtype == dtype
    assert (got.double() - torch.tanh(x.double())).abs().max().item() <= 2 * torch.finfo(dtype).eps
    big = torch.finfo(dtype).max
    special = torch.tensor([math.nan, math.inf, -math.inf, big, -big, 0.0, 20.0, -20.0], dtype=dtype)
    twice = 2 * special
    in_place = tanh_from_twice(twice, twice)
    assert in_place.data_ptr() == twice.data_ptr()
    torch.testing.assert_close(in_place, torch.tanh(special), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("cell", CELLS)
def test_fast_path_equals_reference_autograd_in_float32_and_float64(cell: str, norm: str, length: int) -> None:
    x, weights = inputs(length)
    fast = outputs_and_gradients(model(cell, norm, length), x, weights, reference=False)
    slow = outputs_and_gradients(model(cell, norm, length), x, weights, reference=True)
    exact = outputs_and_gradients(model(cell, norm, length, dtype=torch.float64), x.double(), weights.double(), True)
    names = ["output", "x", *(name for name, _ in model(cell, norm, length).named_parameters())]
    for name, got, want, best in zip(names, fast, slow, exact, strict=True):
        assert got.dtype == torch.float32
        assert relative_error(got, want) <= TOLERANCE, (name, relative_error(got, want))
        # Against float64: as close as the reference's own float32 (batch norm over 8 sequences is not well
        # conditioned: both float32 paths can be 2e-5 from float64 there).
        bound = max(TOLERANCE, 2 * relative_error(want.double(), best))
        assert relative_error(got.double(), best) <= bound, (name, relative_error(got.double(), best))
    assert (model(cell, norm, length).recurrent.path == "bptt") == ((cell, norm) in BPTT_PATHS)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("cell", CELLS)
def test_last_step_readout_and_training_mode_buffers_agree(cell: str, norm: str) -> None:
    """Readout "last" (the gradient enters at one step only) and, under batch norm, the running statistics."""
    x, weights = inputs(60)
    fast_model, slow_model = model(cell, norm, 60, "last"), model(cell, norm, 60, "last")
    fast = outputs_and_gradients(fast_model, x, weights, reference=False)
    slow = outputs_and_gradients(slow_model, x, weights, reference=True)
    for got, want in zip(fast, slow, strict=True):
        assert relative_error(got, want) <= TOLERANCE
    for (name, got), (_, want) in zip(fast_model.named_buffers(), slow_model.named_buffers(), strict=True):
        assert relative_error(got, want) <= TOLERANCE, name


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("cell", CELLS)
def test_last_state_is_bit_identical_to_the_last_of_all_states(cell: str, norm: str) -> None:
    """``last_state`` (the backward pass starts from ∂L/∂h_L alone) changes no bit: not of h_L, not of a
    gradient, not of the batch-norm running statistics, against ``forward(x)[:, -1]`` on the same path."""
    x, weights = inputs(60)
    results = []
    for last in (True, False):
        net = model(cell, norm, 60, "last")
        xs = x.clone().requires_grad_()
        h = net.recurrent.last_state(xs) if last else net.recurrent(xs)[:, -1]
        loss = (net.head(h) * weights[:, -1]).sum()
        results.append([h, *torch.autograd.grad(loss, [xs, *net.parameters()]), *net.buffers()])
    for got, want in zip(*results, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("cell", CELLS)
def test_evaluation_without_a_graph_equals_the_graph_path(cell: str, norm: str) -> None:
    """``model(x)`` under no_grad (evaluation, population statistics) gives the training path's output."""
    x, _ = inputs(60)
    net = model(cell, norm, 60, "last")
    with torch.no_grad():
        population = net(x)
    graph = net(x)
    torch.testing.assert_close(population, graph.detach(), rtol=1e-6, atol=1e-7)
    net.eval()
    with population_statistics(net, x), torch.no_grad():
        fast = net(x)
        net.recurrent.reference = True
        slow = net(x)
    assert relative_error(fast, slow) <= TOLERANCE


TORCH_MODULES = {
    "rnn_tanh": lambda: nn.RNN(N_IN, H, nonlinearity="tanh", batch_first=True),
    "rnn_relu": lambda: nn.RNN(N_IN, H, nonlinearity="relu", batch_first=True),
    "gru": lambda: nn.GRU(N_IN, H, batch_first=True),
}


@pytest.mark.parametrize("cell", list(TORCH_MODULES))
def test_fast_path_equals_torch_nn_in_float32(cell: str) -> None:
    x, _ = inputs(60)
    net = model(cell, "none", 60)
    theirs = TORCH_MODULES[cell]()
    with torch.no_grad():
        for name, param in net.recurrent.cell.named_parameters():
            getattr(theirs, f"{name}_l0").copy_(param)
    ours = net.recurrent(x)
    expected = theirs(x)[0]
    assert relative_error(ours, expected) <= TOLERANCE
    target = torch.randn(B, 60, H, generator=torch.Generator().manual_seed(9))
    got = torch.autograd.grad((ours * target).sum(), list(net.recurrent.cell.parameters()))
    want = torch.autograd.grad((expected * target).sum(), list(theirs.parameters()))
    for a, b in zip(got, want, strict=True):
        assert relative_error(a, b) <= TOLERANCE


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "rnn_sigmoid"])
def test_exploding_init_matches_float64_where_float32_is_ill_conditioned(cell: str) -> None:
    """‖W_hh‖₂ = 3 at T = 60: compare with float64, the float32 paths may disagree with each other."""
    x, weights = inputs(60)
    nets = [model(cell, "none", 60) for _ in range(2)]
    for net in nets:
        init_recurrent(net.recurrent.cell, "scaled", torch.Generator().manual_seed(0), spectral_norm=3.0)
    fast = outputs_and_gradients(nets[0], x, weights, reference=False)
    exact = outputs_and_gradients(nets[1].double(), x.double(), weights.double(), reference=True)
    # The float64 reference bounds what float32 can reach here; the fast path must be as close as the old one.
    slow = outputs_and_gradients(nets[1].float(), x, weights, reference=True)
    for got, old, best in zip(fast, slow, exact, strict=True):
        assert relative_error(got.double(), best) <= max(10 * relative_error(old.double(), best), TOLERANCE)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("cell", CELLS)
def test_nan_and_inf_propagate_as_on_the_reference_path(cell: str, norm: str) -> None:
    """A NaN input or an infinite weight gives a non-finite loss or gradient on both paths alike."""
    x, weights = inputs(5)
    x[0, 2, 1] = math.nan
    for case in ("nan input", "inf weight"):
        results = []
        for reference in (False, True):
            net = model(cell, norm, 5, "last")
            if case == "inf weight":
                with torch.no_grad():
                    net.recurrent.cell.weight_hh[0, 0] = math.inf
            xs = x if case == "nan input" else torch.nan_to_num(x)
            out = outputs_and_gradients(net, xs, weights, reference)
            results.append([bool(torch.isfinite(t).all()) for t in out])
        assert results[0] == results[1], case
        assert not all(results[0]), case


# --- a run is the same run wherever it trains ---------------------------------------------------------------


def run_spec(**overrides: object) -> RunSpec:
    base: dict = dict(
        task="adding",
        seq_len=8,
        cell="rnn_tanh",
        strategy="none",
        strategy_params={},
        seed=0,
        train_size=64,
        val_size=16,
        test_size=16,
        hidden_size=8,
        batch_size=16,
        steps=12,
        eval_every=4,
        probe_every=6,
        probe_batch=8,
        early_stop=False,
        device="cpu",
    )
    base.update(overrides)
    return RunSpec(**base)


RESULT_FILES = ("steps.csv", "evals.csv", "probes.csv")


def results(run_dir) -> dict[str, str]:
    """The run's result files as text, and its summary; runtime.json (wall-clock times) is left out."""
    files = {name: (run_dir / name).read_text() for name in RESULT_FILES}
    files["summary.json"] = json.dumps(json.loads((run_dir / "summary.json").read_text()), sort_keys=True)
    return files


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    paths = {}
    for seed in (0, 1):
        paths[seed] = root / f"seed{seed}.npz"
        save_dataset(make_dataset("adding", 8, seed=seed, train_size=64, val_size=16, test_size=16), paths[seed])
    return paths


@pytest.mark.parametrize(
    ("cell", "strategy", "params"),
    [
        ("rnn_tanh", "none", {}),
        ("rnn_relu", "bn", {"norm": "batch"}),
        ("gru", "clip", {"clip_norm": 0.5}),
        ("gru", "bn", {"norm": "batch"}),
    ],
)
def test_a_run_is_bit_identical_alone_with_its_seeds_and_beside_other_runs(tmp_path, datasets, cell, strategy, params):
    spec = run_spec(cell=cell, strategy=strategy, strategy_params=params)
    alone = tmp_path / "alone"
    train_run(spec, datasets[0], alone)
    with_seeds = [tmp_path / "seeds" / f"seed{seed}" for seed in (0, 1)]
    train_runs(
        [spec, run_spec(cell=cell, strategy=strategy, strategy_params=params, seed=1)],
        [datasets[0], datasets[1]],
        with_seeds,
    )
    others = [run_spec(cell="lstm", strategy="ln", strategy_params={"norm": "layer"}), run_spec(cell="rnn_sigmoid")]
    beside = [tmp_path / "beside" / name for name in ("lstm", "sigmoid", "run")]
    train_runs([*others, spec], [datasets[0]] * 3, beside)
    assert results(alone) == results(with_seeds[0]) == results(beside[-1])
    assert results(alone) != results(with_seeds[1])

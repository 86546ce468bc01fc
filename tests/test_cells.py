"""Hand-written cells, the recurrent layer, normalization and the sequence model against independent oracles:
torch.nn's cells and fused modules, and direct re-implementations of the equations of the papers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnn_gradients.engine.cells import (
    BPTT_PATHS,
    CELLS,
    FUSED_CELLS,
    GATED_CELLS,
    VANILLA_CELLS,
    RecurrentLayer,
    make_cell,
    validate_cell,
)
from rnn_gradients.engine.model import PARAMETER_GROUPS, SequenceModel, parameter_group
from rnn_gradients.engine.normalization import NORMS, CellNorms, LayerNorm, StepwiseBatchNorm, validate_norm

B, L, N_IN, H = 5, 7, 3, 6
EPS = 1e-5
TORCH_CELLS = {
    "rnn_tanh": lambda: nn.RNNCell(N_IN, H, nonlinearity="tanh"),
    "rnn_relu": lambda: nn.RNNCell(N_IN, H, nonlinearity="relu"),
    "lstm": lambda: nn.LSTMCell(N_IN, H),
    "gru": lambda: nn.GRUCell(N_IN, H),
}
TORCH_LAYERS = {
    "rnn_tanh": lambda: nn.RNN(N_IN, H, nonlinearity="tanh", batch_first=True),
    "rnn_relu": lambda: nn.RNN(N_IN, H, nonlinearity="relu", batch_first=True),
    "lstm": lambda: nn.LSTM(N_IN, H, batch_first=True),
    "gru": lambda: nn.GRU(N_IN, H, batch_first=True),
}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 1) -> Tensor:
    return torch.randn(*shape, generator=generator(seed), dtype=torch.float64)


def layer64(cell: str, norm: str = "none", max_len: int = L) -> RecurrentLayer:
    return RecurrentLayer(cell, N_IN, H, norm, max_len, generator=generator()).double()


def copy_weights(ours: nn.Module, theirs: nn.Module, suffix: str = "") -> None:
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(theirs, name + suffix).copy_(getattr(ours, name))


# --- names -------------------------------------------------------------------------------------------------


def test_cell_constants() -> None:
    assert CELLS == ("rnn_tanh", "rnn_sigmoid", "rnn_relu", "lstm", "gru")
    assert GATED_CELLS == ("lstm", "gru")
    assert set(VANILLA_CELLS) | set(GATED_CELLS) == set(CELLS)


def test_validate_cell_names_bad_value_and_valid_ones() -> None:
    assert validate_cell("gru") == "gru"
    with pytest.raises(ValueError, match=r"'rnn_gelu'.*rnn_tanh, rnn_sigmoid, rnn_relu, lstm, gru"):
        validate_cell("rnn_gelu")
    with pytest.raises(ValueError, match=r"'group'.*none, layer, batch"):
        validate_norm("group")
    with pytest.raises(ValueError, match="'group'"):
        RecurrentLayer("lstm", N_IN, H, norm="group")


def test_parameter_names_and_shapes_follow_torch() -> None:
    for cell, gates in [("rnn_tanh", 1), ("rnn_sigmoid", 1), ("rnn_relu", 1), ("lstm", 4), ("gru", 3)]:
        shapes = {name: tuple(p.shape) for name, p in RecurrentLayer(cell, N_IN, H).named_parameters()}
        assert shapes == {
            "cell.weight_ih": (gates * H, N_IN),
            "cell.weight_hh": (gates * H, H),
            "cell.bias_ih": (gates * H,),
            "cell.bias_hh": (gates * H,),
        }


# --- one step ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", list(TORCH_CELLS))
def test_step_equals_torch_cell(cell: str) -> None:
    ours = make_cell(cell, N_IN, H, generator=generator()).double()
    theirs = TORCH_CELLS[cell]().double()
    copy_weights(ours, theirs)
    x = randn(B, N_IN)
    if cell == "lstm":
        state = (randn(B, H, seed=2), randn(B, H, seed=3))
        for a, b in zip(ours(x, state), theirs(x, state), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        for a, b in zip(ours(x), theirs(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    else:
        state = randn(B, H, seed=2)
        torch.testing.assert_close(ours(x, state), theirs(x, state), atol=1e-6, rtol=0)
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)


def test_sigmoid_step_equals_formula() -> None:
    cell = make_cell("rnn_sigmoid", N_IN, H, generator=generator()).double()
    x, h = randn(B, N_IN), randn(B, H, seed=2)
    pre = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    torch.testing.assert_close(cell(x, h), 1.0 / (1.0 + torch.exp(-pre)), atol=1e-6, rtol=0)


# --- whole sequences ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", list(TORCH_LAYERS))
def test_layer_equals_torch_module_on_both_paths_with_gradients(cell: str) -> None:
    ours = layer64(cell)
    theirs = TORCH_LAYERS[cell]().double()
    copy_weights(ours.cell, theirs, "_l0")
    assert ours.path == ("fused" if cell == "lstm" else "bptt")
    x = randn(B, L, N_IN).requires_grad_()
    target = randn(B, L, H, seed=4)

    def loss_and_grads(module: nn.Module, out: Tensor) -> list[Tensor]:
        loss = ((out - target) ** 2).sum()
        return list(torch.autograd.grad(loss, [x, *module.parameters()]))

    expected_out = theirs(x)[0]
    expected = loss_and_grads(theirs, expected_out)
    outputs = [ours(x), ours.forward_with_states(x)[0]]
    ours.reference = True  # the engine before hand-written BPTT: torch's fused kernel
    assert ours.fused
    outputs.append(ours(x))
    for out in outputs:
        torch.testing.assert_close(out, expected_out, atol=1e-6, rtol=0)
        for got, want in zip(loss_and_grads(ours, out), expected, strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", FUSED_CELLS)
def test_paths_agree_in_float32(cell: str) -> None:
    """float32 takes other kernels than float64 on CPU (oneDNN for the fused LSTM): the paths still agree."""
    layer = RecurrentLayer(cell, N_IN, H, max_len=L, generator=generator())
    x = randn(B, L, N_IN).float()
    fused, unrolled = layer(x), layer.forward_with_states(x)[0]
    torch.testing.assert_close(fused, unrolled, atol=1e-5, rtol=0)
    grads_fused = torch.autograd.grad(fused.square().sum(), list(layer.parameters()))
    grads_unrolled = torch.autograd.grad(unrolled.square().sum(), list(layer.parameters()))
    for a, b in zip(grads_fused, grads_unrolled, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_sigmoid_layer_equals_formula_and_is_unrolled() -> None:
    layer = layer64("rnn_sigmoid")
    assert layer.path == "bptt" and not layer.fused
    x = randn(B, L, N_IN)
    cell = layer.cell
    h = torch.zeros(B, H, dtype=torch.float64)
    expected = []
    for t in range(L):
        h = torch.sigmoid(x[:, t] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh)
        expected.append(h)
    torch.testing.assert_close(layer(x), torch.stack(expected, 1), atol=1e-6, rtol=0)


def test_states_carry_total_derivative_through_time() -> None:
    """For h_t = tanh(a_t): ∂L/∂h_t = ∂L/∂y_t + (∂L/∂h_{t+1} ⊙ (1 − h_{t+1}²)) W_hh (BPTT recursion)."""
    layer = layer64("rnn_tanh")
    x = randn(B, L, N_IN)
    outputs, states = layer.forward_with_states(x)
    weights = randn(B, L, H, seed=5)
    grads = torch.autograd.grad((outputs * weights).sum(), states)
    w_hh = layer.cell.weight_hh.detach()
    expected = weights[:, -1]
    torch.testing.assert_close(grads[-1], expected)
    for t in range(L - 2, -1, -1):
        h_next = states[t + 1].detach()
        expected = weights[:, t] + (expected * (1 - h_next**2)) @ w_hh
        torch.testing.assert_close(grads[t], expected)
    assert all(s.shape == (B, H) for s in states)


def test_forward_rejects_bad_input_shape() -> None:
    layer = RecurrentLayer("gru", N_IN, H)
    with pytest.raises(ValueError, match=r"\(batch, length >= 1, 3\)"):
        layer(torch.zeros(B, L, N_IN + 1))
    with pytest.raises(ValueError, match="got"):
        layer.forward_with_states(torch.zeros(B, 0, N_IN))


# --- normalization: a direct re-implementation of the papers' equations as the oracle -----------------------


def reference_forward(layer: RecurrentLayer, x: Tensor) -> Tensor:
    """Ba et al. 2016 / Cooijmans et al. 2016 written out step by step with explicit statistics (train mode)."""
    cell, kind = layer.cell, layer.norm_kind
    w_ih, w_hh, b_ih, b_hh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh

    def ln(z: Tensor) -> Tensor:  # per example, over features; gain 1, bias 0 at init
        return (z - z.mean(-1, keepdim=True)) / torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + EPS)

    def bn(z: Tensor, shift: Tensor | None = None) -> Tensor:  # over the batch, this step only; γ = 0.1
        out = 0.1 * (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + EPS)
        return out if shift is None else out + shift

    norm = ln if kind == "layer" else bn
    h = torch.zeros(x.shape[0], H, dtype=x.dtype)
    c = torch.zeros_like(h)
    outputs = []
    for t in range(x.shape[1]):
        wx, wh = x[:, t] @ w_ih.T, h @ w_hh.T
        if cell.family == "vanilla":
            pre = ln(wx + wh) if kind == "layer" else bn(wh) + bn(wx)
            h = cell.activation(pre + b_ih + b_hh)
        elif cell.family == "lstm":
            i, f, g, o = (norm(wh) + norm(wx) + b_ih + b_hh).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            c_norm = ln(c) if kind == "layer" else bn(c, layer.norm.cell_state.bias)
            h = torch.sigmoid(o) * torch.tanh(c_norm)
        else:
            xr, xz, xn = (norm(wx) + b_ih).chunk(3, 1)
            hr, hz, hn = (norm(wh) + b_hh).chunk(3, 1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
        outputs.append(h)
    return torch.stack(outputs, 1)


@pytest.mark.parametrize("norm", ["layer", "batch"])
@pytest.mark.parametrize("cell", CELLS)
def test_normalized_layer_equals_paper_equations(cell: str, norm: str) -> None:
    layer = layer64(cell, norm)
    assert not layer.fused
    x = randn(B, L, N_IN)
    out = layer(x)
    assert out.shape == (B, L, H)
    torch.testing.assert_close(out, reference_forward(layer, x), atol=1e-6, rtol=0)


def test_norm_placement_and_initial_gains() -> None:
    def modules(cell: str, norm: str) -> dict[str, nn.Module | None]:
        n = RecurrentLayer(cell, N_IN, H, norm, L).norm
        return {"input": n.input, "hidden": n.hidden, "summed": n.summed, "cell_state": n.cell_state}

    assert all(m is None for m in modules("lstm", "none").values())
    vanilla_ln = modules("rnn_tanh", "layer")
    assert isinstance(vanilla_ln["summed"], LayerNorm)
    assert [k for k, m in vanilla_ln.items() if m is not None] == ["summed"]
    lstm_ln = modules("lstm", "layer")
    assert lstm_ln["input"].weight.shape == (4 * H,) and lstm_ln["cell_state"].weight.shape == (H,)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in lstm_ln.values() if m is not None)
    lstm_bn = modules("lstm", "batch")
    assert lstm_bn.pop("summed") is None
    assert all(isinstance(m, StepwiseBatchNorm) for m in lstm_bn.values())
    assert all(torch.allclose(m.weight, torch.tensor(0.1)) for m in lstm_bn.values())
    assert lstm_bn["input"].bias is None and lstm_bn["hidden"].bias is None
    assert torch.all(lstm_bn["cell_state"].bias == 0)
    assert lstm_bn["hidden"].running_mean.shape == (L, 4 * H)
    gru_bn = modules("gru", "batch")
    assert gru_bn["cell_state"] is None and gru_bn["summed"] is None and gru_bn["input"].features == 3 * H
    with pytest.raises(ValueError, match="'elman'"):
        CellNorms("layer", "elman", H)


def test_layer_norm_statistics_per_example() -> None:
    layer_norm = LayerNorm(4 * H).double()
    z = randn(B, 4 * H) * 3 + 2
    out = layer_norm.step(z, 0)
    torch.testing.assert_close(out.mean(-1), torch.zeros(B, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(B, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(layer_norm.sequence(z.unsqueeze(1))[:, 0], out)


def test_batch_norm_step_statistics_and_running_buffers() -> None:
    bn = StepwiseBatchNorm(H, max_len=3, shift=True).double()
    z = randn(8, 3, H) * 2 + 1
    out = bn.sequence(z)
    # Each step normalized by its own batch statistics: γ = 0.1 times unit variance, mean β = 0.
    zero = torch.zeros(3, H, dtype=torch.float64)
    torch.testing.assert_close(out.mean(0), zero, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        out.var(0, unbiased=False), torch.full((3, H), 0.01, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(bn.running_mean, 0.1 * z.mean(0))
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * z.var(0, unbiased=True))
    # Step by step gives the same outputs and the same buffers.
    stepwise = StepwiseBatchNorm(H, max_len=3, shift=True).double()
    outs = [stepwise.step(z_t, t) for t, z_t in enumerate(z.unbind(1))]
    torch.testing.assert_close(torch.stack(outs, 1), out)
    torch.testing.assert_close(stepwise.running_mean, bn.running_mean)
    torch.testing.assert_close(stepwise.running_var, bn.running_var)
    with pytest.raises(ValueError, match="max_len=3"):
        bn.sequence(randn(8, 4, H))
    with pytest.raises(ValueError, match="max_len=3"):
        bn.step(z[:, 0], 3)


def test_batch_norm_eval_uses_population_statistics_of_step() -> None:
    bn = StepwiseBatchNorm(H, max_len=3, shift=True).double()
    with torch.no_grad():
        bn.running_mean.copy_(randn(3, H, seed=6))
        bn.running_var.copy_(randn(3, H, seed=7).abs() + 0.5)
        bn.weight.copy_(randn(H, seed=8))
        bn.bias.copy_(randn(H, seed=9))
    bn.eval()
    z = randn(4, 5, H)
    rows = [0, 1, 2, 2, 2]  # steps beyond max_len use the last step's statistics
    mean, var = bn.running_mean[rows], bn.running_var[rows]
    expected = (z - mean) / torch.sqrt(var + EPS) * bn.weight + bn.bias
    torch.testing.assert_close(bn.sequence(z), expected)
    torch.testing.assert_close(torch.stack([bn.step(z[:, t], t) for t in range(5)], 1), expected)
    before = bn.running_mean.clone()
    bn.sequence(z)
    assert torch.equal(bn.running_mean, before)


def test_batch_norm_layer_updates_statistics_per_step() -> None:
    layer = layer64("rnn_tanh", "batch")
    x = randn(B, L, N_IN)
    _, states = layer.forward_with_states(x)
    w_ih, w_hh = layer.cell.weight_ih.detach(), layer.cell.weight_hh.detach()
    torch.testing.assert_close(layer.norm.input.running_mean, 0.1 * (x @ w_ih.T).mean(0))
    previous = torch.stack([torch.zeros(B, H, dtype=torch.float64), *[s.detach() for s in states[:-1]]], 1)
    torch.testing.assert_close(layer.norm.hidden.running_mean, 0.1 * (previous @ w_hh.T).mean(0))
    # Eval mode reads the population statistics, so a single sequence gives the same result alone or in a batch.
    layer.eval()
    torch.testing.assert_close(layer(x[:1]), layer(x)[:1])


# --- the model ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("cell", CELLS)
def test_model_readouts_and_paths_agree(cell: str, norm: str) -> None:
    x = randn(B, L, N_IN)
    last = SequenceModel(cell, N_IN, H, 2, "last", norm, L, generator=generator()).double()
    out, states = last.forward_with_states(x)
    assert out.shape == (B, 2) and len(states) == L
    model_all = SequenceModel(cell, N_IN, H, 4, "all", norm, L, generator=generator()).double()
    assert model_all(x).shape == (B, L, 4)
    torch.testing.assert_close(last(x), last.forward_with_states(x)[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(last(x), last.head(last.recurrent(x)[:, -1]))
    assert last.recurrent.fused == (norm == "none" and cell == "lstm")
    assert (last.recurrent.path == "bptt") == ((cell, norm) in BPTT_PATHS)


@pytest.mark.parametrize("norm", NORMS)
def test_parameter_groups_cover_every_parameter(norm: str) -> None:
    model = SequenceModel("lstm", N_IN, H, 2, "last", norm, L)
    groups = {name: parameter_group(name) for name, _ in model.named_parameters()}
    assert set(groups.values()) <= set(PARAMETER_GROUPS)
    assert groups["recurrent.cell.weight_hh"] == "weight_hh" and groups["head.bias"] == "head"
    assert (norm != "none") == ("norm" in groups.values())
    assert model.parameter_group("recurrent.cell.bias_ih") == "bias_ih"
    with pytest.raises(ValueError, match="'recurrent.cell.weight_xx'"):
        parameter_group("recurrent.cell.weight_xx")


def test_model_construction_is_seeded_and_leaves_global_rng_alone() -> None:
    rng_before = torch.random.get_rng_state()
    a = SequenceModel("gru", N_IN, H, 2, "last", generator=generator(3))
    b = SequenceModel("gru", N_IN, H, 2, "last", generator=generator(3))
    c = SequenceModel("gru", N_IN, H, 2, "last", generator=generator(4))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    for (_, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters(), strict=True):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    with pytest.raises(ValueError, match=r"'first'.*last, all"):
        SequenceModel("gru", N_IN, H, 2, "first")


def test_model_trains_one_step_on_every_path() -> None:
    x, y = randn(B, L, N_IN).float(), randn(B, 1).float()
    for cell in CELLS:
        for norm in NORMS:
            model = SequenceModel(cell, N_IN, H, 1, "last", norm, L, generator=generator())
            loss = F.mse_loss(model(x), y)
            loss.backward()
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

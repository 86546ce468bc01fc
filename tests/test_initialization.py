"""Initialization schemes: the matrix properties each promises, bias ranges, seeding and the error messages."""

from __future__ import annotations

import math

import pytest
import torch

from rnn_gradients.engine.cells import CELLS, GATED_CELLS, VANILLA_CELLS, RecurrentLayer, make_cell
from rnn_gradients.engine.initialization import (
    INIT_SCHEMES,
    candidate_block,
    find_cell,
    init_chrono,
    init_default,
    init_recurrent,
    recurrent_blocks,
)
from rnn_gradients.engine.model import SequenceModel

N_IN, H = 4, 16
GATES = {"rnn_tanh": 1, "rnn_sigmoid": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def initialized(cell: str, scheme: str, seed: int = 0, spectral_norm: float | None = None) -> torch.nn.Module:
    module = make_cell(cell, N_IN, H, generator=generator(100)).double()
    init_recurrent(module, scheme, generator(seed), spectral_norm=spectral_norm)
    return module


def test_default_init_is_pytorch_uniform_and_seeded() -> None:
    rng_before = torch.random.get_rng_state()
    model = SequenceModel("lstm", N_IN, H, 3, "last", generator=generator(1))
    init_default(model, generator(7))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    bound = 1 / math.sqrt(H)
    cell = model.recurrent.cell
    forget = slice(H, 2 * H)
    assert torch.all(cell.bias_ih[forget] == 1.0) and torch.all(cell.bias_hh[forget] == 0.0)  # b_f = 1
    uniform = [cell.weight_ih, cell.weight_hh, cell.bias_ih[:H], cell.bias_ih[2 * H :], cell.bias_hh[:H]]
    for param in [*uniform, *model.head.parameters()]:
        assert param.abs().max() <= bound
        assert param.abs().max() > 0.8 * bound  # uniform over the whole range, not a narrower one
    # init_default draws in the same order as construction: cell, then head.
    constructed = SequenceModel("lstm", N_IN, H, 3, "last", generator=generator(7))
    for a, b in zip(model.parameters(), constructed.parameters(), strict=True):
        assert torch.equal(a, b)
    other = SequenceModel("lstm", N_IN, H, 3, "last", generator=generator(1))
    init_default(other, generator(8))
    assert not torch.equal(other.recurrent.cell.weight_hh, model.recurrent.cell.weight_hh)


def test_default_init_resets_normalization() -> None:
    model = SequenceModel("lstm", N_IN, H, 3, "last", norm="batch", max_len=5)
    with torch.no_grad():
        model.recurrent.norm.hidden.weight.fill_(3.0)
        model.recurrent.norm.hidden.running_mean.fill_(2.0)
    init_default(model, generator())
    assert torch.allclose(model.recurrent.norm.hidden.weight, torch.tensor(0.1))
    assert torch.all(model.recurrent.norm.hidden.running_mean == 0)


@pytest.mark.parametrize("cell", CELLS)
def test_orthogonal_blocks(cell: str) -> None:
    before = make_cell(cell, N_IN, H, generator=generator(100)).double()
    module = initialized(cell, "orthogonal")
    blocks = recurrent_blocks(module)
    assert len(blocks) == GATES[cell]
    eye = torch.eye(H, dtype=torch.float64)
    for block in blocks:
        torch.testing.assert_close(block @ block.T, eye, atol=1e-12, rtol=0)
    assert not torch.equal(blocks[0], blocks[-1]) or len(blocks) == 1
    assert torch.equal(module.weight_ih, before.weight_ih) and torch.equal(module.bias_hh, before.bias_hh)


def test_orthogonal_in_float32_is_orthogonal_to_rounding() -> None:
    module = make_cell("rnn_tanh", N_IN, H)
    init_recurrent(module, "orthogonal", generator())
    torch.testing.assert_close(module.weight_hh @ module.weight_hh.T, torch.eye(H), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_identity_irnn(cell: str) -> None:
    module = initialized(cell, "identity")
    for block in recurrent_blocks(module):
        assert torch.equal(block, torch.eye(H, dtype=torch.float64))
    assert torch.all(module.bias_ih == 0) and torch.all(module.bias_hh == 0)
    assert 0.0005 < module.weight_ih.std().item() < 0.002


def test_identity_input_weights_have_std_0_001() -> None:
    module = make_cell("rnn_relu", 64, 128).double()
    init_recurrent(module, "identity", generator())
    assert abs(module.weight_ih.std().item() - 0.001) < 0.00005
    assert abs(module.weight_ih.mean().item()) < 0.00005


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("spectral_norm", [0.5, 1.0, 3.0])
def test_scaled_blocks_have_exact_sigma_max(cell: str, spectral_norm: float) -> None:
    module = initialized(cell, "scaled", spectral_norm=spectral_norm)
    for block in recurrent_blocks(module):
        sigma = torch.linalg.matrix_norm(block, ord=2).item()
        assert sigma == pytest.approx(spectral_norm, rel=1e-12)


@pytest.mark.parametrize("scheme", ["orthogonal", "identity", "scaled"])
def test_same_seed_same_weights_different_seed_different(scheme: str) -> None:
    norm = 1.5 if scheme == "scaled" else None
    a = initialized("lstm", scheme, seed=5, spectral_norm=norm)
    b = initialized("lstm", scheme, seed=5, spectral_norm=norm)
    c = initialized("lstm", scheme, seed=6, spectral_norm=norm)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    changed = "weight_ih" if scheme == "identity" else "weight_hh"
    assert not torch.equal(getattr(a, changed), getattr(c, changed))


def test_default_scheme_leaves_weights() -> None:
    before = make_cell("gru", N_IN, H, generator=generator(100)).double()
    after = initialized("gru", "default")
    for a, b in zip(before.parameters(), after.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bad_scheme_and_spectral_norm_combinations() -> None:
    module = make_cell("rnn_tanh", N_IN, H)
    with pytest.raises(ValueError, match=r"'xavier'.*default, orthogonal, identity, scaled"):
        init_recurrent(module, "xavier", generator())
    for bad in (None, 0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"'scaled'.*spectral_norm > 0"):
            init_recurrent(module, "scaled", generator(), spectral_norm=bad)
    with pytest.raises(ValueError, match=r"spectral_norm=2.0 with scheme 'orthogonal'"):
        init_recurrent(module, "orthogonal", generator(), spectral_norm=2.0)
    assert INIT_SCHEMES == ("default", "orthogonal", "identity", "scaled")


def test_chrono_lstm() -> None:
    max_len = 50
    module = make_cell("lstm", N_IN, H, generator=generator(100)).double()
    before = {name: p.clone() for name, p in module.named_parameters()}
    init_chrono(module, max_len, generator())
    b_i, b_f, b_g, _ = module.bias_ih.chunk(4)
    assert torch.all(b_f >= 0) and torch.all(b_f <= math.log(max_len - 1))
    assert b_f.max() > 0.8 * math.log(max_len - 1)
    assert torch.equal(b_i, -b_f)
    hh_i, hh_f, _, hh_o = module.bias_hh.chunk(4)
    assert torch.all(hh_i == 0) and torch.all(hh_f == 0)
    assert torch.equal(b_g, before["bias_ih"].chunk(4)[2]) and torch.equal(hh_o, before["bias_hh"].chunk(4)[3])
    assert torch.equal(module.weight_hh, before["weight_hh"])


def test_chrono_gru_sets_update_gate_only() -> None:
    module = make_cell("gru", N_IN, H, generator=generator(100)).double()
    before = module.bias_ih.clone(), module.bias_hh.clone()
    init_chrono(module, 20, generator())
    b_r, b_z, b_n = module.bias_ih.chunk(3)
    assert torch.all(b_z >= 0) and torch.all(b_z <= math.log(19))
    assert torch.all(module.bias_hh.chunk(3)[1] == 0)
    assert torch.equal(b_r, before[0].chunk(3)[0]) and torch.equal(b_n, before[0].chunk(3)[2])
    assert torch.equal(module.bias_hh.chunk(3)[2], before[1].chunk(3)[2])


def test_chrono_is_seeded_and_rejects_vanilla_cells_and_short_lengths() -> None:
    a, b, c = (make_cell("lstm", N_IN, H) for _ in range(3))
    init_chrono(a, 30, generator(1))
    init_chrono(b, 30, generator(1))
    init_chrono(c, 30, generator(2))
    assert torch.equal(a.bias_ih, b.bias_ih) and not torch.equal(a.bias_ih, c.bias_ih)
    for cell in VANILLA_CELLS:
        with pytest.raises(ValueError, match=rf"'{cell}'.*lstm, gru"):
            init_chrono(make_cell(cell, N_IN, H), 30, generator())
    with pytest.raises(ValueError, match="max_len >= 2"):
        init_chrono(a, 1, generator())


@pytest.mark.parametrize("cell", CELLS)
def test_candidate_block_is_the_state_block_of_the_candidate(cell: str) -> None:
    module = make_cell(cell, N_IN, H)
    with torch.no_grad():
        for gate, block in enumerate(module.weight_hh.split(H)):
            block.fill_(gate)
    expected = {"lstm": 2, "gru": 2}.get(cell, 0)  # LSTM (i, f, g, o) -> g; GRU (r, z, n) -> n
    assert torch.all(candidate_block(module) == expected)
    assert candidate_block(module).shape == (H, H) and not candidate_block(module).requires_grad


def test_functions_accept_layer_and_model() -> None:
    model = SequenceModel("gru", N_IN, H, 2, "last")
    layer = RecurrentLayer("lstm", N_IN, H)
    assert find_cell(model) is model.recurrent.cell and find_cell(layer) is layer.cell
    init_recurrent(model, "orthogonal", generator())
    torch.testing.assert_close(candidate_block(model) @ candidate_block(model).T, torch.eye(H), atol=1e-6, rtol=0)
    init_chrono(layer, 10, generator())
    assert set(GATED_CELLS) == {"lstm", "gru"}
    with pytest.raises(ValueError, match="exactly one recurrent cell, found 0"):
        find_cell(model.head)

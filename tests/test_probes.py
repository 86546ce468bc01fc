"""Gradient probes against independent computations: explicit BPTT Jacobians and finite differences."""

import numpy as np
import pytest
import torch

from rnn_gradients.engine.datasets import make_dataset
from rnn_gradients.engine.initialization import init_default, init_recurrent
from rnn_gradients.engine.model import SequenceModel
from rnn_gradients.engine.probes import gradient_profile, probe, recurrent_matrix_norms
from rnn_gradients.engine.tasks import get_task


def tiny_model(cell, norm="none", seed=0, hidden=4, seq_len=6):
    task = get_task("adding")
    model = SequenceModel(cell, task.input_size, hidden, task.output_size, readout="last", norm=norm, max_len=seq_len)
    init_default(model, torch.Generator().manual_seed(seed))
    model.double()
    x, y = task.to_tensors(make_dataset("adding", seq_len, seed=seed, train_size=3, val_size=1, test_size=1).train)
    return task, model, x.double(), y.double()


def test_vanilla_profile_equals_the_product_of_step_jacobians():
    task, model, x, y = tiny_model("rnn_tanh")
    _, profile, _ = gradient_profile(model, task, x, y)

    cell = model.recurrent.cell
    with torch.no_grad():
        h = torch.zeros(x.shape[0], cell.weight_hh.shape[1], dtype=x.dtype)
        states = []
        for x_t in x.unbind(1):
            h = torch.tanh(x_t @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh)
            states.append(h)
        out = states[-1] @ model.head.weight.T + model.head.bias
        # ℓ_b = (o_b − y_b)²  →  ∂ℓ_b/∂h_L = 2 (o_b − y_b) W_hy;   ∂ℓ/∂h_{t−1} = (∂ℓ/∂h_t ⊙ φ'(a_t)) W_hh
        grad = 2 * (out - y) @ model.head.weight
        expected = [None] * len(states)
        for t in range(len(states) - 1, -1, -1):
            expected[t] = grad.norm(dim=1).mean().item()
            grad = (grad * (1 - states[t] ** 2)) @ cell.weight_hh
    np.testing.assert_allclose(profile, expected, rtol=1e-10)
    assert profile[0] < profile[-1]  # the default init is in the vanishing regime


def test_tiny_gradients_are_measured_not_flushed_to_zero():
    """A float32 run with subnormals flushed: the profile must follow the float64 one down to ~1e-35."""
    task, model, x, y = tiny_model("rnn_sigmoid", hidden=8, seq_len=60)
    _, reference, _ = gradient_profile(model, task, x, y)
    torch.set_flush_denormal(True)  # as in training
    try:
        _, profile, _ = gradient_profile(model.float(), task, x.float(), y.float())
    finally:
        torch.set_flush_denormal(False)
    deep = (reference > 1e-35) & (reference < 1e-20)
    assert deep.sum() >= 5  # the sigmoid RNN's gradient does reach that deep within 60 steps
    np.testing.assert_allclose(profile[deep], reference[deep], rtol=1e-3)


@pytest.mark.parametrize("cell_type", ["lstm", "gru", "rnn_sigmoid"])
def test_profile_matches_finite_differences(cell_type):
    task, model, x, y = tiny_model(cell_type, hidden=3, seq_len=5)
    _, profile, _ = gradient_profile(model, task, x, y)
    cell = model.recurrent.cell
    gated_lstm = cell_type == "lstm"

    def per_sequence_loss(b, t, delta):
        """ℓ_b with h_t (1-based) replaced by h_t + delta, run with the cell's own step function."""
        xb, state = x[b : b + 1], None
        h = torch.zeros(1, 3, dtype=x.dtype)
        state = (h, torch.zeros_like(h)) if gated_lstm else h
        for i, x_i in enumerate(xb.unbind(1), start=1):
            state = cell(x_i, state)
            if i == t:
                state = (state[0] + delta, state[1]) if gated_lstm else state + delta
        h_last = state[0] if gated_lstm else state
        return task.loss(model.head(h_last), y[b : b + 1]).item()

    eps = 1e-6
    with torch.no_grad():
        for t in range(1, x.shape[1] + 1):
            norms = []
            for b in range(x.shape[0]):
                grad = []
                for j in range(3):
                    e = torch.zeros(1, 3, dtype=x.dtype)
                    e[0, j] = eps
                    grad.append((per_sequence_loss(b, t, e) - per_sequence_loss(b, t, -e)) / (2 * eps))
                norms.append(np.linalg.norm(grad))
            assert profile[t - 1] == pytest.approx(np.mean(norms), rel=1e-5, abs=1e-12)


def test_probe_leaves_training_state_untouched_and_measures_rms_dphi():
    task, model, x, y = tiny_model("rnn_tanh", norm="batch")
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    model.eval()
    result = probe(model, task, x, y, step=7)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    for name, value in model.named_buffers():
        torch.testing.assert_close(value, buffers[name])
    assert result.step == 7 and result.grad_norm_h.shape == (6,)
    _, states = model.train().forward_with_states(x)
    rms = torch.stack([((1 - h.double() ** 2) ** 2).mean() for h in states]).mean().sqrt().item()
    assert result.rms_dphi == pytest.approx(rms, rel=1e-9)
    assert 0 < result.rms_dphi <= 1


def test_matrix_norms_of_orthogonal_and_scaled_blocks():
    _, model, _, _ = tiny_model("rnn_tanh", hidden=16)
    init_recurrent(model.recurrent.cell, "orthogonal", torch.Generator().manual_seed(0))
    rho, sigma, rms = recurrent_matrix_norms(model)
    # every singular value of an orthogonal matrix is 1: ρ = σ_max = σ_rms = 1
    assert rho == pytest.approx(1.0, abs=1e-6) and sigma == pytest.approx(1.0, abs=1e-6)
    assert rms == pytest.approx(1.0, abs=1e-6)
    init_recurrent(model.recurrent.cell, "scaled", torch.Generator().manual_seed(0), spectral_norm=3.0)
    rho, sigma, rms = recurrent_matrix_norms(model)
    assert sigma == pytest.approx(3.0, rel=1e-6) and rho <= sigma + 1e-9
    block = model.recurrent.cell.weight_hh.detach().double()
    assert rms == pytest.approx(torch.linalg.svdvals(block).square().mean().sqrt().item(), rel=1e-6)
    assert rms < sigma

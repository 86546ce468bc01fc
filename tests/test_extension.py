"""The compiled recurrence loops (``engine/csrc/recurrence.cpp``) against the plain-torch loops: bit for bit.

The extension is an accelerator, never a second numerics: every vanilla cell and the GRU under every
normalization, and the LSTM under layer and batch norm, give the same outputs, gradients and batch-norm statistics
through it as through the Python loops of :mod:`rnn_gradients.engine.bptt`, :mod:`~rnn_gradients.engine.gru_norm_bptt`
and :mod:`~rnn_gradients.engine.lstm_norm_bptt` (which ``tests/test_engine_equivalence.py`` checks against
autograd), and a whole run writes the same files with it and without it (``RNN_GRADIENTS_EXTENSION=0``). Where it
cannot be built the engine falls back to the plain loops; under CI (``CI=true``) it must build, since CI is where a
fresh machine proves that the README's install gives it.
"""

from __future__ import annotations

import json
import os
import types

import pytest
import torch
from test_engine_equivalence import datasets, results, run_spec  # noqa: F401 (datasets is a fixture)

from rnn_gradients.engine import bptt, extension, fused_batch_norm
from rnn_gradients.engine.normalization import NORMS
from rnn_gradients.engine.training import train_run

KERNELS = extension.kernels()
needs_kernels = pytest.mark.skipif(KERNELS is None, reason=f"the extension is not in use: {extension.status()}")


def test_the_extension_builds_and_is_used_under_ci() -> None:
    if os.environ.get("CI") != "true" and KERNELS is None:
        pytest.skip(f"not under CI, and {extension.status()}")
    assert KERNELS is not None, extension.status()
    assert extension.status() == f"compiled ({torch.backends.cpu.get_cpu_capability()})"


SHAPES = [(1, 64, 64), (5, 3, 7), (60, 64, 64), (200, 16, 33), (17, 5, 13)]
"""(T, B, H) of every bit-for-bit comparison: T = 1, short and long T, blocks of whole vectors and of scalar tails."""


def special_inputs(length: int, batch: int, hidden: int, seed: int) -> torch.Tensor:
    """(T, B, H) input parts with NaN, ±Inf and a saturating value in them (where the steps allow)."""
    u = torch.randn(length, batch, hidden, generator=torch.Generator().manual_seed(seed)) * 3
    u[0, 0, : min(3, hidden)] = torch.tensor([float("nan"), float("inf"), -float("inf")])[: min(3, hidden)]
    u[-1, -1, -1] = 90.0
    return u


@needs_kernels
@pytest.mark.parametrize("norm", extension.NORM_CASES)
@pytest.mark.parametrize("kind", list(bptt.COMPILED_KINDS))
@pytest.mark.parametrize(("length", "batch", "hidden"), SHAPES)
@pytest.mark.parametrize("inputs", ["finite", "special"])
@pytest.mark.parametrize("last", [True, False])
def test_compiled_loops_equal_the_python_loops_bit_for_bit(
    norm: str, kind: str, length: int, batch: int, hidden: int, inputs: str, last: bool
) -> None:
    """Outputs, ∂L/∂u, ∂L/∂W_hh (and the normalization's gain and shift), the running statistics batch norm
    updates and the no-graph evaluation forward: the same bits (NaN where the Python loop has NaN), at T = 1, short
    and long T, blocks of whole vectors and of scalar tails, from finite inputs and from NaN and ±Inf."""
    generator = torch.Generator().manual_seed(length * 1000 + hidden)
    u = special_inputs(length, batch, hidden, length)
    if inputs == "finite":
        u = torch.randn(length, batch, hidden, generator=generator) * 3
    w_hh = torch.randn(hidden, hidden, generator=generator) * (0.9 / hidden**0.5)
    gain, beta = 1 + torch.rand(hidden, generator=generator), torch.randn(hidden, generator=generator)
    grads = torch.randn(length, batch, hidden, generator=generator)
    grad = grads[-1] if last else grads
    python = extension._recurrence(norm, u, w_hh, gain, beta, kind, last, grad, None)
    compiled = extension._recurrence(norm, u, w_hh, gain, beta, kind, last, grad, KERNELS)
    assert len(python) == len(compiled)
    for index, (want, got) in enumerate(zip(python, compiled, strict=True)):
        assert extension.same_bits(got, want), f"tensor {index} differs"
    if inputs == "finite" and norm != "batch-eval":
        assert all(bool(t.isfinite().all()) for t in python)  # the comparison is not one of NaNs


def gated_inputs(
    gates: int, length: int, batch: int, hidden: int, special: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, B, G·H) input parts of a gated cell, drawn from ``generator``, with NaN, ±Inf at the start of every gate
    block of one row and a saturating value where ``special``; then W_hh (G·H, H)."""
    u = torch.randn(length, batch, gates * hidden, generator=generator) * 3
    if special:
        for block in range(gates):
            u[0, 0, block * hidden : block * hidden + min(3, hidden)] = torch.tensor(
                [float("nan"), float("inf"), -float("inf")]
            )[: min(3, hidden)]
        u[-1, -1, -1] = 90.0
    return u, torch.randn(gates * hidden, hidden, generator=generator) / hidden**0.5


@needs_kernels
@pytest.mark.parametrize(("length", "batch", "hidden"), SHAPES)
@pytest.mark.parametrize("inputs", ["finite", "special"])
@pytest.mark.parametrize("last", [True, False])
@pytest.mark.parametrize("norm", ["none", *extension.NORM_CASES[1:]])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_gru_equals_the_python_gru_bit_for_bit(
    length: int, batch: int, hidden: int, inputs: str, last: bool, norm: str, threads: int
) -> None:
    """The GRU, plain (:class:`~rnn_gradients.engine.bptt.GRURecurrence`) and under layer norm and batch norm in
    training and evaluation (:class:`~rnn_gradients.engine.gru_norm_bptt.GRUNormRecurrence`): outputs, ∂L/∂u,
    ∂L/∂W_hh, ∂L/∂b_hh, the normalization's gain and shift and batch norm's running statistics, with NaN and ±Inf
    in the reset, update and candidate blocks of the input parts. On one thread (batch norm's arithmetic written
    out in the loop, its gradient written over z_t) and on two (ATen's batch-norm kernel)."""
    generator = torch.Generator().manual_seed(length * 1000 + hidden)
    u, w_hh = gated_inputs(3, length, batch, hidden, inputs == "special", generator)  # r, z and n
    b_hh = torch.randn(3 * hidden, generator=generator)
    grads = torch.randn(length, batch, hidden, generator=generator)
    grad = grads[-1] if last else grads
    with extension._threads(threads):
        python = extension._gru_recurrence(norm, u, w_hh, b_hh, last, grad, None)
        compiled = extension._gru_recurrence(norm, u, w_hh, b_hh, last, grad, KERNELS)
    for index, (want, got) in enumerate(zip(python, compiled, strict=True)):
        assert extension.same_bits(got, want), f"tensor {index} differs"
    if inputs == "finite":
        assert all(bool(t.isfinite().all()) for t in python)


@needs_kernels
@pytest.mark.parametrize(("length", "batch", "hidden"), SHAPES)
@pytest.mark.parametrize("inputs", ["finite", "special"])
@pytest.mark.parametrize("last", [True, False])
@pytest.mark.parametrize("norm", extension.NORM_CASES[1:])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_lstm_under_a_norm_equals_the_python_lstm_bit_for_bit(
    length: int, batch: int, hidden: int, inputs: str, last: bool, norm: str, threads: int
) -> None:
    """The LSTM under layer norm and batch norm in training and evaluation
    (:class:`~rnn_gradients.engine.lstm_norm_bptt.LSTMNormRecurrence`): outputs, ∂L/∂u, ∂L/∂W_hh, both
    normalizations' gains and shifts and batch norm's running statistics, with NaN and ±Inf in the input, forget,
    candidate and output blocks of the input parts; on one thread and on two (as the GRU's)."""
    generator = torch.Generator().manual_seed(length * 1000 + hidden)
    u, w_hh = gated_inputs(4, length, batch, hidden, inputs == "special", generator)  # i, f, g and o
    grads = torch.randn(length, batch, hidden, generator=generator)
    grad = grads[-1] if last else grads
    with extension._threads(threads):
        python = extension._lstm_recurrence(norm, u, w_hh, last, grad, None)
        compiled = extension._lstm_recurrence(norm, u, w_hh, last, grad, KERNELS)
    assert len(python) == len(compiled)
    for index, (want, got) in enumerate(zip(python, compiled, strict=True)):
        assert extension.same_bits(got, want), f"tensor {index} differs"
    if inputs == "finite":
        assert all(bool(t.isfinite().all()) for t in python)


@needs_kernels
@pytest.mark.parametrize("norm", ["batch-train", "batch-eval"])
@pytest.mark.parametrize("kind", list(bptt.COMPILED_KINDS))
@pytest.mark.parametrize(("length", "batch", "hidden"), SHAPES)
@pytest.mark.parametrize("inputs", ["finite", "special"])
@pytest.mark.parametrize("last", [True, False])
def test_fused_batch_norm_equals_the_reference_path_bit_for_bit(
    norm: str, kind: str, length: int, batch: int, hidden: int, inputs: str, last: bool
) -> None:
    """The vanilla cell under batch norm with its input part normalized step by step in the compiled loop
    (:mod:`~rnn_gradients.engine.fused_batch_norm`), against the input part's batch norm over the whole sequence
    by autograd and the Python loops: outputs, ∂L/∂v, ∂L/∂W_hh, the bias's and both gains' gradients and both
    running statistics, on one thread; in evaluation with fewer running rows than steps. H = 7, 13 and 33 put the
    whole (B, T·H) block's last channels, whose gradient ATen computes without an FMA, inside a step."""
    generator = torch.Generator().manual_seed(length * 1000 + hidden)
    v = special_inputs(length, batch, hidden, length).transpose(0, 1).contiguous()
    if inputs == "finite":
        v = torch.randn(batch, length, hidden, generator=generator) * 3
    w_hh = torch.randn(hidden, hidden, generator=generator) * (0.9 / hidden**0.5)
    bias = torch.randn(hidden, generator=generator)
    grads = torch.randn(length, batch, hidden, generator=generator)
    grad = grads[-1] if last else grads
    with extension._one_thread():
        reference = extension._fused_batch_norm(norm, v, w_hh, bias, kind, last, grad, None)
        fused = extension._fused_batch_norm(norm, v, w_hh, bias, kind, last, grad, KERNELS)
    for index, (want, got) in enumerate(zip(reference, fused, strict=True)):
        assert extension.same_bits(got, want), f"tensor {index} differs"
    if inputs == "finite" and norm == "batch-train":  # (evaluation's drawn statistics let a ReLU cell explode)
        assert all(bool(t.isfinite().all()) for t in reference)


def _normalized_recurrence(cell: str, v: torch.Tensor, kernels: types.ModuleType | None) -> torch.Tensor:
    """h_1..h_T of a GRU or LSTM under layer norm (``cell``) from input projections ``v`` (T, B, G·H)."""
    from rnn_gradients.engine import gru_norm_bptt, lstm_norm_bptt

    draws = torch.Generator().manual_seed(5)
    hidden = v.shape[2] // (3 if cell == "gru" else 4)
    w_hh = torch.randn(v.shape[2], hidden, generator=draws).requires_grad_()
    input_norm, hidden_norm = (extension._step_norm("layer", v.shape[2], draws, shift=False) for _ in range(2))
    shift = torch.zeros(v.shape[2], requires_grad=True)
    if cell == "gru":
        b_hh = torch.zeros(v.shape[2], requires_grad=True)
        return gru_norm_bptt.GRUNormRecurrence.apply(
            v, w_hh, b_hh, input_norm.weight, shift, hidden_norm.weight, hidden_norm.bias, input_norm, hidden_norm,
            False, True, kernels,
        )  # fmt: skip
    cell_norm = extension._step_norm("layer", hidden, draws, shift=True)
    return lstm_norm_bptt.LSTMNormRecurrence.apply(
        v, w_hh, input_norm.weight, shift, hidden_norm.weight, hidden_norm.bias, cell_norm.weight, cell_norm.bias,
        input_norm, hidden_norm, cell_norm, False, True, kernels,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("cell", "compiled"), [("gru", False), ("gru", True), ("lstm", False), ("lstm", True), ("vanilla-batch", True)]
)
def test_a_normalized_recurrence_writes_its_gradients_over_its_buffers_and_says_so(cell: str, compiled: bool) -> None:
    """The backward of the normalized GRU and LSTM (both loops) and of the fused vanilla batch norm writes ∂L/∂z_t
    and ∂L/∂v over the forward's z and v (bptt.consume): a second backward through the same forward raises, and so
    does the backward of any other node that saved v, instead of reading gradients as values."""
    if compiled and KERNELS is None:
        pytest.skip(f"the extension is not in use: {extension.status()}")
    kernels = KERNELS if compiled else None
    generator = torch.Generator().manual_seed(11)

    def forward(v: torch.Tensor) -> torch.Tensor:
        if cell != "vanilla-batch":
            return _normalized_recurrence(cell, v, kernels)
        _, steps, hidden = v.shape
        w_hh = torch.randn(hidden, hidden, generator=generator).requires_grad_()
        norms = [extension._step_norm("batch-train", hidden, generator, shift=False, rows=steps) for _ in range(2)]
        return fused_batch_norm.FusedVanillaBatchNorm.apply(
            v, norms[0].weight.repeat(steps), torch.zeros(hidden).expand_as(v), w_hh, norms[1].weight,
            (norms[0].running_mean, norms[0].running_var), (norms[1].running_mean, norms[1].running_var), "rnn_tanh",
            True, (0.1, 0.1), (1e-5, 1e-5), False, kernels,
        )  # fmt: skip

    shape = (3, 6, 4) if cell == "vanilla-batch" else (6, 3, 4 * (3 if cell == "gru" else 4))
    with extension._threads(1):
        v = torch.randn(*shape, generator=generator).requires_grad_()
        outputs = forward(v)
        outputs.sum().backward(retain_graph=True)
        assert v.grad is not None and bool(v.grad.isfinite().all())
        with pytest.raises(RuntimeError, match="a second backward through a normalized recurrence"):
            outputs.sum().backward()
        projections = torch.randn(*shape, generator=generator).requires_grad_()
        v = projections * 1.0
        saved = (v * v).sum()  # saves v for its backward
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            (forward(v).sum() + saved).backward()


@needs_kernels
def test_fused_batch_norm_runs_where_its_arithmetic_is_atens() -> None:
    """One thread and a batch of more than one: with more threads, or one example, ATen's batch norm accumulates
    differently, and the reference path runs."""
    v = torch.zeros(4, 3, 5)
    with extension._one_thread():
        assert fused_batch_norm.applies(KERNELS, v)
        assert not fused_batch_norm.applies(KERNELS, v[:1])
        assert not fused_batch_norm.applies(KERNELS, v.double())
        assert not fused_batch_norm.applies(None, v)
    with extension._threads(2):
        assert not fused_batch_norm.applies(KERNELS, v)


def _nudge(t: torch.Tensor, index: int) -> None:
    """Move entry ``index`` of ``t`` (flattened) by one ulp, in place."""
    flat = t.detach().view(-1)
    flat[index] = torch.nextafter(flat[index], torch.tensor(2.0))


NUDGED_ARGUMENT = {"gru_norm_backward": 4, "lstm_norm_backward": 3}
"""Which argument the wrong module's function writes one ulp off, where not the first: the normalized gated cells'
backwards write ∂L/∂h_t (which nothing reads afterwards) first, and return ∂L/∂v, the gradient of their input
projections, in their fifth (GRU) and fourth (LSTM) arguments."""


def _off_by_one_ulp(function: str) -> object:
    """``KERNELS``'s ``function``, wrong by one ulp in one element of what it writes or returns."""
    right = getattr(KERNELS, function)

    def wrong(*args: object) -> object:
        result = right(*args)
        if function == "gradient_norms":
            total = torch.tensor(result[0], dtype=torch.float64)
            return [float(torch.nextafter(total, torch.tensor(1e300, dtype=torch.float64))), *result[1:]]
        written = args[NUDGED_ARGUMENT.get(function, 0)]
        if isinstance(written, list):
            _nudge(written[0], -1)  # Adam's first parameter (whose first entry the check's NaN gradient reaches)
        else:
            _nudge(written[-1], 0)  # a forward's last state, or a backward's dL/d(input part) of the last step
        return result

    return wrong


@needs_kernels
@pytest.mark.parametrize(
    "function",
    [
        "vanilla_forward",
        "layer_norm_forward",
        "layer_norm_backward",
        "batch_norm_forward",
        "batch_norm_backward",
        "batch_norm_fused_forward",
        "batch_norm_fused_backward",
        "gru_forward",
        "gru_norm_forward",
        "gru_norm_backward",
        "lstm_norm_forward",
        "lstm_norm_backward",
        "gradient_norms",
        "adam_update",
    ],
)
def test_the_load_check_rejects_a_module_that_rounds_one_element_differently(function: str) -> None:
    """:func:`extension._agrees_with_python` is what keeps a miscompiled or mismatched build out of the runs."""
    wrong = types.SimpleNamespace(**{name: getattr(KERNELS, name) for name in dir(KERNELS) if not name.startswith("_")})
    setattr(wrong, function, _off_by_one_ulp(function))
    assert extension._agrees_with_python(KERNELS)
    assert not extension._agrees_with_python(wrong)


def test_same_bits_tells_apart_what_equality_hides() -> None:
    zero = torch.tensor([0.0])
    assert extension.same_bits(torch.tensor([float("nan"), 1.0]), torch.tensor([float("nan"), 1.0]))
    assert not extension.same_bits(zero, -zero)  # 0.0 == -0.0, but the bits differ
    assert not extension.same_bits(torch.tensor([1.0]), torch.nextafter(torch.tensor([1.0]), torch.tensor([2.0])))


@pytest.mark.parametrize(
    ("cell", "norm"),
    [(cell, norm) for cell in ("rnn_tanh", "rnn_relu", "rnn_sigmoid") for norm in NORMS]
    + [(cell, norm) for cell in ("gru", "lstm") for norm in NORMS],
)
def test_a_run_writes_the_same_files_with_and_without_the_extension(
    tmp_path,
    datasets,  # noqa: F811 (the fixture imported above)
    monkeypatch,
    cell: str,
    norm: str,
) -> None:
    strategy = {"none": "none", "layer": "ln", "batch": "bn"}[norm]
    spec = run_spec(cell=cell, strategy=strategy, strategy_params={} if norm == "none" else {"norm": norm})
    train_run(spec, datasets[0], tmp_path / "as-configured")
    monkeypatch.setenv("RNN_GRADIENTS_EXTENSION", "0")
    extension.kernels.cache_clear()
    try:
        assert extension.kernels() is None
        assert extension.status() == "plain torch (RNN_GRADIENTS_EXTENSION=0)"
        train_run(spec, datasets[0], tmp_path / "plain")
    finally:
        monkeypatch.delenv("RNN_GRADIENTS_EXTENSION")
        extension.kernels.cache_clear()
    assert results(tmp_path / "as-configured") == results(tmp_path / "plain")


@needs_kernels
def test_the_load_check_runs_once_per_machine_and_its_verdict_is_kept(tmp_path, monkeypatch) -> None:
    """The first process on a machine checks and writes its verdict; the next ones read it; a file that holds
    neither verdict is checked again, another machine (another key) has its own, a cache that cannot be written
    keeps the verdict for the process."""
    assert extension._verified(KERNELS, tmp_path)
    (verdict,) = tmp_path.glob("check-*.txt")
    assert verdict.read_text() == "exact\n"

    def checked_again(module: types.ModuleType) -> bool:
        raise AssertionError("the check ran although its verdict was kept")

    monkeypatch.setattr(extension, "_agrees_with_python", checked_again)
    assert extension._verified(KERNELS, tmp_path)
    verdict.write_text("not exact\n")
    assert not extension._verified(KERNELS, tmp_path)
    verdict.write_text("exa")  # half a verdict (never written so: the write is atomic): checked again
    monkeypatch.setattr(extension, "_agrees_with_python", lambda module: False)
    assert not extension._verified(KERNELS, tmp_path)
    assert verdict.read_text() == "not exact\n"
    monkeypatch.setattr(extension, "_machine_key", lambda: "another")
    monkeypatch.setattr(extension, "_agrees_with_python", lambda module: True)
    assert extension._verified(KERNELS, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["check-another.txt", verdict.name])
    assert extension._verified(KERNELS, tmp_path / "missing")  # not writable: no verdict kept, no error
    assert not (tmp_path / "missing").exists()


@needs_kernels
def test_a_cell_without_compiled_loops_still_takes_the_compiled_update(
    tmp_path,
    datasets,  # noqa: F811 (the fixture imported above)
) -> None:
    """The LSTM and the normalized GRU have no compiled loops, but their steps' norms and Adam updates run compiled,
    and ``runtime.json`` says so (that the files are the same without them: the test above)."""
    for cell, strategy, params in (("lstm", "none", {}), ("gru", "ln", {"norm": "layer"})):
        spec = run_spec(cell=cell, strategy=strategy, strategy_params=params)
        train_run(spec, datasets[0], tmp_path / cell)
        runtime = json.loads((tmp_path / cell / "runtime.json").read_text())
        assert runtime["compiled_kernels"] == f"compiled ({torch.backends.cpu.get_cpu_capability()})"


def test_a_failed_build_falls_back_to_plain_torch_and_is_not_retried(tmp_path, monkeypatch) -> None:
    """A source that does not compile: a warning, the plain loops, the log kept; the next process (here: the next
    call after the cache is cleared) does not build again."""
    broken = tmp_path / "recurrence.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(extension, "SOURCES", (broken,))
    monkeypatch.setenv("RNN_GRADIENTS_EXTENSION_DIR", str(tmp_path / "cache"))
    extension.kernels.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="did not build"):
            assert extension.kernels() is None
        assert extension.status() == "plain torch (build failed)"
        (log,) = (tmp_path / "cache").glob("*/build-failed.txt")
        assert "this is not C++" in log.read_text() or "error" in log.read_text()
        extension.kernels.cache_clear()
        with pytest.warns(RuntimeWarning, match="an earlier build failed"):
            assert extension.kernels() is None
    finally:
        monkeypatch.undo()
        extension.kernels.cache_clear()
    assert (extension.kernels() is None) == (KERNELS is None)

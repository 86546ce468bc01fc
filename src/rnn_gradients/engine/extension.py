"""The compiled kernels (``csrc/``): built on first use, used only where they are exact.

The hand-written recurrences (:mod:`~rnn_gradients.engine.bptt`: the vanilla cells and the GRU;
:mod:`~rnn_gradients.engine.gru_norm_bptt`, :mod:`~rnn_gradients.engine.lstm_norm_bptt`: the gated cells under a
normalization) spend most of a step outside their GEMMs, on one torch call per elementwise op and time step.
``csrc/recurrence.cpp`` runs the same time loops in C++: the same ATen GEMM calls, and each step's elementwise work in
one pass over its (B, H) block with the arithmetic of the ATen kernels the Python loop calls, so its results are the
Python path's bit for bit. ``csrc/update.cpp`` does the rest of every step's small work in one call each: the gradient
norms (the same ATen ops as :func:`~rnn_gradients.engine.training.gradient_norms`) and Adam's update of every parameter
(the arithmetic of :class:`~rnn_gradients.engine.optimizers.Adam`'s torch ops, per element). It is an accelerator,
never a second numerics: :func:`kernels` returns it only when

- it is not switched off (``RNN_GRADIENTS_EXTENSION=0``),
- torch's CPU kernels run with an instruction set it can be compiled for (``torch.backends.cpu``: AVX512, AVX2 or
  DEFAULT), so that it uses the same vector width and the same Sleef functions as they do,
- it compiles (``torch.utils.cpp_extension``: a C++17 compiler and ninja; about 30 s, once per machine, torch and
  source version, cached under ``$XDG_CACHE_HOME/rnn_gradients``, ``~/.cache`` by default, or
  ``RNN_GRADIENTS_EXTENSION_DIR``), and
- it passes :func:`_agrees_with_python` on this machine: forward states and gradients bit-identical to the Python
  loop for every vanilla cell and the GRU under every normalization and the LSTM under layer and batch norm, with
  NaN, ±Inf and blocks whose size is no multiple of the vector width, and the norms and 30 Adam updates
  bit-identical to the torch ops. The check costs 0.31–0.45 s (0.23–0.57 before the LSTM joined it, on the same
  host), so its verdict is kept beside the build, one file per machine (:func:`_machine_key`: the CPU model,
  torch's MKL and oneDNN versions, the numerics variables and the check's own source), and the next process on the
  same machine reads it instead of checking again.

Otherwise the engine runs the plain-torch code, which gives the same results more slowly, and :func:`status`
says why. Runs are therefore the same runs with or without it. Nothing is built or checked until a training step
(or an evaluation on a hand-written path) asks for it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from rnn_gradients.engine.normalization import Normalizer

CSRC = Path(__file__).with_name("csrc")
SOURCES = (CSRC / "recurrence.cpp", CSRC / "update.cpp")
"""The compiled module's translation units; with ``HEADERS``, what its build directory's name hashes."""
HEADERS = (CSRC / "elementwise.h",)

# The compiler flags of ATen's own kernels for each instruction set (the vector width and Sleef variant follow).
_CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
    "AVX2": ["-mavx2", "-mfma", "-mf16c"],
    "DEFAULT": [],
}
_COMMON_FLAGS = ["-O3", "-ffp-contract=off"]

NOT_USED = "not used (this process has not trained)"
_status = NOT_USED


def status() -> str:
    """How this process's compiled kernels ran, as ``runtime.json`` records it: ``compiled (<capability>)``,
    ``plain torch (<why>)`` (the warning at the fallback says more), or :data:`NOT_USED` before the first training
    step (or evaluation of a vanilla cell or the GRU) asked for them."""
    return _status


def enabled() -> bool:
    """Whether the compiled loops are wanted at all (``RNN_GRADIENTS_EXTENSION`` is not ``0``)."""
    return os.environ.get("RNN_GRADIENTS_EXTENSION", "1") != "0"


@cache
def kernels() -> ModuleType | None:
    """The compiled module, built on first use, or None where it is switched off, cannot be built or is not exact."""
    global _status
    if not enabled():
        _status = "plain torch (RNN_GRADIENTS_EXTENSION=0)"
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in _CAPABILITY_FLAGS:
        _status = f"plain torch (no build for CPU capability {capability})"
        return None
    try:
        module, directory = _load(capability)
    except Exception as error:  # no compiler, no ninja, a build error: the plain loops still run
        _status = "plain torch (build failed)"
        warnings.warn(f"recurrence.cpp did not build, the plain-torch loops run: {error}", RuntimeWarning, stacklevel=2)
        return None
    if not _verified(module, directory):
        _status = "plain torch (not bit-identical here)"
        warnings.warn(
            "recurrence.cpp does not reproduce the plain-torch loops bit for bit on this machine; they run instead",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    _status = f"compiled ({capability})"
    return module


def _machine_key() -> str:
    """What the check's verdict depends on beyond the build itself (whose directory names the source, the flags,
    torch and Python): the CPU model, torch's MKL and oneDNN versions, the numerics variables, and the check
    itself (this module's source: a check that covers more runs again, even where the build is unchanged), hashed."""
    from rnn_gradients.engine.machine import cpu_model, library_versions, numerics_settings

    check = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    identity = "\0".join([cpu_model(), library_versions(), numerics_settings(), check])
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def _verified(module: ModuleType, directory: Path) -> bool:
    """:func:`_agrees_with_python` on this machine, run once and its verdict kept in ``directory`` (``exact`` or
    ``not exact``; written atomically, so that processes checking side by side cannot leave half a file)."""
    verdict = directory / f"check-{_machine_key()}.txt"
    kept = verdict.read_text() if verdict.is_file() else None
    if kept in ("exact\n", "not exact\n"):
        return kept == "exact\n"
    with torch.enable_grad():  # the first call may come from an evaluation, under no_grad
        exact = _agrees_with_python(module)
    partial = verdict.with_name(f"{verdict.name}.{os.getpid()}.tmp")
    try:
        partial.write_text("exact\n" if exact else "not exact\n")
        os.replace(partial, verdict)
    except OSError:  # a read-only cache: the verdict holds for this process, the next one checks again
        partial.unlink(missing_ok=True)
    return exact


def _flags(capability: str) -> list[str]:
    return [*_COMMON_FLAGS, *_CAPABILITY_FLAGS[capability], f"-DCPU_CAPABILITY={capability}"] + (
        [f"-DCPU_CAPABILITY_{capability}"] if capability != "DEFAULT" else []
    )


def _cache_root() -> Path:
    explicit = os.environ.get("RNN_GRADIENTS_EXTENSION_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnn_gradients" / "extensions"


def _load(capability: str) -> tuple[ModuleType, Path]:
    """Import the built module, building it first where it is missing (one builder at a time per cache); with the
    directory it was built in."""
    flags = _flags(capability)
    code = [path.read_bytes() for path in (*SOURCES, *HEADERS)]
    key = hashlib.sha256(
        b"\0".join([*code, " ".join(flags).encode(), torch.__version__.encode(), sys.version.encode()])
    ).hexdigest()[:12]
    name = f"recurrence_{capability.lower()}_{key}"
    directory = _cache_root() / name
    library, failure = directory / f"{name}.so", directory / "build-failed.txt"
    if not library.exists():
        directory.mkdir(parents=True, exist_ok=True)
        # flock, not torch's lock file: the kernel releases it when a builder dies, so a killed build never
        # leaves the next process waiting forever; holding it, any lock file torch left behind is stale.
        with open(directory.parent / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if failure.exists():  # tried once: a failed build is not retried by every training process
                raise RuntimeError(f"an earlier build failed; its log: {failure}")
            if not library.exists():
                (directory / "lock").unlink(missing_ok=True)
                from torch.utils.cpp_extension import load  # imported only to build: it costs ~0.3 s

                try:
                    sources = [str(path) for path in SOURCES]
                    load(name, sources, extra_cflags=flags, build_directory=str(directory), verbose=False)
                except Exception as error:
                    failure.write_text(f"{type(error).__name__}: {error}\n")
                    raise RuntimeError(f"the build failed; its log: {failure}") from error
    spec = importlib.util.spec_from_file_location(name, library)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {library}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, directory


def _agrees_with_python(module: ModuleType) -> bool:
    """Whether ``module``'s loops give the Python loops' results bit for bit, here.

    Every vanilla cell and the GRU under no normalization, layer norm and batch norm (training and evaluation),
    and the LSTM under the last three, at (B, H) = (64, 64) (whole vectors), (3, 7) (scalar tails only) and
    (5, 13) (both), from inputs with NaN, ±Inf and large values, for a model read out at every step and at the last
    one: the outputs, every gradient, the batch-norm running statistics after the step and the no-graph forward of
    evaluation (where the compiled module runs it).
    """
    from rnn_gradients.engine import bptt

    generator = torch.Generator().manual_seed(0)
    for batch, hidden in ((64, 64), (3, 7), (5, 13)):
        finite = torch.randn(6, batch, hidden, generator=generator) * 3
        special = finite.clone()  # (batch norm spreads a NaN over the batch: hence the finite inputs too)
        special[1, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
        special[2, -1, -1] = 90.0
        w_hh = torch.randn(hidden, hidden, generator=generator) / hidden**0.5
        gain, beta = 1 + torch.rand(hidden, generator=generator), torch.randn(hidden, generator=generator)
        grads = torch.randn(6, batch, hidden, generator=generator)
        cases = itertools.product((finite, special), bptt.COMPILED_KINDS, NORM_CASES, (True, False))
        for u, kind, norm, last in cases:
            grad = grads[-1] if last else grads
            python, compiled = (
                _recurrence(norm, u, w_hh, gain, beta, kind, last, grad, kernels) for kernels in (None, module)
            )
            if not all(map(same_bits, python, compiled)):
                return False
        gates, gates_special, w_gates = _gate_inputs(3, batch, hidden, generator)
        b_gates = torch.randn(3 * hidden, generator=generator)
        for u, norm, last in itertools.product((gates, gates_special), ("none", *NORM_CASES[1:]), (True, False)):
            grad = grads[-1] if last else grads
            python, compiled = (
                _gru_recurrence(norm, u, w_gates, b_gates, last, grad, kernels) for kernels in (None, module)
            )
            if not all(map(same_bits, python, compiled)):
                return False
        lstm_gates, lstm_special, w_lstm = _gate_inputs(4, batch, hidden, generator)
        for u, norm, last in itertools.product((lstm_gates, lstm_special), NORM_CASES[1:], (True, False)):
            grad = grads[-1] if last else grads
            python, compiled = (_lstm_recurrence(norm, u, w_lstm, last, grad, kernels) for kernels in (None, module))
            if not all(map(same_bits, python, compiled)):
                return False
    return all(check(module, generator) for check in (_fused_batch_norm_agrees, _norms_agree, _adam_agrees))


def _gate_inputs(
    gates: int, batch: int, hidden: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The input parts of a gated cell's check, drawn from ``generator``: finite ones (6, B, G·H), the same with
    NaN, ±Inf at the first and last gates of one row and a large value, and W_hh (G·H, H)."""
    finite = torch.randn(6, batch, gates * hidden, generator=generator) * 3
    special = finite.clone()
    special[1, 0, :3] = special[1, 0, -3:] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    special[2, -1, -1] = 90.0
    return finite, special, torch.randn(gates * hidden, hidden, generator=generator) / hidden**0.5


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """torch on ``count`` threads inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _one_thread() -> AbstractContextManager[None]:
    """torch on one thread inside the block, as training runs."""
    return _threads(1)


def _fused_batch_norm_agrees(module: ModuleType, generator: torch.Generator) -> bool:
    """Whether :mod:`~rnn_gradients.engine.fused_batch_norm` through ``module`` gives the reference path's results
    bit for bit, on one thread (the only place it runs): every vanilla cell, training and evaluation, read out at
    every step and at the last one, at (B, H) = (64, 64), (3, 7) and (5, 13), from finite inputs and from NaN, ±Inf
    and large ones."""
    from rnn_gradients.engine import bptt

    with _one_thread():
        for batch, hidden in ((64, 64), (3, 7), (5, 13)):
            finite = torch.randn(batch, 6, hidden, generator=generator) * 3
            special = finite.clone()
            special[0, 1, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
            special[-1, 2, -1] = 90.0
            w_hh = torch.randn(hidden, hidden, generator=generator) / hidden**0.5
            bias = torch.randn(hidden, generator=generator)
            grads = torch.randn(6, batch, hidden, generator=generator)
            modes = ("batch-train", "batch-eval")
            cases = itertools.product((finite, special), bptt.COMPILED_KINDS, modes, (True, False))
            for v, kind, norm, last in cases:
                grad = grads[-1] if last else grads
                reference, fused = (
                    _fused_batch_norm(norm, v, w_hh, bias, kind, last, grad, kernels) for kernels in (None, module)
                )
                if not all(map(same_bits, reference, fused)):
                    return False
    return True


def _norms_agree(module: ModuleType, generator: torch.Generator) -> bool:
    """Whether ``module``'s gradient norms are :func:`~rnn_gradients.engine.training.gradient_norms`' bit for bit,
    for gradients of several sizes in three groups (one empty), finite and with a NaN or an Inf."""
    from rnn_gradients.engine.training import gradient_norms

    grads = [torch.randn(size, generator=generator) * 10.0**k for k, size in enumerate((4096, 13, 1, 200))]
    group_of = torch.tensor([0, 2, 0, 2])
    for special in (None, float("nan"), float("inf")):
        if special is not None:
            grads[1][3] = special
        python, compiled = gradient_norms(grads, group_of, 3), module.gradient_norms(grads, group_of, 3)
        if not same_bits(torch.tensor(python, dtype=torch.float64), torch.tensor(compiled, dtype=torch.float64)):
            return False
    return True


def _adam_agrees(module: ModuleType, generator: torch.Generator) -> bool:
    """Whether ``module``'s Adam update gives :class:`~rnn_gradients.engine.optimizers.Adam`'s torch ops bit for
    bit over 30 updates of parameters of 4096, 13 and 1 entries (whole vectors and scalar tails), from gradients
    spanning seven orders of magnitude, with a NaN, ±Inf, a zero, 1e±30 and one all-zero gradient among them."""
    from rnn_gradients.engine.optimizers import Adam

    sizes = (4096, 13, 1)
    start = [torch.randn(size, generator=generator) for size in sizes]
    grads = [[torch.randn(size, generator=generator) * 10.0 ** (3 * k % 7 - 3) for size in sizes] for k in range(30)]
    grads[3][0][:6] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, 1e30, 1e-30])
    grads[5][1].zero_()
    runs = []
    for kernels in (None, module):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        optimizer = Adam(params, lr=0.05)
        for step in grads:
            for param, grad in zip(params, step, strict=True):
                param.grad = grad.clone()
            optimizer.step_with(kernels)
        moments = [optimizer.state[i][name] for i in range(len(params)) for name in ("exp_avg", "exp_avg_sq")]
        runs.append([*(param.detach() for param in params), *moments])
    return all(map(same_bits, *runs))


NORM_CASES = ("none", "layer", "batch-train", "batch-eval")
"""The recurrences :func:`_recurrence` runs: plain, layer norm, batch norm in training and in evaluation mode."""


def _recurrence(
    norm: str,
    u: torch.Tensor,
    w_hh: torch.Tensor,
    gain: torch.Tensor,
    beta: torch.Tensor,
    kind: str,
    last: bool,
    grad: torch.Tensor,
    kernels: ModuleType | None,
) -> list[torch.Tensor]:
    """The outputs, gradients and updated buffers of one recurrence of :mod:`~rnn_gradients.engine.bptt`, run by
    ``kernels`` or (None) by the Python loops."""
    from rnn_gradients.engine import bptt

    u, w_hh, gain, beta = (t.clone().requires_grad_() for t in (u, w_hh, gain, beta))
    buffers: list[torch.Tensor] = []
    if norm == "none":
        inputs = [u, w_hh]
        outputs = bptt.VanillaRecurrence.apply(u, w_hh, kind, last, kernels)
        with torch.no_grad():
            buffers.append(bptt.vanilla_states_(u.detach().clone(), w_hh.detach(), kind, kernels))
    elif norm == "layer":
        inputs = [u, w_hh, gain, beta]
        outputs = bptt.VanillaLayerNormRecurrence.apply(u, w_hh, gain, beta, kind, 1e-5, last, kernels)
    else:
        inputs = [u, w_hh, gain]
        training = norm == "batch-train"
        buffers = [torch.rand(4, u.shape[2], generator=torch.Generator().manual_seed(1)) for _ in range(2)]
        outputs = bptt.VanillaBatchNormRecurrence.apply(
            u, w_hh, gain, *buffers, kind, training, 0.1, 1e-5, last, kernels
        )
    return [outputs.detach(), *torch.autograd.grad(outputs, inputs, grad), *buffers]


def _fused_batch_norm(
    norm: str,
    v: torch.Tensor,
    w_hh: torch.Tensor,
    bias: torch.Tensor,
    kind: str,
    last: bool,
    grad: torch.Tensor,
    kernels: ModuleType | None,
) -> list[torch.Tensor]:
    """The outputs, gradients and updated running statistics of the vanilla recurrence under batch norm on both
    parts from input projections ``v`` (B, T, H): by :class:`~rnn_gradients.engine.fused_batch_norm.
    FusedVanillaBatchNorm` through ``kernels``, or (None) as the reference path computes it (the input part's
    batch norm over the whole sequence by autograd, then the Python loops). ``norm``: "batch-train" or
    "batch-eval" (whose running statistics keep fewer rows than the steps); gains and statistics from fixed seeds."""
    from rnn_gradients.engine import bptt, fused_batch_norm

    steps = v.shape[1]
    rows = steps if norm == "batch-train" else max(steps - 2, 1)
    draws = torch.Generator().manual_seed(3)
    input_norm, hidden_norm = (_step_norm(norm, v.shape[2], draws, shift=False, rows=rows) for _ in range(2))
    v, w_hh, bias = (t.clone().requires_grad_() for t in (v, w_hh, bias))
    training = norm == "batch-train"
    if kernels is None:
        u = (input_norm.sequence(v) + bias).transpose(0, 1)
        outputs = bptt.VanillaBatchNormRecurrence.apply(
            u, w_hh, hidden_norm.weight, hidden_norm.running_mean, hidden_norm.running_var, kind, training,
            hidden_norm.momentum, hidden_norm.eps, last, None,
        )  # fmt: skip
    else:
        outputs = fused_batch_norm.FusedVanillaBatchNorm.apply(
            v, input_norm.weight.repeat(steps), bias.expand_as(v), w_hh, hidden_norm.weight,
            (input_norm.running_mean, input_norm.running_var), (hidden_norm.running_mean, hidden_norm.running_var),
            kind, training, (input_norm.momentum, hidden_norm.momentum), (input_norm.eps, hidden_norm.eps), last,
            kernels,
        )  # fmt: skip
    inputs = [v, w_hh, bias, input_norm.weight, hidden_norm.weight]
    buffers = [b for module in (input_norm, hidden_norm) for b in module.buffers()]
    return [outputs.detach(), *torch.autograd.grad(outputs, inputs, grad), *buffers]


def _gru_recurrence(
    norm: str,
    u: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor,
    last: bool,
    grad: torch.Tensor,
    kernels: ModuleType | None,
) -> list[torch.Tensor]:
    """The outputs, gradients and updated buffers of one GRU recurrence, plain
    (:class:`~rnn_gradients.engine.bptt.GRURecurrence`: ``u`` its input parts) or under normalizations of its input
    part and its recurrent term (:class:`~rnn_gradients.engine.gru_norm_bptt.GRUNormRecurrence`: ``u`` its input
    projections, ``norm`` one of ``NORM_CASES[1:]``, the gains, shifts and running statistics drawn from fixed
    seeds), run by ``kernels`` or (None) by the Python loops."""
    from rnn_gradients.engine import bptt, gru_norm_bptt

    u, w_hh, b_hh = (t.clone().requires_grad_() for t in (u, w_hh, b_hh))
    if norm == "none":
        outputs = bptt.GRURecurrence.apply(u, w_hh, b_hh, last, kernels)
        return [outputs.detach(), *torch.autograd.grad(outputs, (u, w_hh, b_hh), grad)]
    draws = torch.Generator().manual_seed(2)
    input_norm, hidden_norm = (_step_norm(norm, w_hh.shape[0], draws, shift=False) for _ in range(2))
    input_shift = torch.randn(w_hh.shape[0], generator=draws).requires_grad_()
    inputs = [u, w_hh, b_hh, input_norm.weight, input_shift, *_parameters(hidden_norm)]
    outputs = gru_norm_bptt.GRUNormRecurrence.apply(
        u, w_hh, b_hh, input_norm.weight, input_shift, hidden_norm.weight, hidden_norm.bias, input_norm, hidden_norm,
        last, True, kernels,
    )  # fmt: skip
    buffers = [] if norm == "layer" else [b for module in (input_norm, hidden_norm) for b in module.buffers()]
    return [outputs.detach(), *torch.autograd.grad(outputs, inputs, grad), *buffers]


def _parameters(module: Normalizer) -> list[torch.Tensor]:
    """A normalization's gain, and its shift where it has one."""
    return [p for p in (module.weight, module.bias) if p is not None]


def _step_norm(norm: str, features: int, draws: torch.Generator, shift: bool, rows: int = 4) -> Normalizer:
    """A layer norm (``norm`` "layer") or a recurrent batch norm over ``rows`` steps ("batch-train" in training
    mode, "batch-eval" in evaluation; with a shift where ``shift``) of ``features``, its gain, shift and running
    statistics drawn from ``draws``."""
    from rnn_gradients.engine.normalization import LayerNorm, StepwiseBatchNorm

    module: Normalizer
    if norm == "layer":
        module = LayerNorm(features)
    else:
        module = StepwiseBatchNorm(features, rows, shift=shift).train(norm == "batch-train")
        with torch.no_grad():
            module.running_mean.copy_(torch.rand(rows, features, generator=draws))
            module.running_var.copy_(torch.rand(rows, features, generator=draws))
    with torch.no_grad():
        module.weight.copy_(1 + torch.rand(features, generator=draws))
        if module.bias is not None:
            module.bias.copy_(torch.randn(features, generator=draws))
    return module


def _lstm_recurrence(
    norm: str, u: torch.Tensor, w_hh: torch.Tensor, last: bool, grad: torch.Tensor, kernels: ModuleType | None
) -> list[torch.Tensor]:
    """The outputs, gradients and updated buffers of one LSTM recurrence from input projections ``u`` under
    normalizations of its input part, its recurrent term and its cell state
    (:class:`~rnn_gradients.engine.lstm_norm_bptt.LSTMNormRecurrence`: ``norm`` one of ``NORM_CASES[1:]``, the
    cell state's batch norm with a shift, as the model's), run by ``kernels`` or (None) by the Python loops."""
    from rnn_gradients.engine import lstm_norm_bptt

    draws = torch.Generator().manual_seed(2)
    u, w_hh = (t.clone().requires_grad_() for t in (u, w_hh))
    input_norm, hidden_norm = (_step_norm(norm, w_hh.shape[0], draws, shift=False) for _ in range(2))
    input_shift = torch.randn(w_hh.shape[0], generator=draws).requires_grad_()
    cell_norm = _step_norm(norm, w_hh.shape[1], draws, shift=True)
    parameters = [input_norm.weight, input_shift, *_parameters(hidden_norm), *_parameters(cell_norm)]
    outputs = lstm_norm_bptt.LSTMNormRecurrence.apply(
        u, w_hh, input_norm.weight, input_shift, hidden_norm.weight, hidden_norm.bias, cell_norm.weight,
        cell_norm.bias, input_norm, hidden_norm, cell_norm, last, True, kernels,
    )  # fmt: skip
    modules = (input_norm, hidden_norm, cell_norm)
    buffers = [] if norm == "layer" else [b for module in modules for b in module.buffers()]
    return [outputs.detach(), *torch.autograd.grad(outputs, [u, w_hh, *parameters], grad), *buffers]


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two float32 (or float64) tensors are equal bit for bit, any NaN equal to any NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    bits = torch.int64 if a.dtype == torch.float64 else torch.int32
    same = a.view(bits) == b.view(bits)
    return bool((same | (a.isnan() & b.isnan())).all())

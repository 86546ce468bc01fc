"""The levers tried to make the default study cheaper, each measured side by side in one run of this script.

    python benchmarks/bench_levers.py            # a few minutes on one core

1. processes: the seeds of a combination trained in one process (``python -m rnn_gradients train`` with three
   specs) against one process per seed, through the real command line.
2. imports: what starting a training process costs before the first step (``python -c``: nothing, torch, the
   training path, and the first optimizer: ``torch.optim.Adam``, whose first construction imports
   ``torch._dynamo``, against the engine's own Adam, :mod:`rnn_gradients.engine.optimizers`).
3. evaluation: one validation pass (500 sequences) against the former per-eval test pass (1,000), per cell.
4. allocator: glibc keeping freed memory (:func:`rnn_gradients.engine.machine.keep_freed_memory`, what every
   training process does) against its default, one training step per cell × normalization, in separate
   processes.
5. stacked seeds: three tanh RNNs as one batched model (hand-written BPTT over a leading model dimension,
   ``baddbmm`` / ``bmm`` per step) against three models on the engine's own path, per optimization step.
6. hidden size: one training step at H = 32 against H = 64, per cell.
7. denormals: one training step with subnormal floats flushed to zero (``torch.set_flush_denormal(True)``, what
   the engine does) against the CPU's default gradual underflow, per cell at T = 60 and T = 200. A gradient
   that vanishes through time passes through the subnormal range (below 1.2e-38 in float32), where some x86
   CPUs take a slow path.
8. threads: the study's way (two one-thread processes side by side, one per core) against one two-thread process
   doing the same steps one after the other, on this machine's two cores.
9. foreach: the engine's Adam update and gradient norms as torch ops (one call per op and parameter; the
   compiled ``csrc/update.cpp`` that the engine now uses instead is left out) against the same arithmetic as
   ``torch._foreach_*`` calls (one call per op), on a tanh RNN's real gradients: time per step, and whether the
   results are the same bits.

Every figure is a ratio of two timings taken in the same run (the machine is shared; read each ±30 %). Timings
are minima over repeats: the least disturbed measurement of a deterministic amount of work.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rnn_gradients.engine import bptt
from rnn_gradients.engine.cells import CELLS
from rnn_gradients.engine.datasets import make_dataset, save_dataset
from rnn_gradients.engine.model import PARAMETER_GROUPS
from rnn_gradients.engine.optimizers import Adam
from rnn_gradients.engine.run_spec import RunSpec, engine_fingerprint
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.engine.training import (
    GradientMeter,
    build_model,
    evaluate,
    gradient_norms,
    make_optimizer,
    optimization_step,
)

T = 60
NORM_STRATEGIES = {
    "none": ("none", {}),
    "layer": ("layer_norm", {"norm": "layer"}),
    "batch": ("batch_norm", {"norm": "batch"}),
}


def best_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def wall(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def spec(cell: str, seed: int = 0, hidden: int = 64, steps: int = 200, norm: str = "none") -> RunSpec:
    strategy, params = NORM_STRATEGIES[norm]
    return RunSpec(
        task="adding", seq_len=T, cell=cell, strategy=strategy, strategy_params=params, seed=seed, train_size=2000,
        val_size=500, test_size=1000, hidden_size=hidden, steps=steps, eval_every=100, probe_every=100,
        early_stop=False, device="cpu", engine=engine_fingerprint(),
    )  # fmt: skip


def lever_processes(tmp: Path) -> None:
    data = []
    for seed in range(3):
        path = tmp / f"seed{seed}.npz"
        save_dataset(make_dataset("adding", T, seed, 2000, 500, 1000), path)
        data.append(str(path))
    specs = [spec("rnn_tanh", seed).to_dict() for seed in range(3)]
    train = [sys.executable, "-m", "rnn_gradients", "train"]
    one, three = [], []
    for attempt in range(2):
        out = [str(tmp / f"one{attempt}" / f"seed{seed}") for seed in range(3)]
        one.append(wall([*train, "--specs", json.dumps(specs), "--data", *data, "--out-dir", *out]))
        three.append(
            sum(
                wall([*train, "--specs", json.dumps(s), "--data", d, "--out-dir", str(tmp / f"three{attempt}-{i}")])
                for i, (s, d) in enumerate(zip(specs, data, strict=True))
            )
        )
    print(f"1. processes: 3 runs (tanh, adding T={T}, 200 steps) in 1 process {min(one):.1f} s, "
          f"in 3 processes {min(three):.1f} s: ratio {min(three) / min(one):.2f}")  # fmt: skip


def lever_imports() -> None:
    param = "import torch; p = [torch.nn.Parameter(torch.ones(1))]; "
    cases = {"python -c pass": "pass", "import torch": "import torch",
             "import the training path": "import rnn_gradients.engine.training",
             "torch + a first torch.optim.Adam": param + "torch.optim.Adam(p, lr=1e-3)",
             "torch + the engine's first Adam":
                 param + "from rnn_gradients.engine.optimizers import Adam; Adam(p, 1e-3)",
             }  # fmt: skip
    seconds = {name: min(wall([sys.executable, "-c", code]) for _ in range(5)) for name, code in cases.items()}
    print("2. imports: " + ", ".join(f"{name} {s:.2f} s" for name, s in seconds.items()))


def _step_fn(cell: str, hidden: int, seq_len: int = T, norm: str = "none") -> Callable[[], object]:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    task = get_task("adding")
    run = spec(cell, hidden=hidden, norm=norm)
    strategy = Strategy.from_dict(run.strategy, run.strategy_params)
    model = build_model(run, task, strategy)
    optimizer = make_optimizer(run, list(model.parameters()))
    meter = GradientMeter(model)
    x, y = task.to_tensors(make_dataset("adding", seq_len, 0, 64, 1, 1).train)
    return lambda: optimization_step(0, model, optimizer, meter, strategy, task, x, y)


def lever_evaluation() -> None:
    torch.set_num_threads(1)
    task = get_task("adding")
    dataset = make_dataset("adding", T, 0, 1000, 500, 1000)
    x_val, y_val = task.to_tensors(dataset.val)
    x_test, y_test = task.to_tensors(dataset.test)
    x_train = task.to_tensors(dataset.train)[0]
    parts = []
    for cell in CELLS:
        model = build_model(spec(cell), task, Strategy.from_dict("none", {}))
        val = best_ms(lambda m=model: evaluate(m, task, x_val, y_val, population=x_train), repeats=5)
        test = best_ms(lambda m=model: evaluate(m, task, x_test, y_test, population=x_train), repeats=5)
        parts.append(f"{cell} {val:.0f} vs {test:.0f} ms ({test / val:.2f}x)")
    print("3. evaluation, validation (500) vs former test pass (1000), per evaluation: " + "; ".join(parts))


def lever_allocator() -> None:
    configs = [(cell, norm) for cell in CELLS for norm in NORM_STRATEGIES]
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); from bench_levers import _step_fn, best_ms; "
        "from rnn_gradients.engine.machine import keep_freed_memory; "
        "keep = sys.argv[1] == 'keep' and keep_freed_memory(); "
        f"print(' '.join(str(best_ms(_step_fn(c, 64, norm=n), repeats=10)) for c, n in {configs!r}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    plain, kept = [], []
    for _ in range(2):  # interleaved, so a change in the machine's load hits both
        for mode, sink in (("default", plain), ("keep", kept)):
            out = subprocess.run(
                [sys.executable, "-c", code, mode], env=env, capture_output=True, text=True, check=True
            )
            sink.append([float(v) for v in out.stdout.split()])
    ratios = [min(p[i] for p in plain) / min(k[i] for k in kept) for i in range(len(configs))]
    print(
        "4. allocator, step time with glibc's default / keeping freed memory: "
        + ", ".join(f"{c} {n} {r:.2f}" for (c, n), r in zip(configs, ratios, strict=True))
    )


class StackedVanilla(torch.autograd.Function):
    """h_t = φ(u_t + h_{t−1} W_hhᵀ) for S models at once: u (T, S, B, H), W_hh (S, H, H); returns h_T (S, B, H).

    The engine's :class:`~rnn_gradients.engine.bptt.VanillaRecurrence` with a leading model dimension: per step
    one ``baddbmm`` forward and one ``bmm`` backward for all S models, dW_hh per model as one GEMM over all steps.
    """

    @staticmethod
    def forward(ctx, kind, u, w_hh):
        hs = u.new_empty(u.shape[0] + 1, *u.shape[1:])
        hs[0].zero_()
        scale = bptt.input_scale(kind)  # the activation's input arrives scaled, as in VanillaRecurrence
        torch.mul(u, scale, out=hs[1:])
        rows, w_t = hs.unbind(0), w_hh.transpose(1, 2)
        for t in range(u.shape[0]):
            bptt._activate_(kind, rows[t + 1].baddbmm_(rows[t], w_t, alpha=scale))
        ctx.kind, ctx.hs = kind, hs
        ctx.save_for_backward(w_hh)
        return hs[-1]

    @staticmethod
    def backward(ctx, grad):
        (w_hh,) = ctx.saved_tensors
        hs = ctx.hs
        derivative = bptt._Derivative(ctx.kind, hs[1:])
        delta = torch.empty_like(hs[1:])
        rows = delta.unbind(0)
        derivative.apply_(rows[-1].copy_(grad), len(rows) - 1)
        for t in range(len(rows) - 1, 0, -1):
            derivative.apply_(torch.bmm(rows[t], w_hh, out=rows[t - 1]), t - 1)
        hidden = w_hh.shape[-1]
        grad_w = torch.stack(
            [delta[:, s].reshape(-1, hidden).t().mm(hs[:-1, s].reshape(-1, hidden)) for s in range(w_hh.shape[0])]
        )
        return None, delta, grad_w


def lever_stacked_seeds(models: int = 3) -> None:
    torch.set_num_threads(1)
    steps = [_step_fn("rnn_tanh", 64) for _ in range(models)]
    separate = best_ms(lambda: [step() for step in steps])
    g = torch.Generator().manual_seed(0)
    w_ih = torch.nn.Parameter(torch.randn(models, 2, 64, generator=g) * 0.1)
    w_hh = torch.nn.Parameter(torch.randn(models, 64, 64, generator=g) * 0.1)
    bias = torch.nn.Parameter(torch.zeros(models, 1, 64))
    head = torch.nn.Parameter(torch.randn(models, 64, 1, generator=g) * 0.1)
    optimizer = make_optimizer(spec("rnn_tanh"), [w_ih, w_hh, bias, head])
    x, y = get_task("adding").to_tensors(make_dataset("adding", T, 0, 64, 1, 1).train)
    inputs = x.transpose(0, 1).unsqueeze(1)  # (T, 1, B, I): the same batch for every model

    def stacked() -> None:
        optimizer.zero_grad()
        u = inputs @ w_ih + bias  # (T, S, B, H)
        h = StackedVanilla.apply("rnn_tanh", u, w_hh)
        loss = ((h @ head).squeeze(-1) - y.squeeze(-1)).square().mean(dim=1).sum()
        loss.backward()
        optimizer.step()

    together = best_ms(stacked)
    print(f"5. stacked seeds (tanh, H=64, B=64, T={T}, hand-written BPTT both ways): {models} models on the "
          f"engine's path {separate:.1f} ms, one stacked model {together:.1f} ms: "
          f"ratio {separate / together:.2f}")  # fmt: skip


def lever_hidden_size() -> None:
    parts = []
    for cell in CELLS:
        small, large = best_ms(_step_fn(cell, 32)), best_ms(_step_fn(cell, 64))
        parts.append(f"{cell} {large:.1f} vs {small:.1f} ms ({large / small:.2f}x)")
    print(f"6. hidden size, one step at T={T}, B=64, H=64 vs H=32: " + "; ".join(parts))


def lever_denormals() -> None:
    parts = []
    for seq_len in (T, 200):
        for cell in CELLS:
            step = _step_fn(cell, 64, seq_len)
            times = {}
            for flush in (True, False, True, False):  # interleaved: a change in load hits both
                torch.set_flush_denormal(flush)
                times[flush] = min(times.get(flush, float("inf")), best_ms(step, repeats=8))
            torch.set_flush_denormal(True)
            parts.append(f"{cell} T={seq_len} {times[False] / times[True]:.2f}")
    print("7. denormals, step time with gradual underflow / flushed to zero: " + ", ".join(parts))


def _foreach_adam(params: list[torch.Tensor], state: dict[str, list[torch.Tensor] | float], lr: float) -> None:
    """The engine's Adam (:class:`rnn_gradients.engine.optimizers.Adam`) as ``torch._foreach_*`` calls."""
    if not state:
        state.update(step=0.0, m=[torch.zeros_like(p) for p in params], v=[torch.zeros_like(p) for p in params])
    step = state["step"] = float(state["step"]) + 1.0  # type: ignore[arg-type]
    grads = [p.grad for p in params]
    m, v = state["m"], state["v"]
    (beta1, beta2), eps = Adam.betas, Adam.eps
    torch._foreach_lerp_(m, grads, 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, (1 - beta2**step) ** 0.5)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, m, denom, value=-lr / (1 - beta1**step))


def _foreach_norms(meter: GradientMeter) -> tuple[float, tuple[float, ...]]:
    """:meth:`GradientMeter.measure` with the parameters' norms from one ``torch._foreach_norm`` call. (The
    per-group sums could move to the host, where ``index_add_``'s order is easy to follow, but not the square
    roots: torch's float64 ``sqrt`` is not always the correctly rounded one of ``math.sqrt``.)"""
    squares = torch.stack(torch._foreach_norm([p.grad for p in meter.params])).double() ** 2
    group = torch.zeros(len(PARAMETER_GROUPS), dtype=squares.dtype).index_add_(0, meter.index, squares)
    values = torch.cat([squares.sum().sqrt().reshape(1), group.sqrt()]).tolist()
    return values[0], tuple(values[1 + i] if i in meter.present else math.nan for i in range(len(PARAMETER_GROUPS)))


def lever_foreach(steps: int = 200) -> None:
    torch.set_num_threads(1)
    task = get_task("adding")
    run = spec("rnn_tanh")
    strategy = Strategy.from_dict(run.strategy, run.strategy_params)
    models = [build_model(run, task, strategy) for _ in range(2)]
    engine_adam = Adam(list(models[0].parameters()), run.learning_rate)
    meters = [GradientMeter(model) for model in models]

    def torch_norms() -> list[float]:
        return gradient_norms([p.grad for p in meters[0].params], meters[0].index, len(PARAMETER_GROUPS))

    x, y = task.to_tensors(make_dataset("adding", T, 0, 64, 1, 1).train)
    state: dict[str, list[torch.Tensor] | float] = {}
    same, times = True, {"adam": [], "foreach adam": [], "norms": [], "foreach norms": []}
    for _ in range(steps):
        for model in models:
            model.zero_grad(set_to_none=True)
            task.loss(model(x), y).backward()
        # Alternated: whichever runs first after the backward pass finds colder caches.
        flip = -1 if len(times["norms"]) % 2 else 1
        for name, fn in (("norms", torch_norms), ("foreach norms", lambda: _foreach_norms(meters[1])))[::flip]:
            start = time.thread_time()
            fn()
            times[name].append(time.thread_time() - start)
        same &= str(meters[0].measure()) == str(_foreach_norms(meters[1]))
        with torch.no_grad():
            for name, fn in (
                ("adam", lambda: engine_adam.step_with(None)),
                ("foreach adam", lambda: _foreach_adam(list(models[1].parameters()), state, run.learning_rate)),
            )[::flip]:
                start = time.thread_time()
                fn()
                times[name].append(time.thread_time() - start)
        same &= all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True))
    ms = {name: 1000 * min(values) for name, values in times.items()}
    print(
        f"9. foreach (tanh, T={T}, {steps} steps, same bits: {same}): Adam {ms['adam']:.3f} vs "
        f"{ms['foreach adam']:.3f} ms, norms {ms['norms']:.3f} vs {ms['foreach norms']:.3f} ms per step"
    )


def steps_wall(cell: str, threads: int, steps: int) -> float:
    """Seconds for ``steps`` training steps of one cell with ``threads`` torch threads (after 3 warm-up steps)."""
    step = _step_fn(cell, 64)
    torch.set_num_threads(threads)
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def lever_threads(steps: int = 150) -> None:
    def run(cell: str, threads: int, n: int) -> subprocess.Popen[str]:
        code = (
            "import sys; sys.path.insert(0, 'benchmarks'); from bench_levers import steps_wall; "
            f"steps_wall(sys.argv[1], {threads}, {n})"
        )  # timed from outside: the process's start and imports count, as they do for a training job
        return subprocess.Popen([sys.executable, "-c", code, cell])

    parts = []
    for cell in CELLS:
        best_pair = best_single = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            for process in [run(cell, 1, steps), run(cell, 1, steps)]:
                process.wait()
            best_pair = min(best_pair, time.perf_counter() - start)
            start = time.perf_counter()
            run(cell, 2, 2 * steps).wait()
            best_single = min(best_single, time.perf_counter() - start)
        parts.append(f"{cell} {best_single / best_pair:.2f}")
    print(
        f"8. threads, {2 * steps} steps (T={T}, H=64, B=64, processes included): one 2-thread process / "
        "two 1-thread processes side by side: " + ", ".join(parts)
    )


def main() -> None:
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, one torch thread per process")
    with tempfile.TemporaryDirectory() as tmp:
        lever_processes(Path(tmp))
    lever_imports()
    lever_evaluation()
    lever_allocator()
    lever_stacked_seeds()
    lever_hidden_size()
    lever_denormals()
    lever_threads()
    lever_foreach()
    print(f"(median of nothing: each figure is a minimum; load average now {statistics.fmean(os.getloadavg()):.1f})")


if __name__ == "__main__":
    main()

"""One optimization step of every cell × normalization against its FLOP floor: the engine before and after BPTT.

    python benchmarks/bench_engine.py            # B = 64, H = 64, adding at T = 60 (under a minute)
    python benchmarks/bench_engine.py --sweep    # T = 60, 200, 1000 and H = 64, 256 (several minutes)
    python benchmarks/bench_engine.py --lengths 1000 --hidden 256    # one shape of the sweep
    python benchmarks/bench_engine.py --sweep --cells lstm gru        # the sweep for some cells only
    python benchmarks/bench_engine.py --parts    # where a step's time goes: compiled loops, norms and Adam, the rest
    python benchmarks/bench_engine.py --memory   # the step's large GEMMs with their operands cached and cold

A step is the study's own :func:`~rnn_gradients.engine.training.optimization_step` (forward, MSE, backward,
gradient norms, Adam) on a model of :func:`~rnn_gradients.engine.training.build_model`, one torch thread.
Columns, in ms of this thread's CPU time per step (``time.thread_time``: a process that waits for a core while
other work runs is not charged for the wait), minimum over repetitions; old and new interleaved in every
repetition so that the machine's load hits both alike; each timed block follows an untimed step of the same
configuration:

    floor    the step's matmul FLOPs (forward: input and recurrent GEMMs; backward: ∂L/∂h per step, and the
             weight gradients dW_hh, dW_ih as one GEMM each over all steps), each at the single-thread GEMM
             rate measured here for its own shape
    old      the engine before hand-written BPTT (``RecurrentLayer.reference = True``: fused kernel or
             unrolled autograd loop)
    torch    the engine now with its plain-torch BPTT loops (the compiled extension switched off, as
             ``RNN_GRADIENTS_EXTENSION=0`` does); shown where the extension runs the loops (every BPTT path:
             the vanilla cells, the GRU, the LSTM with a normalization), ``-`` elsewhere
    new      the engine now (``RecurrentLayer.path``: bptt, fused or unrolled; the vanilla cells' and the
             GRU's BPTT loops compiled where :func:`~rnn_gradients.engine.extension.status` says so, printed first;
             the step without autograd's graph where :mod:`~rnn_gradients.engine.direct_step` covers the model,
             in the ``torch`` column too)
    new/fl   new / floor;   old/new, torch/new   the speed-ups

``--parts`` splits the new engine's step instead: the thread time inside each call of the compiled module (the
recurrence's forward and backward loops; the gradient norms and Adam's update), and the rest of the step
(everything outside those calls: the input part and its normalization, the layout copies, the weight-gradient
GEMM after the backward loop, the read-out, the loss, autograd's bookkeeping), from the repetition whose step was
fastest.

Timings on a shared machine are noisy (read a figure ±30 %, a ratio ±15 %).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import ModuleType
from typing import Any

import torch

from rnn_gradients.engine import extension
from rnn_gradients.engine.cells import CELLS, RecurrentLayer
from rnn_gradients.engine.machine import keep_freed_memory
from rnn_gradients.engine.normalization import NORMS
from rnn_gradients.engine.run_spec import RunSpec
from rnn_gradients.engine.strategies import Strategy
from rnn_gradients.engine.tasks import get_task
from rnn_gradients.engine.training import GradientMeter, build_model, make_optimizer, optimization_step

BATCH = 64
BASE = RunSpec(
    task="adding",
    seq_len=60,
    cell="rnn_tanh",
    strategy="none",
    strategy_params={},
    seed=0,
    train_size=BATCH,
    val_size=1,
    test_size=1,
    hidden_size=64,
    batch_size=BATCH,
    steps=1,
    eval_every=1,
    probe_every=1,
    probe_batch=1,
    early_stop=False,
    device="cpu",
)
GATES = {"lstm": 4, "gru": 3}


def gemm_rate(m: int, k: int, n: int, repeats: int = 7) -> float:
    """Single-thread FLOP/s of (m×k) @ (k×n), minimum time over ``repeats`` blocks of enough calls."""
    a, b = torch.rand(m, k), torch.rand(k, n)
    calls = max(1, int(2e7 // (2 * m * k * n)))
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        for _ in range(calls):
            torch.mm(a, b)
        best = min(best, (time.thread_time() - start) / calls)
    return 2 * m * k * n / best


def floor_ms(cell: str, length: int, hidden: int, inputs: int, rates: dict[tuple[int, int, int], float]) -> float:
    """The step's GEMMs at their measured rates (read-out and elementwise work not counted)."""
    features = GATES.get(cell, 1) * hidden
    shapes = [
        ((length * BATCH, inputs, features), 1),  # input projection, all steps
        ((BATCH, hidden, features), length),  # recurrent forward, per step
        ((BATCH, features, hidden), length),  # ∂L/∂h_{t-1} = δ_t W_hh, per step
        ((features, length * BATCH, hidden), 1),  # dW_hh over all steps
        ((inputs, length * BATCH, features), 1),  # dW_ih over all steps, as (xᵀ δ)ᵀ
    ]
    seconds = 0.0
    for shape, count in shapes:
        if shape not in rates:
            rates[shape] = gemm_rate(*shape)
        m, k, n = shape
        seconds += count * 2 * m * k * n / rates[shape]
    return 1000 * seconds


def spec_for(cell: str, norm: str, length: int, hidden: int) -> RunSpec:
    """The benchmark's run spec for one cell × normalization at T = ``length``, H = ``hidden``."""
    return replace(
        BASE,
        cell=cell,
        seq_len=length,
        hidden_size=hidden,
        strategy="none" if norm == "none" else norm,
        strategy_params={"norm": norm},
    )


class TimedKernels:
    """The compiled module, with the thread time of every call added up under the function's name."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.seconds: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        function = getattr(self.module, name)
        if not callable(function):
            return function

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.thread_time() - start

        return timed


@contextmanager
def kernels_replaced_by(replacement: ModuleType | TimedKernels | None):
    """Inside the block the engine gets ``replacement`` wherever it asks for the compiled module; None gives it
    its plain-torch BPTT loops."""
    compiled = extension.kernels
    extension.kernels = lambda: replacement
    try:
        yield
    finally:
        extension.kernels = compiled


UPDATE_CALLS = ("gradient_norms", "adam_update")
"""The compiled module's calls that are not the recurrence (``csrc/update.cpp``)."""


def measure_parts(length: int, hidden: int, repeats: int, steps: int, cells: Sequence[str] = CELLS) -> None:
    """Per cell × norm: the step, the compiled recurrence loops, the compiled norms and Adam, and the rest."""
    module = extension.kernels()
    if module is None:
        print(f"no compiled module here ({extension.status()}): nothing to split")
        return
    print(f"\nT={length} H={hidden} B={BATCH} (adding task, Adam), ms per optimization step, new engine")
    header = f"{'cell':<12} {'norm':<6} {'path':<9} {'step':>7} {'loops':>7} {'upd':>6} {'rest':>7}  loop calls"
    print(header)
    print("-" * (len(header) + 40))
    for cell in cells:
        for norm in NORMS:
            step = stepper(spec_for(cell, norm, length, hidden), False)
            best, parts = float("inf"), Counter()
            for _ in range(repeats):
                step()
                timed = TimedKernels(module)
                with kernels_replaced_by(timed):
                    start = time.thread_time()
                    for _ in range(steps):
                        step()
                    seconds = time.thread_time() - start
                if seconds < best:
                    best, parts = seconds, timed.seconds
            per_step = {name: 1000 * value / steps for name, value in parts.items()}
            update = sum(per_step.pop(name, 0.0) for name in UPDATE_CALLS)
            loops = sum(per_step.values())
            total = 1000 * best / steps
            calls = ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(per_step.items())) or "-"
            path = RecurrentLayer(cell, 2, 1, norm).path
            print(
                f"{cell:<12} {norm:<6} {path:<9} {total:>7.2f} {loops:>7.2f} {update:>6.2f} "
                f"{total - loops - update:>7.2f}  {calls}"
            )


def memory_bound_gemms(length: int, hidden: int, repeats: int) -> None:
    """The step's GEMMs whose operands are whole (T·B, G·H) blocks, and the recurrent GEMM into one row of such a
    block, each timed with its operands in the caches (the same call repeated) and out of them (after a pass over
    64 MiB, more than this machine's caches; the recurrent GEMM's h_{t−1} and W_hh then read back in, as inside
    the loop, so that only its output row is cold): how much of a step's time its memory traffic can take."""
    evict = torch.zeros(16 * 1024 * 1024)  # 64 MiB

    def median_us(call: Callable[[], object], cold: bool, warm: Sequence[torch.Tensor] = ()) -> float:
        call()
        times = []
        for _ in range(max(15, 3 * repeats)):
            if cold:
                evict.add_(1.0)
                for t in warm:  # back into the caches, as inside the loop
                    t.sum()
            start = time.thread_time()
            call()
            times.append(time.thread_time() - start)
        return 1e6 * sorted(times)[len(times) // 2]

    print(f"\nT={length} H={hidden} B={BATCH}, I=2: median µs per call, operands in the caches / out of them")
    print(f"{'GEMM':<44} {'cached':>8} {'cold':>8} {'cold/cached':>12}")
    rows = length * BATCH
    for gates in (1, 3, 4):
        features = gates * hidden
        x, w_ih, grad = torch.rand(rows, 2), torch.rand(features, 2), torch.rand(rows, features)
        h, w_hh, block = torch.rand(BATCH, hidden), torch.rand(features, hidden), torch.empty(length, BATCH, features)
        states = torch.rand(rows, hidden)
        calls = {
            f"input projection {rows}×2 @ 2×{features}": lambda x=x, w=w_ih: torch.mm(x, w.t()),
            f"∂L/∂W_ih 2×{rows} @ {rows}×{features}": lambda x=x, g=grad: x.t().mm(g),
            f"∂L/∂W_hh {features}×{rows} @ {rows}×{hidden}": lambda g=grad, r=states: g.t().mm(r),
            f"recurrent {BATCH}×{hidden} @ {hidden}×{features}, output row cold": (
                lambda h=h, w=w_hh, b=block: torch.mm(h, w.t(), out=b[length // 2])
            ),
        }
        for name, call in calls.items():
            warm = (h, w_hh) if name.startswith("recurrent") else ()
            cached, cold = median_us(call, False), median_us(call, True, warm)
            print(f"{name:<44} {cached:>8.0f} {cold:>8.0f} {cold / cached:>12.2f}")


def stepper(spec: RunSpec, reference: bool, plain: bool = False) -> Callable[[], None]:
    """One optimization step of ``spec``'s model on a fixed batch; ``reference`` picks the old engine, ``plain``
    the new engine without its compiled loops."""
    task = get_task(spec.task)
    strategy = Strategy.from_dict(spec.strategy, spec.strategy_params)
    model = build_model(spec, task, strategy)
    model.recurrent.reference = reference
    optimizer = make_optimizer(spec, list(model.parameters()))
    meter = GradientMeter(model)
    data = torch.Generator().manual_seed(1)
    x = torch.rand(BATCH, spec.seq_len, task.input_size, generator=data)
    y = torch.rand(BATCH, task.output_size, generator=data)

    def step() -> None:
        if plain:
            with kernels_replaced_by(None):
                optimization_step(0, model, optimizer, meter, strategy, task, x, y)
        else:
            optimization_step(0, model, optimizer, meter, strategy, task, x, y)

    return step


def measure(length: int, hidden: int, repeats: int, steps: int, cells: Sequence[str] = CELLS) -> None:
    rates: dict[tuple[int, int, int], float] = {}
    rows = []
    for cell in cells:
        for norm in NORMS:
            spec = spec_for(cell, norm, length, hidden)
            steppers = {"old": stepper(spec, True), "new": stepper(spec, False)}
            layer = RecurrentLayer(cell, 2, 1, norm)
            if layer.path == "bptt" and extension.kernels() is not None:  # every BPTT path has compiled loops
                steppers["torch"] = stepper(spec, False, plain=True)
            best = dict.fromkeys(steppers, float("inf"))
            for _ in range(repeats):
                for label, step in steppers.items():
                    step()
                    start = time.thread_time()
                    for _ in range(steps):
                        step()
                    best[label] = min(best[label], 1000 * (time.thread_time() - start) / steps)
            floor = floor_ms(cell, length, hidden, get_task("adding").input_size, rates)
            rows.append((cell, norm, layer.path, floor, best["old"], best.get("torch"), best["new"]))
    print(f"\nT={length} H={hidden} B={BATCH} (adding task, Adam), ms per optimization step")
    header = (
        f"{'cell':<12} {'norm':<6} {'path':<9} {'floor':>7} {'old':>8} {'torch':>8} {'new':>8} "
        f"{'new/fl':>7} {'old/new':>8} {'torch/new':>10}"
    )
    print(header)
    print("-" * len(header))
    for cell, norm, path, floor, old_ms, torch_ms, new_ms in rows:
        plain = ("-", "-") if torch_ms is None else (f"{torch_ms:.2f}", f"{torch_ms / new_ms:.2f}")
        print(
            f"{cell:<12} {norm:<6} {path:<9} {floor:>7.2f} {old_ms:>8.2f} {plain[0]:>8} {new_ms:>8.2f} "
            f"{new_ms / floor:>7.2f} {old_ms / new_ms:>8.2f} {plain[1]:>10}"
        )
    rate_text = ", ".join(f"{m}×{k}@{k}×{n} {rate / 1e9:.0f}" for (m, k, n), rate in sorted(rates.items()))
    print(f"GEMM rates (GFLOP/s, one thread): {rate_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", action="store_true", help="T = 60, 200, 1000 and H = 64, 256")
    parser.add_argument("--lengths", type=int, nargs="+", help="the sweep's T (default 60 200 1000)")
    parser.add_argument("--hidden", type=int, nargs="+", help="the sweep's H (default 64 256)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS), help="the cells (default all)")
    parser.add_argument("--parts", action="store_true", help="split the new engine's step into its parts instead")
    parser.add_argument("--memory", action="store_true", help="the step's large GEMMs with cached and cold operands")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    keep_freed_memory()  # as every training process does
    extension.kernels()  # built (first use) and checked before any timing
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, minimum over {args.repeats} repetitions, "
        f"BPTT loops: {extension.status()}"
    )
    started = time.perf_counter()
    if args.memory:
        for hidden in args.hidden or (64,):
            memory_bound_gemms(60, hidden, args.repeats)
    elif args.parts:
        for hidden in args.hidden or (64,):
            for length in args.lengths or (60,):
                measure_parts(length, hidden, args.repeats, max(1, 300 // length), args.cells)
    elif args.sweep or args.lengths or args.hidden:
        for hidden in args.hidden or (64, 256):
            for length in args.lengths or (60, 200, 1000):
                steps = max(1, 600 // length) if hidden == 64 else 1
                measure(length, hidden, max(2, args.repeats // 2), steps, args.cells)
    else:
        measure(60, 64, args.repeats, 5, args.cells)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""Training-step time of the hand-written recurrent layer against torch's fused modules, on one CPU thread.

One training step = zero_grad + forward + MSE on the last step's output + backward + Adam step, at B = 64,
H = 128, input size 2, for T in {50, 200}. Columns (median ms per step over a few repetitions; the
configurations are interleaved within each repetition so that machine noise hits them alike; each timed step
follows an untimed one of the same configuration):

    ours     SequenceModel.forward (the fused kernel where the cell has one, else the unrolled loop)
    torch    torch.nn.RNN(tanh|relu)/LSTM/GRU + nn.Linear with the same weights (rnn_sigmoid: nn.RNN tanh)
    ratio    ours / torch
    unroll   SequenceModel.forward_with_states (the unrolled Python loop, always)
    LN, BN   SequenceModel with layer / recurrent batch normalization (unrolled)

Run: ``python benchmarks/bench_cells.py`` (about a minute; timings on a shared machine are noisy, ±30 %).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init

from rnn_gradients.engine.cells import CELLS
from rnn_gradients.engine.model import SequenceModel

BATCH, HIDDEN, INPUT = 64, 128, 2
LENGTHS = (50, 200)
REPEATS = 5
# Built on the meta device and then materialized: no draws from the global RNG (the weights are copied in).
TORCH_MODULES: dict[str, Callable[[], nn.Module]] = {
    "rnn_tanh": lambda: nn.RNN(INPUT, HIDDEN, nonlinearity="tanh", batch_first=True, device="meta"),
    "rnn_sigmoid": lambda: nn.RNN(INPUT, HIDDEN, nonlinearity="tanh", batch_first=True, device="meta"),
    "rnn_relu": lambda: nn.RNN(INPUT, HIDDEN, nonlinearity="relu", batch_first=True, device="meta"),
    "lstm": lambda: nn.LSTM(INPUT, HIDDEN, batch_first=True, device="meta"),
    "gru": lambda: nn.GRU(INPUT, HIDDEN, batch_first=True, device="meta"),
}


class TorchReference(nn.Module):
    """torch's fused recurrent module and a linear head, carrying the weights of one of our models."""

    def __init__(self, model: SequenceModel) -> None:
        super().__init__()
        self.rnn = TORCH_MODULES[model.recurrent.cell_type]().to_empty(device="cpu")
        self.head = skip_init(nn.Linear, HIDDEN, 1)
        with torch.no_grad():
            for name, param in model.recurrent.cell.named_parameters():
                getattr(self.rnn, f"{name}_l0").copy_(param)
            self.head.load_state_dict(model.head.state_dict())

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def training_step(module: nn.Module, forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.mse_loss(forward(x), y).backward()
        optimizer.step()

    return step


def configurations(length: int) -> dict[tuple[str, str], Callable[[], None]]:
    data = torch.Generator().manual_seed(length)
    x = torch.rand(BATCH, length, INPUT, generator=data)
    y = torch.rand(BATCH, 1, generator=data)
    steps: dict[tuple[str, str], Callable[[], None]] = {}
    for cell in CELLS:

        def model(norm: str, cell: str = cell) -> SequenceModel:
            return SequenceModel(
                cell, INPUT, HIDDEN, 1, "last", norm, length, generator=torch.Generator().manual_seed(0)
            )

        ours = model("none")
        unrolled = model("none")
        steps[cell, "ours"] = training_step(ours, ours, x, y)
        reference = TorchReference(ours)
        steps[cell, "torch"] = training_step(reference, reference, x, y)
        steps[cell, "unroll"] = training_step(unrolled, lambda v, m=unrolled: m.forward_with_states(v)[0], x, y)
        for norm, label in (("layer", "LN"), ("batch", "BN")):
            normalized = model(norm)
            steps[cell, label] = training_step(normalized, normalized, x, y)
    return steps


def measure(length: int) -> dict[tuple[str, str], float]:
    steps = configurations(length)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    for _ in range(REPEATS):
        for key, step in steps.items():
            # An untimed step first: the first step after switching configuration pays for re-growing the
            # heap and oneDNN's workspace (up to 3x for the fused LSTM), whichever configuration comes first.
            step()
            start = time.perf_counter()
            step()
            times[key].append(1000 * (time.perf_counter() - start))
    return {key: statistics.median(values) for key, values in times.items()}


def main() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, flush-denormal on, B={BATCH} H={HIDDEN}")
    print(f"median ms per training step over {REPEATS} repetitions (shared machine: read each figure as ±30 %)")
    header = f"{'cell':<12} {'T':>4} {'ours':>8} {'torch':>8} {'ratio':>6} {'unroll':>8} {'LN':>8} {'BN':>8}"
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for length in LENGTHS:
        ms = measure(length)
        for cell in CELLS:
            ratio = ms[cell, "ours"] / ms[cell, "torch"]
            print(
                f"{cell:<12} {length:>4} {ms[cell, 'ours']:>8.1f} {ms[cell, 'torch']:>8.1f} {ratio:>6.2f} "
                f"{ms[cell, 'unroll']:>8.1f} {ms[cell, 'LN']:>8.1f} {ms[cell, 'BN']:>8.1f}"
            )
    print("rnn_sigmoid has no fused torch kernel: 'ours' is the unrolled loop, 'torch' is nn.RNN with tanh.")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

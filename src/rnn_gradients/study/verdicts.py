"""A combination's verdict from its seeds, the interval it rests on, and which seeds it trains.

A combination (task, T, cell, strategy) is trained with several seeds; ``k`` of its ``n`` runs solved the task.
Its *solve rate* p is estimated by k/n with the Wilson score interval at confidence c (z = Φ⁻¹((1 + c)/2)):

    centre = (k + z²/2) / (n + z²),   half-width = z √(k(n − k)/n + z²/4) / (n + z²)

(Wilson 1927; Brown, Cai & DasGupta 2001 recommend it over the normal interval, which collapses to a point at
k = 0 and k = n). The verdict is drawn from the interval, never from k/n alone:

- ``solved``    the whole interval lies above ½: most seeds solve the task;
- ``failed``    the whole interval lies below ½: most seeds do not;
- ``uncertain`` the interval contains ½: the seeds do not settle it.

At c = 0.9 three seeds settle a unanimous combination (3/3 gives [0.53, 1]); one dissenting seed needs seven
(6/7 gives [0.55, 0.97]). So the study is *sequential* (:func:`sequential_seeds`): every combination trains the
config's ``seeds``; one whose verdict is still uncertain trains the next seed, then the next, until its verdict is
clear or it has ``verdicts.max_seeds`` seeds. The extra seeds are the integers after the largest listed seed, in
order. Which seeds a combination trains depends only on its own results, so the same config gives the same
tables; the training job and ``collect`` both follow this one function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

Verdict = Literal["solved", "failed", "uncertain"]
VERDICTS: tuple[Verdict, ...] = ("solved", "failed", "uncertain")


def wilson_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval (low, high) of a proportion k/n at ``confidence``; (0, 1) when n = 0."""
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n, got k={k}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"wilson_interval: confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    z2 = z * z
    centre = (k + z2 / 2) / (n + z2)
    half = z * math.sqrt(k * (n - k) / n + z2 / 4) / (n + z2)
    # clamp float rounding at the ends (k = 0 or k = n give exactly 0 or 1 in exact arithmetic)
    return max(0.0, centre - half), min(1.0, centre + half)


def verdict(k: int, n: int, confidence: float) -> Verdict:
    """``solved`` / ``failed`` when the Wilson interval of k/n lies wholly above / below ½, else ``uncertain``."""
    low, high = wilson_interval(k, n, confidence)
    if low > 0.5:
        return "solved"
    if high < 0.5:
        return "failed"
    return "uncertain"


def seed_order(seeds: Sequence[int], max_seeds: int) -> list[int]:
    """The seeds a combination may train, in order: the listed ``seeds``, then the integers after the largest of
    them, up to ``max_seeds`` seeds in all (never fewer than the listed ones)."""
    extra = max(0, max_seeds - len(seeds))
    start = max(seeds) + 1
    return [*seeds, *range(start, start + extra)]


@dataclass(frozen=True)
class SeedPlan:
    """The outcome of the sequential rule for one combination: the seeds it trained, in order, how many of them
    solved, its verdict and one line per decision (for the training job's log)."""

    seeds: tuple[int, ...]
    n_solved: int
    verdict: Verdict
    decisions: tuple[str, ...]


def sequential_seeds(
    seeds: Sequence[int], max_seeds: int, confidence: float, solved: Callable[[int], bool]
) -> SeedPlan:
    """Follow the sequential rule: ``solved(seed)`` gives (by training or by reading) whether that seed's run
    solved the task; it is called for every listed seed, then for each extra seed while the verdict is uncertain
    and fewer than ``max_seeds`` seeds have run."""
    order = seed_order(seeds, max_seeds)
    outcomes = [solved(seed) for seed in seeds]
    decisions = []
    while True:
        n, k = len(outcomes), sum(outcomes)
        current = verdict(k, n, confidence)
        low, high = wilson_interval(k, n, confidence)
        state = f"{k}/{n} solved, {confidence:.0%} interval [{low:.2f}, {high:.2f}]: {current}"
        if current != "uncertain" or n >= len(order):
            decisions.append(state + ("" if current != "uncertain" else f" after {n} seeds (the cap)"))
            return SeedPlan(tuple(order[:n]), k, current, tuple(decisions))
        decisions.append(f"{state}; training seed {order[n]}")
        outcomes.append(solved(order[n]))


def verdict_settings(study: Mapping[str, Any]) -> tuple[int, float]:
    """(max_seeds, confidence) of a validated study config's ``verdicts`` section."""
    section = study["verdicts"]
    return int(section["max_seeds"]), float(section["confidence"])


def settle_probability(n_listed: int, max_seeds: int, confidence: float, rate: float = 0.5) -> float:
    """The probability that the sequential rule settles (solved or failed) a combination whose seeds each solve
    the task independently with probability ``rate``: the rule's false-assertion rate at ``rate`` = ½.

    A walk over (n, k): every path of outcomes starts with the ``n_listed`` seeds, then adds one seed at a time
    while the verdict is uncertain and fewer than ``max_seeds`` have run; a path is absorbed where the verdict is
    settled. At c = 0.9 with three listed seeds and a cap of eight, a coin-flip combination is settled with
    probability 0.30: 3/3 or 0/3 alone has 2 · ½³ = 0.25, and the later 6/7, 7/8, 1/7 and 1/8 add the rest.
    No rule built on so few seeds can do much better: n unanimous seeds of a coin flip have probability 2 · ½ⁿ.
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"settle_probability: rate must be in [0, 1], got {rate}")
    n_listed = max(1, n_listed)
    cap = max(n_listed, max_seeds)
    paths = {k: math.comb(n_listed, k) * rate**k * (1 - rate) ** (n_listed - k) for k in range(n_listed + 1)}
    settled = 0.0
    for n in range(n_listed, cap + 1):
        undecided: dict[int, float] = {}
        for k, p in paths.items():
            if verdict(k, n, confidence) != "uncertain":
                settled += p
            else:
                undecided[k] = p
        if n == cap:
            break
        paths = {}
        for k, p in undecided.items():
            paths[k + 1] = paths.get(k + 1, 0.0) + p * rate
            paths[k] = paths.get(k, 0.0) + p * (1 - rate)
    return settled

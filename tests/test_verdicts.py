"""The verdict rule: Wilson intervals, verdicts drawn from them, and the sequential seed rule."""

from __future__ import annotations

import math

import pytest

from rnn_gradients.study.verdicts import (
    seed_order,
    sequential_seeds,
    settle_probability,
    verdict,
    wilson_interval,
)


def test_wilson_interval_matches_its_closed_form() -> None:
    # 95 %: z = 1.959964; 3/10 → centre (3 + z²/2)/(10 + z²), the textbook value [0.1078, 0.6032]
    low, high = wilson_interval(3, 10, 0.95)
    assert low == pytest.approx(0.10779, abs=1e-4)
    assert high == pytest.approx(0.60322, abs=1e-4)
    # unanimity: the interval reaches 1 exactly, and its lower end is n / (n + z²)
    z2 = 1.6448536269514722**2
    assert wilson_interval(3, 3, 0.9) == pytest.approx((3 / (3 + z2), 1.0))
    assert wilson_interval(0, 4, 0.9) == pytest.approx((0.0, z2 / (4 + z2)))
    assert wilson_interval(0, 0, 0.9) == (0.0, 1.0)


def test_wilson_interval_is_symmetric_and_narrows_with_n() -> None:
    for n in range(1, 12):
        for k in range(n + 1):
            low, high = wilson_interval(k, n, 0.9)
            mirrored = wilson_interval(n - k, n, 0.9)
            assert (low, high) == pytest.approx((1 - mirrored[1], 1 - mirrored[0]))
            assert 0 <= low <= k / n <= high <= 1
    widths = [math.fsum(wilson_interval(n, 2 * n, 0.9)[::-1]) - 2 * wilson_interval(n, 2 * n, 0.9)[0] for n in (1, 4)]
    assert widths[1] < widths[0]


@pytest.mark.parametrize("bad", [(4, 3), (-1, 3)])
def test_wilson_interval_refuses_impossible_counts(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(*bad, 0.9)


def test_verdicts_at_ninety_percent() -> None:
    # three unanimous seeds settle a combination; one dissent is not settled until 6/7
    assert verdict(3, 3, 0.9) == "solved"
    assert verdict(0, 3, 0.9) == "failed"
    assert [verdict(k, 3, 0.9) for k in (1, 2)] == ["uncertain", "uncertain"]
    assert [verdict(n - 1, n, 0.9) for n in (4, 5, 6, 7, 8)] == ["uncertain"] * 3 + ["solved", "solved"]
    assert verdict(1, 7, 0.9) == "failed"
    assert verdict(4, 8, 0.9) == "uncertain"
    # at 95 % three seeds are too few even when unanimous
    assert verdict(3, 3, 0.95) == "uncertain"
    assert verdict(4, 4, 0.95) == "solved"


def test_seed_order_continues_after_the_largest_listed_seed() -> None:
    assert seed_order([0, 1, 2], 6) == [0, 1, 2, 3, 4, 5]
    assert seed_order([5, 2], 4) == [5, 2, 6, 7]
    assert seed_order([0, 1, 2], 2) == [0, 1, 2]


def test_sequential_rule_trains_seeds_only_while_uncertain() -> None:
    asked: list[int] = []

    def outcome(results: dict[int, bool]):
        def solved(seed: int) -> bool:
            asked.append(seed)
            return results[seed]

        return solved

    clear = sequential_seeds([0, 1, 2], 8, 0.9, outcome({0: True, 1: True, 2: True}))
    assert (clear.seeds, clear.n_solved, clear.verdict, asked) == ((0, 1, 2), 3, "solved", [0, 1, 2])

    asked.clear()
    dissent = {0: True, 1: False, 2: True, **dict.fromkeys(range(3, 10), True)}
    plan = sequential_seeds([0, 1, 2], 8, 0.9, outcome(dissent))
    assert plan.seeds == (0, 1, 2, 3, 4, 5, 6) and plan.verdict == "solved" and asked == list(range(7))
    assert len(plan.decisions) == 5 and "training seed 3" in plan.decisions[0]

    asked.clear()
    coin = {seed: seed % 2 == 0 for seed in range(20)}
    capped = sequential_seeds([0, 1, 2], 8, 0.9, outcome(coin))
    assert capped.seeds == tuple(range(8)) and capped.verdict == "uncertain"
    assert "(the cap)" in capped.decisions[-1]

    asked.clear()
    no_extra = sequential_seeds([0, 1, 2], 3, 0.9, outcome(coin))
    assert no_extra.seeds == (0, 1, 2) and no_extra.verdict == "uncertain" and asked == [0, 1, 2]


def test_compare_verdicts_counts_contradictions_apart_from_one_sided_verdicts() -> None:
    import pandas as pd

    from rnn_gradients.study.robustness import compare_verdicts

    def summary(verdicts: list[str]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "task": "adding",
                "seq_len": 60,
                "cell": ["rnn_tanh", "rnn_relu", "lstm", "gru"],
                "strategy": "none",
                "verdict": verdicts,
                "n_solved": [0, 3, 3, 2],
                "n_seeds": [3, 3, 3, 8],
            }
        )

    comparison = compare_verdicts(
        summary(["failed", "solved", "solved", "uncertain"]), summary(["failed", "failed", "uncertain", "uncertain"])
    )
    assert len(comparison.asserted_in_both) == 2
    assert list(comparison.contradictions["cell"]) == ["rnn_relu"]
    assert list(comparison.asserted_in_one["cell"]) == ["lstm"]
    lines = comparison.lines()
    assert lines[0].startswith("4 combinations in both studies; asserted (solved or failed) in both: 2 (50%)")
    assert "  contradicting: adding/60/rnn_relu/none: solved (3/3) vs failed (3/3)" in lines


@pytest.mark.parametrize(("listed", "max_seeds", "confidence"), [(3, 8, 0.9), (3, 8, 0.95), (2, 6, 0.75), (4, 4, 0.9)])
@pytest.mark.parametrize("rate", [0.5, 0.3, 0.9])
def test_settle_probability_is_the_rules_own_over_every_outcome(listed, max_seeds, confidence, rate) -> None:
    """Enumerate every sequence of seed outcomes, follow the sequential rule on each, and add up the
    probability of those it settles: the closed walk must give the same number."""
    expected = 0.0
    for code in range(2**max_seeds):
        outcomes = [(code >> i) & 1 == 1 for i in range(max_seeds)]
        plan = sequential_seeds(list(range(listed)), max_seeds, confidence, outcomes.__getitem__)
        if plan.verdict != "uncertain":
            n, k = len(plan.seeds), plan.n_solved
            expected += rate**k * (1 - rate) ** (n - k) / 2 ** (max_seeds - n)  # the unread seeds: any outcome
    assert settle_probability(listed, max_seeds, confidence, rate) == pytest.approx(expected, abs=1e-12)


def test_a_coin_flip_combination_is_settled_three_times_in_ten_by_the_default_rule() -> None:
    # 3/3 or 0/3: 2 x 1/8; the rest from 6/7, 1/7, 7/8 and 1/8 after a split start
    assert settle_probability(3, 3, 0.9) == pytest.approx(0.25)
    assert settle_probability(3, 8, 0.9) == pytest.approx(0.296875)
    # a stricter rule needs four unanimous seeds and settles a coin flip half as often
    assert settle_probability(3, 8, 0.95) == pytest.approx(0.15625)
    with pytest.raises(ValueError, match="rate must be in"):
        settle_probability(3, 8, 0.9, rate=1.5)

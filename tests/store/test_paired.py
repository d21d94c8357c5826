"""Paired comparisons (store/paired.py): known effects are found, null data is rejected at the
nominal rate, and McNemar, the MDE and the n for a target match hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mrtui.store.paired import (
    TEST_MCNEMAR,
    TEST_SIGN_FLIP,
    compare,
    limit_for_target,
    mcnemar,
    mde,
    n_for_mde,
    paired,
    sign_flip,
)

Z = 1.959963984540054 + 0.8416212335729143  # z_0.975 + z_0.8


def _band(trials: int, rate: float, tail: float = 0.0005) -> tuple[int, int]:
    """The counts of a Binomial(trials, rate) outside which each tail has at most `tail`."""
    pmf = [math.comb(trials, k) * rate**k * (1 - rate) ** (trials - k) for k in range(trials + 1)]
    cdf = np.cumsum(pmf)
    lo = int(np.searchsorted(cdf, tail, side="right"))  # P(X < lo) <= tail
    hi = int(np.searchsorted(cdf, 1 - tail, side="left"))  # P(X > hi) <= tail
    return lo, hi


def test_a_known_improvement_is_found() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(5.0, 1.0, 60)
    b = a + 0.5 + rng.normal(0.0, 0.6, 60)
    r = paired(a, b)
    assert r.test == TEST_SIGN_FLIP and r.n == 60
    assert r.difference == pytest.approx(float(np.mean(b - a)))
    assert 0 < r.lo < r.difference < r.hi
    assert r.p_value < 0.05
    # pass/fail: A passes 30% of the items, B 70%, chosen independently
    a01 = (rng.random(80) < 0.3).astype(float)
    b01 = (rng.random(80) < 0.7).astype(float)
    r = paired(a01, b01, binary=True)
    assert r.test == TEST_MCNEMAR and r.lo > 0 and r.p_value < 0.05
    assert r.gained == int(((a01 == 0) & (b01 == 1)).sum())
    assert r.lost == int(((a01 == 1) & (b01 == 0)).sum())


def test_a_worse_model_is_found_worse() -> None:
    rng = np.random.default_rng(8)
    a = rng.random(100)
    r = paired(a, a - 0.2 + rng.normal(0, 0.2, 100))
    assert r.hi < 0 and r.p_value < 0.05


def test_null_data_is_rejected_at_about_the_nominal_rate() -> None:
    """400 datasets where A and B are exchangeable: the sign-flip test rejects about 5% of
    them (a binomial band with 0.05% in each tail), as does the bootstrap interval."""
    rng = np.random.default_rng(2024)
    trials, n = 400, 40
    p_rejects = ci_rejects = 0
    for t in range(trials):
        base = rng.normal(0, 1, n)  # item difficulty, shared by both models
        a, b = base + rng.normal(0, 1, n), base + rng.normal(0, 1, n)
        r = paired(a, b, seed=t)
        p_rejects += r.p_value < 0.05
        ci_rejects += r.lo > 0 or r.hi < 0
    lo, hi = _band(trials, 0.05)
    assert lo <= p_rejects <= hi, p_rejects
    # the percentile interval is a little liberal at n = 40; it must still be near 5%
    assert lo <= ci_rejects <= _band(trials, 0.07)[1], ci_rejects


def test_mcnemar_on_null_pass_fail_data_is_not_liberal() -> None:
    rng = np.random.default_rng(11)
    trials, rejects = 400, 0
    for _ in range(trials):
        p = rng.random(50)  # each item's pass probability, the same for A and B
        a, b = (rng.random(50) < p).astype(float), (rng.random(50) < p).astype(float)
        rejects += paired(a, b, binary=True).p_value < 0.05
    assert rejects <= _band(trials, 0.05)[1], rejects  # exact and discrete: at most ~5%


def test_mcnemar_matches_hand_computed_values() -> None:
    # 9 gained, 1 lost: 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024
    assert mcnemar(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar(1, 9) == mcnemar(9, 1)
    assert mcnemar(2, 0) == pytest.approx(0.5)  # 2 * 1/4
    assert mcnemar(3, 3) == 1.0 and mcnemar(0, 0) == 1.0
    # the exact sign-flip test of pass/fail differences is McNemar's exact test
    d = [1.0] * 9 + [-1.0] + [0.0] * 30
    assert sign_flip(d) == pytest.approx(22 / 1024)
    r = paired([0] * 9 + [1] + [1] * 30, [1] * 9 + [0] + [1] * 30, binary=True)
    assert (r.gained, r.lost, r.p_value) == (9, 1, pytest.approx(22 / 1024))


def test_mde_and_the_n_for_a_target_match_the_closed_form() -> None:
    # pass/fail: 50 discordant of 100 items, σ_d = √0.5
    a = [0.0] * 25 + [1.0] * 25 + [1.0] * 50
    b = [1.0] * 25 + [0.0] * 25 + [1.0] * 50
    r = paired(a, b, binary=True)
    assert r.sd == pytest.approx(math.sqrt(0.5))
    assert r.mde == pytest.approx(Z * math.sqrt(0.5 / 100)) == pytest.approx(0.19810, abs=1e-5)
    assert r.n_for(0.05) == math.ceil(Z**2 * 0.5 / 0.05**2) == 1570
    assert limit_for_target(0.05) == 1570 and limit_for_target(0.10) == 393
    # continuous: differences ±1, σ_d = √(n / (n − 1)) with ddof = 1
    n = 64
    r = paired(np.zeros(n), np.tile([1.0, -1.0], n // 2))
    assert r.sd == pytest.approx(math.sqrt(n / (n - 1)))
    assert r.mde == pytest.approx(Z * math.sqrt(n / (n - 1)) / 8)
    assert mde(2.0, 100) == pytest.approx(Z * 0.2)
    # the inverse: the n it gives reaches the target, one item fewer does not
    need = n_for_mde(1.3, 0.25)
    assert mde(1.3, need) <= 0.25 < mde(1.3, need - 1)


def test_no_spread_leaves_the_mde_unknown() -> None:
    r = paired([1.0, 0.0, 1.0], [1.0, 0.0, 1.0], binary=True)
    assert (r.difference, r.p_value, r.mde, r.n_for(0.05)) == (0.0, 1.0, None, None)
    assert paired([2.0, 3.0], [3.0, 4.0]).mde is None  # every difference +1
    empty = paired([], [])
    assert empty.n == 0 and empty.difference is None and empty.p_value is None


def test_the_result_ignores_the_order_and_names_of_items() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(50), rng.random(50)
    first = compare({f"i{k}": v for k, v in enumerate(a)}, {f"i{k}": v for k, v in enumerate(b)})
    perm = rng.permutation(50)
    second = compare({f"x{k}": a[k] for k in perm}, {f"x{k}": b[k] for k in perm})
    assert first == second
    assert paired(a, b) == paired(a[perm], b[perm])


def test_items_of_only_one_side_are_left_out_and_counted() -> None:
    a = {"p": 1.0, "q": 0.0, "r": 1.0, "only-a": 1.0}
    b = {"p": 1.0, "q": 1.0, "r": 0.0, "s": 1.0, "t": 0.0}
    r = compare(a, b, binary=True)
    assert (r.n, r.only_a, r.only_b) == (3, 1, 2)
    assert (r.gained, r.lost) == (1, 1)


def test_an_item_of_several_units_is_paired_unit_by_unit_and_resampled_whole() -> None:
    # (question, turn): question 'q2' has only turn 0 graded in B, so only turn 0 pairs
    a = {("q1", 0): 4.0, ("q1", 1): 6.0, ("q2", 0): 5.0, ("q2", 1): 9.0, ("q3", 0): 2.0}
    b = {("q1", 0): 6.0, ("q1", 1): 8.0, ("q2", 0): 6.0, ("q4", 0): 7.0}
    r = compare(a, b, item=lambda k: k[0])
    assert (r.n, r.only_a, r.only_b) == (2, 1, 1)
    assert r.a == pytest.approx((5.0 + 5.0) / 2) and r.b == pytest.approx((7.0 + 6.0) / 2)
    assert r.difference == pytest.approx((2.0 + 1.0) / 2)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        paired([0.5], [1.0], binary=True)
    with pytest.raises(ValueError, match="items"):
        paired([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        n_for_mde(1.0, 0.0)

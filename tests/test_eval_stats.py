"""Wilson intervals, exact McNemar p-values and the paired accuracy difference."""

from __future__ import annotations

import math

import pytest
from specs_core.errors import InvalidInputError
from specs_core.eval.stats import mcnemar_exact_p, paired_difference, quantile, wilson


def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), table I: 81/263 -> 0.2553 to 0.3662; 15/148 -> 0.0624 to 0.1605.
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=5e-5)
    assert wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(InvalidInputError):
        wilson(3, 2)


def test_mcnemar_exact_p() -> None:
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(5, 5) == 1.0
    # 10 discordant pairs all one way: 2 * 0.5**10.
    assert mcnemar_exact_p(10, 0) == pytest.approx(2 / 1024)
    # 1 vs 9: 2 * (1 + 10) / 1024.
    assert mcnemar_exact_p(1, 9) == pytest.approx(22 / 1024)


def test_paired_difference_counts_and_interval() -> None:
    a = [True] * 30 + [False] * 10 + [True] * 8 + [False] * 52
    b = [True] * 30 + [False] * 10 + [False] * 8 + [False] * 52
    diff = paired_difference(a, b)
    assert (diff.n, diff.only_a, diff.only_b) == (100, 8, 0)
    assert diff.difference == pytest.approx(0.08)
    assert diff.low < 0.08 < diff.high
    assert diff.low > 0  # eight wins and no losses: significantly better
    assert diff.p_value == pytest.approx(2 / 256)
    mirrored = paired_difference(b, a)
    assert mirrored.difference == pytest.approx(-0.08)
    assert (mirrored.low, mirrored.high) == pytest.approx((-diff.high, -diff.low))


def test_paired_difference_of_identical_runs_is_zero_with_a_nonzero_interval() -> None:
    same = [True, False] * 10
    diff = paired_difference(same, same)
    assert diff.difference == 0.0 and diff.p_value == 1.0
    assert diff.low < 0 < diff.high  # Agresti-Min does not collapse to [0, 0]
    with pytest.raises(InvalidInputError, match="align"):
        paired_difference([True], [True, False])


def test_quantile() -> None:
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([0.0, 10.0], 0.9) == pytest.approx(9.0)
    assert math.isnan(quantile([], 0.5))

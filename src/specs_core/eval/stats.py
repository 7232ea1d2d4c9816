"""Small statistics for benchmark tables: Wilson intervals, paired accuracy differences, AUC.

Pure Python (``math``, ``statistics``), so reports need neither numpy nor scipy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from specs_core.errors import InvalidInputError

__all__ = [
    "Z95",
    "PairedDifference",
    "auc",
    "mcnemar_exact_p",
    "paired_difference",
    "quantile",
    "wilson",
]

#: The standard normal quantile of a two-sided 95% interval.
Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (default 95%).

    Returns ``(0.0, 1.0)`` for ``n == 0`` (nothing is known).

    Raises:
        InvalidInputError: the counts are impossible.
    """
    if n < 0 or not 0 <= successes <= n:
        raise InvalidInputError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test on the discordant pairs."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(discordant, i) for i in range(k + 1)) / 2**discordant
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of run A minus accuracy of run B on the same problems.

    Attributes:
        n: shared problems.
        difference: ``acc(A) - acc(B)`` on the shared problems.
        low: lower end of the 95% interval (Agresti-Min).
        high: upper end of the 95% interval.
        only_a: problems A got right and B wrong.
        only_b: problems B got right and A wrong.
        p_value: two-sided exact McNemar p-value.
    """

    n: int
    difference: float
    low: float
    high: float
    only_a: int
    only_b: int
    p_value: float


def paired_difference(a: Sequence[bool], b: Sequence[bool], z: float = Z95) -> PairedDifference:
    """The paired accuracy difference of two runs on the same problems, in the same order.

    The interval is Agresti and Min's (2005): the Wald interval for a difference of paired
    proportions after adding one half to each of the four cells, which keeps its coverage near
    95% for small samples and for zero discordant pairs. The p-value is exact McNemar.

    Raises:
        InvalidInputError: the sequences differ in length.
    """
    if len(a) != len(b):
        raise InvalidInputError(f"paired results must align, got {len(a)} and {len(b)}")
    n = len(a)
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    if n == 0:
        return PairedDifference(0, 0.0, -1.0, 1.0, 0, 0, 1.0)
    diff = (only_a - only_b) / n
    adj_a, adj_b, adj_n = only_a + 0.5, only_b + 0.5, n + 2.0
    adj_diff = (adj_a - adj_b) / adj_n
    var = ((adj_a + adj_b) - (adj_a - adj_b) ** 2 / adj_n) / adj_n**2
    half = z * math.sqrt(max(var, 0.0))
    return PairedDifference(
        n=n,
        difference=diff,
        low=max(-1.0, adj_diff - half),
        high=min(1.0, adj_diff + half),
        only_a=only_a,
        only_b=only_b,
        p_value=mcnemar_exact_p(only_a, only_b),
    )


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    if len(values) == 1:
        return float(values[0])
    if q == 0.5:
        return float(statistics.median(values))
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """The probability that a positive scores above a negative (ties count half); ``None``
    unless both classes are present."""
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum = 0.0
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1
        rank_sum += sum(mid for k in range(i, j + 1) if labels[order[k]])
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)

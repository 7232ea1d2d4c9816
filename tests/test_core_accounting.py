"""Phase timing with overlapping phases, token counting, and the reward guard."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

import pytest
from specs_core.accounting import Accountant
from specs_core.errors import InvalidInputError, RewardError
from specs_core.rewards import Aggregation, GuardedRewardModel, aggregate
from specs_core.types import PHASES, Completion, FinishReason, TokenLogprobs


def test_latency_has_total_and_every_phase_and_overlap_is_not_double_counted() -> None:
    acct = Accountant()

    def timed(phase: str) -> None:
        with acct.phase(phase):
            time.sleep(0.05)

    threads = [threading.Thread(target=timed, args=(p,)) for p in ("target_score", "reward")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usage = acct.finish()
    assert set(usage.latency_s) == {*PHASES, "total"}
    assert usage.latency_s["target_score"] >= 0.05 and usage.latency_s["reward"] >= 0.05
    # the two phases overlapped: the total is well below their sum
    assert usage.latency_s["total"] < usage.latency_s["target_score"] + usage.latency_s["reward"]
    assert usage.latency_s["overhead"] >= 0


def test_unknown_phase_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="unknown phase"), Accountant().phase("nap"):
        pass


def test_tokens_are_counted_per_model_with_shared_prefill() -> None:
    acct = Accountant()
    c = Completion("a", (1, 2), (-0.1, -0.2), FinishReason.STOP, prompt_tokens=10, cached_tokens=4)
    acct.add_generation("draft", [[c, c, c]])
    acct.add_scoring("target", [TokenLogprobs((5, 6, 7), (-1.0, -1.0, -1.0), prompt_tokens=10)])
    usage = acct.finish()
    draft = usage.tokens["draft"]
    assert (draft.prompt, draft.generated, draft.cached, draft.calls) == (10, 6, 4, 1)
    assert usage.tokens["target"].prompt == 13


@pytest.mark.parametrize(
    ("how", "expected"),
    [("last", 0.5), ("min", 0.2), ("prod", 0.9 * 0.2 * 0.5), ("mean", (0.9 + 0.2 + 0.5) / 3)],
)
def test_aggregations(how: str, expected: float) -> None:
    assert math.isclose(aggregate([0.9, 0.2, 0.5], how), expected)
    assert math.isclose(aggregate([0.9, 0.2, 0.5], Aggregation(how)), expected)


def test_aggregate_rejects_empty_and_unknown() -> None:
    with pytest.raises(InvalidInputError):
        aggregate([], "last")
    with pytest.raises(InvalidInputError, match="last, min, prod, mean"):
        aggregate([0.5], "median")


class _CountingRM:
    """A test double reward model: reward = 1 / (1 + number of steps), counting calls."""

    name = "counting"

    def __init__(self, result: object = None) -> None:
        self.calls: list[list[list[str]]] = []
        self.result = result

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        self.calls.append([list(s) for s in solutions])
        if self.result is not None:
            return self.result  # type: ignore[return-value]
        return [[1 / (2 + j) for j in range(len(s))] for s in solutions]

    def close(self) -> None:
        pass


def test_guard_caches_prefixes_and_counts_hits() -> None:
    acct = Accountant()
    rm = _CountingRM()
    guard = GuardedRewardModel(rm, acct)
    assert guard.last("q", [["a", "b"]]) == [1 / 3]
    # the prefix ["a"] was scored as part of ["a", "b"]: a hit, no new call
    assert guard.last("q", [["a"]]) == [1 / 2]
    assert guard.all_steps("q", [["a", "b"]]) == [[1 / 2, 1 / 3]]
    assert len(rm.calls) == 1
    usage = acct.finish()
    assert (usage.reward_cache_hits, usage.reward_cache_misses) == (2, 1)
    assert usage.latency_s["reward"] > 0


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([[0.5]], "1 results for 2 solutions"),
        ([[0.5], [0.5, 0.5]], "solution of 1 steps"),
        ([[0.5], [math.nan]], "NaN"),
        ([[0.5], [1.5]], r"\[0, 1\]"),
        ([[0.5], ["x"]], "numbers"),
    ],
)
def test_guard_rejects_malformed_scores_naming_the_model(result: object, message: str) -> None:
    guard = GuardedRewardModel(_CountingRM(result), Accountant(), plugin="my-plugin")
    with pytest.raises(RewardError, match=message) as info:
        guard.last("q", [["a"], ["b"]])
    assert "'counting'" in str(info.value) and "my-plugin" in str(info.value)

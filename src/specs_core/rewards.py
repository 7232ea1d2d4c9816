"""Reward aggregation, and the guard every policy talks to a reward model through.

The guard validates what a reward model returns (a search never continues on malformed scores),
and caches rewards by partial solution so that a prefix revisited by a policy is never scored twice
by the same reward model within a search.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from enum import Enum

from specs_core.accounting import Accountant
from specs_core.errors import InvalidInputError, RewardError
from specs_core.protocols import (
    LastStepRewardModel,
    LogprobRewardModel,
    RewardModel,
    TokenUsageReporter,
)
from specs_core.types import Phase

__all__ = ["Aggregation", "GuardedRewardModel", "TokenTally", "aggregate", "score_every_prefix"]


class Aggregation(str, Enum):
    """How per-step rewards combine into one score for a whole solution."""

    LAST = "last"
    MIN = "min"
    PROD = "prod"
    MEAN = "mean"


def aggregate(rewards: Sequence[float], how: Aggregation | str) -> float:
    """Combine per-step rewards into one score.

    Raises:
        InvalidInputError: ``rewards`` is empty or ``how`` is unknown.
    """
    if not rewards:
        raise InvalidInputError("cannot aggregate the rewards of a solution with no steps")
    try:
        how = Aggregation(how)
    except ValueError as e:
        allowed = ", ".join(a.value for a in Aggregation)
        raise InvalidInputError(f"unknown aggregation {how!r}; use one of {allowed}") from e
    if how is Aggregation.LAST:
        return float(rewards[-1])
    if how is Aggregation.MIN:
        return float(min(rewards))
    if how is Aggregation.PROD:
        return float(math.prod(rewards))
    return float(sum(rewards) / len(rewards))


def score_every_prefix(
    score_last: Callable[[list[list[str]]], list[float]], solutions: Sequence[Sequence[str]]
) -> list[list[float]]:
    """Per-step rewards from a last-step scorer: every prefix of every solution, in one call.

    For reward models that judge the newest step of a partial solution (an LLM judge, a
    classifier reading the last separator): ``score_last`` receives all prefixes at once.
    """
    prefixes = [list(s[: j + 1]) for s in solutions for j in range(len(s))]
    flat = score_last(prefixes) if prefixes else []
    rewards: list[list[float]] = []
    start = 0
    for s in solutions:
        rewards.append(list(flat[start : start + len(s)]))
        start += len(s)
    return rewards


class TokenTally:
    """Tokens a reward model evaluated, handed out by ``take_token_usage``, kept per thread.

    A search takes the tokens right after its own scoring call, on the thread that made it; other
    searches scoring on the same model from other threads (a LangChain batch on one ``Specs``)
    keep their counts apart. ``add`` must therefore run on the thread that called the model, not
    on a worker the model fans out to.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _counts(self) -> list[int]:
        counts: list[int] | None = getattr(self._local, "counts", None)
        if counts is None:
            counts = self._local.counts = [0, 0]
        return counts

    def add(self, *, prompt: int, cached: int = 0) -> None:
        """Count the tokens of one model call made on this thread."""
        counts = self._counts()
        counts[0] += prompt
        counts[1] += cached

    def take(self) -> dict[str, int]:
        """This thread's counts since its last ``take``, reset to zero."""
        counts = self._counts()
        usage = {"prompt": counts[0], "cached": counts[1]}
        counts[0] = counts[1] = 0
        return usage


_Key = tuple[str, tuple[str, ...]]


class GuardedRewardModel:
    """Validates and caches the rewards of one reward model for one search.

    A reward model that also implements
    :class:`~specs_core.protocols.LastStepRewardModel` is asked for last-step rewards through it
    when only those are needed; one that implements
    :class:`~specs_core.protocols.TokenUsageReporter` has its tokens added to the search's
    accounting after each call.

    Args:
        model: the reward model.
        accountant: where cache hits/misses and reward time are recorded.
        plugin: the plugin that registered the model, named in error messages.
    """

    def __init__(self, model: RewardModel, accountant: Accountant, plugin: str = "") -> None:
        self.model = model
        self._acct = accountant
        self._owner = f"reward model {model.name!r}" + (f" (plugin {plugin!r})" if plugin else "")
        self._cache: dict[_Key, float] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self.model.name

    def _check(self, value: object, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RewardError(
                f"{self._owner} returned {value!r} for {where}: rewards must be numbers"
            )
        reward = float(value)
        if math.isnan(reward):
            raise RewardError(f"{self._owner} returned NaN for {where}; fix the reward model")
        if not 0.0 <= reward <= 1.0:
            raise RewardError(
                f"{self._owner} returned {reward} for {where}: rewards must lie in [0, 1]"
            )
        return reward

    def _check_rows(self, got: object, expected: int) -> list[object]:
        if not isinstance(got, (list, tuple)) or len(got) != expected:
            size = len(got) if isinstance(got, (list, tuple)) else type(got).__name__
            raise RewardError(
                f"{self._owner} returned {size} results for {expected} solutions; it must "
                "return one per solution"
            )
        return list(got)

    def reads(self, role: str) -> bool:
        """The model computes its rewards from ``role``'s token log-probabilities, so a search
        holding them should pass them (see :meth:`last`)."""
        return isinstance(self.model, LogprobRewardModel) and self.model.reads_role == role

    def _fetch(
        self,
        question: str,
        todo: list[tuple[str, ...]],
        last_only: bool,
        given: Mapping[tuple[str, ...], Sequence[float]] | None = None,
    ) -> None:
        """Score the uncached solutions in ``todo`` and fill the cache."""
        if not todo:
            return
        with self._acct.phase(Phase.REWARD):
            if given is not None and isinstance(self.model, LogprobRewardModel):
                rows = self._check_rows(
                    self.model.score_last_given(
                        question, [list(s) for s in todo], [list(given[s]) for s in todo]
                    ),
                    len(todo),
                )
                fresh = {
                    (question, sol): self._check(r, f"the last of {len(sol)} steps")
                    for sol, r in zip(todo, rows, strict=True)
                }
            elif last_only and isinstance(self.model, LastStepRewardModel):
                rows = self._check_rows(
                    self.model.score_last(question, [list(s) for s in todo]), len(todo)
                )
                fresh = {
                    (question, sol): self._check(r, f"the last of {len(sol)} steps")
                    for sol, r in zip(todo, rows, strict=True)
                }
            else:
                rows = self._check_rows(
                    self.model.score(question, [list(s) for s in todo]), len(todo)
                )
                fresh = {}
                for sol, row in zip(todo, rows, strict=True):
                    if not isinstance(row, (list, tuple)) or len(row) != len(sol):
                        raise RewardError(
                            f"{self._owner} returned {row!r} for a solution of {len(sol)} steps; "
                            "it must return a list with one reward per step"
                        )
                    for j, r in enumerate(row):
                        fresh[(question, sol[: j + 1])] = self._check(r, f"step {j + 1}")
        if isinstance(self.model, TokenUsageReporter):
            used = self.model.take_token_usage()
            self._acct.add_tokens(
                self.model.name,
                prompt=int(used.get("prompt", 0)),
                cached=int(used.get("cached", 0)),
            )
        with self._lock:
            self._cache.update(fresh)

    def _lookup(
        self,
        question: str,
        solutions: Sequence[Sequence[str]],
        last_only: bool,
        given: Mapping[tuple[str, ...], Sequence[float]] | None = None,
    ) -> None:
        keys = [tuple(s) for s in solutions]
        for sol in keys:
            if not sol:
                raise InvalidInputError("a solution to score must have at least one step")
        with self._lock:
            if last_only:
                missing = [k for k in keys if (question, k) not in self._cache]
            else:
                missing = [
                    k
                    for k in keys
                    if any((question, k[: j + 1]) not in self._cache for j in range(len(k)))
                ]
        unique = list(dict.fromkeys(missing))
        self._acct.count_reward_lookups(hits=len(keys) - len(missing), misses=len(missing))
        self._fetch(question, unique, last_only, given)

    def last(
        self,
        question: str,
        solutions: Sequence[Sequence[str]],
        logprobs: Sequence[Sequence[float]] | None = None,
    ) -> list[float]:
        """The reward of the last step of each partial solution.

        ``logprobs`` (one sequence of token log-probabilities of the last step per solution,
        under the role the model :meth:`reads`) lets a log-probability reward model answer
        without a model call; other models ignore them.
        """
        given = None
        if logprobs is not None and isinstance(self.model, LogprobRewardModel):
            if len(logprobs) != len(solutions):
                raise InvalidInputError(
                    f"got log-probabilities for {len(logprobs)} of {len(solutions)} solutions"
                )
            given = {tuple(s): lp for s, lp in zip(solutions, logprobs, strict=True)}
        self._lookup(question, solutions, last_only=True, given=given)
        with self._lock:
            return [self._cache[(question, tuple(s))] for s in solutions]

    def all_steps(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """The reward of every step of each solution."""
        self._lookup(question, solutions, last_only=False)
        with self._lock:
            return [
                [self._cache[(question, tuple(s[: j + 1]))] for j in range(len(s))]
                for s in solutions
            ]

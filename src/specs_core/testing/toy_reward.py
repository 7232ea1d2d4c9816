r"""A deterministic toy process reward model that agrees with the toy language models.

:class:`ToyRewardModel` rewards each step from a hash of the question and the step prefix (so
rewards are spread over [0.25, 0.75] and thresholds select different steps) mixed with content
rules built on :func:`~specs_core.testing.toy.toy_answer`:

- a step boxing the right answer scores 0.9 - 1.0, a step boxing a wrong answer 0.05 - 0.2;
- a step naming the right answer gains 0.15; a step naming only numbers of the question or the
  answer gains 0.1, one naming other numbers loses 0.15;
- every step after a wrongly boxed answer is halved; an empty step scores 0.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence

from specs_core.errors import InvalidInputError
from specs_core.testing.toy_tokenizer import _hash_int, toy_answer
from specs_core.text import extract_boxed

__all__ = ["ToyRewardModel"]


def _unit(*parts: object) -> float:
    return (_hash_int(*parts) % 1_000_003) / 1_000_003


class ToyRewardModel:
    """A deterministic toy :class:`~specs_core.protocols.RewardModel` with ``score_last``.

    Args:
        salt: changes the hash part of every reward (another "model").
        ms_per_step: simulated milliseconds per step scored (default 0).
        name: a display name (default ``"toy-prm"``).

    Example:
        >>> prm = ToyRewardModel()
        >>> [[first, last]] = prm.score("What is 2 + 3?", [["First add 2 and 3", "So \\boxed{5}"]])
        >>> last > 0.85
        True
    """

    def __init__(
        self, salt: str = "", *, ms_per_step: float = 0.0, name: str | None = None
    ) -> None:
        if ms_per_step < 0:
            raise InvalidInputError(f"ms_per_step must be >= 0, got {ms_per_step}")
        self.salt = salt
        self.ms_per_step = float(ms_per_step)
        self._name = name or "toy-prm"
        self._lock = threading.Lock()
        self.calls = 0
        self.steps_scored = 0

    @property
    def name(self) -> str:
        """The display name."""
        return self._name

    def _step_reward(self, question: str, prefix: Sequence[str], answer: int) -> float:
        step = prefix[-1]
        if not step.strip():
            return 0.0
        h = _unit("toy-prm", self.salt, question, tuple(prefix))
        boxed = extract_boxed(step)
        if boxed is not None:
            return 0.9 + 0.1 * h if boxed == str(answer) else 0.05 + 0.15 * h
        reward = 0.25 + 0.5 * h
        numbers = {int(n) for n in re.findall(r"\d+", step)}
        known = {int(n) for n in re.findall(r"\d+", question)} | {answer}
        if answer in numbers:
            reward += 0.15
        if numbers:
            reward += 0.1 if numbers <= known else -0.15
        for earlier in prefix[:-1]:
            wrong = extract_boxed(earlier)
            if wrong is not None and wrong != str(answer):
                reward *= 0.5
                break
        return min(1.0, max(0.0, reward))

    def _check(self, question: str, solutions: Sequence[Sequence[str]]) -> None:
        if not isinstance(question, str):
            raise InvalidInputError(f"question must be a string, got {type(question).__name__}")
        for solution in solutions:
            if isinstance(solution, str):
                raise InvalidInputError(
                    "each solution must be a list of step strings, not a string"
                )

    def _spend(self, steps: int) -> None:
        with self._lock:
            self.calls += 1
            self.steps_scored += steps
        if self.ms_per_step > 0:
            time.sleep(self.ms_per_step * steps / 1000.0)

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """One reward in [0, 1] per step of each partial solution."""
        self._check(question, solutions)
        answer = toy_answer(question)
        out = [
            [self._step_reward(question, list(sol[: j + 1]), answer) for j in range(len(sol))]
            for sol in solutions
        ]
        self._spend(sum(len(s) for s in solutions))
        return out

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        """The reward of each solution's last step (equal to the last entry of :meth:`score`).

        Raises:
            InvalidInputError: a solution has no steps.
        """
        self._check(question, solutions)
        if any(len(sol) == 0 for sol in solutions):
            raise InvalidInputError("a solution to score must have at least one step")
        answer = toy_answer(question)
        out = [self._step_reward(question, list(sol), answer) for sol in solutions]
        self._spend(len(solutions))
        return out

    def close(self) -> None:
        """Nothing to free; calling it twice is harmless."""

    def __repr__(self) -> str:
        return f"ToyRewardModel(salt={self.salt!r})"

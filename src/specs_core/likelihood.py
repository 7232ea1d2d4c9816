"""A reward model from a language model's own token log-probabilities (``likelihood``).

The reward of a partial solution is a logistic function of the mean token log-probability that
the scoring model (by default the target) gives its text::

    reward = 1 / (1 + exp(-(slope * m + intercept)))

where ``m`` is the mean over the tokens of the whole partial solution (``window: solution``) or of
its newest step only (``window: step``). A model is more sure of text it would write itself, and
solutions it is unsure of are more often wrong; ``slope`` and ``intercept`` map that to a
probability of being correct, fitted on labelled solutions (``specs rewards eval --fit``).

Every step is scored given the question and the steps before it, rendered as the policies render
them for generation (the same system prompt, steps joined by the step delimiter), so a step's
log-probabilities are the very ones the target would give it while searching. The token sums of
scored prefixes are remembered, so scoring a partial solution one step longer evaluates only the
new step.

A step is scored as it was written (:func:`~specs_core.text.as_generated`): followed by the
step delimiter, unless it states the final answer. Without the delimiter, a tokenizer that merges
it into the step's last characters would score a last token the model never wrote.

Inside a search the reward is free: the model implements
:class:`~specs_core.protocols.LogprobRewardModel`, and a policy that holds the target's
log-probabilities of a step (its generation of the step, or its scoring of a draft, both of the
step as written) passes them instead of having the step scored again.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from specs_core.hookspecs import hookimpl
from specs_core.protocols import ModelResolver, Scorer
from specs_core.rewards import TokenTally
from specs_core.text import (
    DEFAULT_STEP_DELIMITER,
    DEFAULT_SYSTEM_PROMPT,
    as_generated,
    partial_as_generated,
)
from specs_core.types import Prompt

__all__ = ["LikelihoodOptions", "LikelihoodRewardModel"]

#: Prefixes whose token sums are remembered (a search revisits the last few; an evaluation
#: scores every prefix of a solution in order).
_MEMO_SIZE = 4096


class LikelihoodOptions(BaseModel):
    """Options of the ``likelihood`` reward model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | dict[str, Any] = Field(
        default="target",
        description="the model whose log-probabilities score: a role name or an inline config",
    )
    window: Literal["solution", "step"] = Field(
        default="solution",
        description="mean log-probability over the whole partial solution, or its newest step",
    )
    slope: float = Field(
        default=12.0, gt=0, description="logistic slope on the mean log-probability"
    )
    intercept: float = Field(default=3.0, description="logistic intercept")
    system: str | None = Field(
        default=DEFAULT_SYSTEM_PROMPT, description="system message the steps are scored under"
    )
    step_delimiter: str = Field(
        default=DEFAULT_STEP_DELIMITER, min_length=1, description="text that joins the steps"
    )


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class LikelihoodRewardModel:
    """Rewards each step by how likely the scoring model finds the solution so far.

    Args:
        scorer: any model implementing :class:`~specs_core.protocols.Scorer`.
        options: window, calibration and rendering.
    """

    def __init__(self, scorer: Scorer, options: LikelihoodOptions | None = None) -> None:
        self.options = options or LikelihoodOptions()
        self.scorer = scorer
        self._tally = TokenTally()
        self._memo: OrderedDict[tuple[str, tuple[str, ...]], tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``likelihood:<model name>``."""
        return f"likelihood:{self.scorer.name}"

    def reward(self, mean_logprob: float) -> float:
        """The calibrated reward of a mean token log-probability."""
        o = self.options
        return _sigmoid(o.slope * mean_logprob + o.intercept)

    # -- token sums of steps ------------------------------------------------------------------

    def _key(self, question: str, steps: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        return question, tuple(steps)

    def _remembered(self, key: tuple[str, tuple[str, ...]]) -> tuple[float, int] | None:
        with self._lock:
            value = self._memo.get(key)
            if value is not None:
                self._memo.move_to_end(key)
            return value

    def _remember(self, key: tuple[str, tuple[str, ...]], value: tuple[float, int]) -> None:
        with self._lock:
            self._memo[key] = value
            self._memo.move_to_end(key)
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)

    def _step_sums(
        self, question: str, solutions: Sequence[Sequence[str]]
    ) -> list[list[tuple[float, int]]]:
        """``(sum of log-probabilities, token count)`` of every step of every solution, each
        given the steps before it; prefixes scored before are not scored again."""
        delimiter = self.options.step_delimiter
        todo: dict[tuple[str, tuple[str, ...]], tuple[Prompt, str]] = {}
        for steps in solutions:
            for j in range(len(steps)):
                key = self._key(question, steps[: j + 1])
                if key not in todo and self._remembered(key) is None:
                    partial = partial_as_generated(steps[:j], delimiter)
                    prompt = Prompt(question, partial, self.options.system)
                    todo[key] = (prompt, as_generated(steps[j], delimiter))
        if todo:
            keys = list(todo)
            scored = self.scorer.logprobs([todo[k][0] for k in keys], [todo[k][1] for k in keys])
            for key, s in zip(keys, scored, strict=True):
                self._tally.add(prompt=s.prompt_tokens, cached=s.cached_tokens)
                self._remember(key, (float(s.sum), len(s.logprobs)))
        out: list[list[tuple[float, int]]] = []
        for steps in solutions:
            row = []
            for j in range(len(steps)):
                key = self._key(question, steps[: j + 1])
                value = self._remembered(key)
                if value is None:  # evicted by a concurrent search: score it alone
                    value = self._step_sums(question, [steps[: j + 1]])[0][-1]
                row.append(value)
            out.append(row)
        return out

    def _rewards(self, sums: Sequence[tuple[float, int]]) -> list[float]:
        """The reward after each step from the steps' token sums."""
        rewards = []
        total, count = 0.0, 0
        for step_sum, step_count in sums:
            total, count = total + step_sum, count + step_count
            if self.options.window == "step":
                mean = step_sum / step_count if step_count else 0.0
            else:
                mean = total / count if count else 0.0
            rewards.append(self.reward(mean))
        return rewards

    # -- the reward-model protocol ---------------------------------------------------------------

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """The reward after every step of every solution (one batched scoring call)."""
        return [self._rewards(row) for row in self._step_sums(question, solutions)]

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        """The reward after the last step of each solution."""
        rows = self._step_sums(question, solutions)
        return [self._rewards(row)[-1] if row else self.reward(0.0) for row in rows]

    @property
    def reads_role(self) -> str | None:
        """The role whose log-probabilities this model reads (``None``: an inline model)."""
        return self.options.model if isinstance(self.options.model, str) else None

    def score_last_given(
        self,
        question: str,
        solutions: Sequence[Sequence[str]],
        logprobs: Sequence[Sequence[float]],
    ) -> list[float]:
        """The reward after the last step of each solution, from the log-probabilities of that
        step's tokens that the search already holds; earlier steps come from what this model
        remembers of the search (scored only when it has forgotten them)."""
        for steps, step_logprobs in zip(solutions, logprobs, strict=True):
            if steps:
                key = self._key(question, steps)
                self._remember(key, (float(sum(step_logprobs)), len(step_logprobs)))
        return self.score_last(question, solutions)

    def take_token_usage(self) -> Mapping[str, int]:
        """Tokens scored since the last call (read by the search accounting)."""
        return self._tally.take()

    def close(self) -> None:
        """Nothing to free: the scoring model belongs to the configuration's model pool."""


def _build(options: LikelihoodOptions, models: ModelResolver) -> LikelihoodRewardModel:
    return LikelihoodRewardModel(models(options.model), options)


@hookimpl
def register_reward_models(register: Any) -> None:
    """Register the ``likelihood`` reward model."""
    register(
        "likelihood",
        _build,
        options=LikelihoodOptions,
        description="calibrated mean token log-probability of the solution under a model "
        "(default: the target)",
    )

"""A generic LLM-as-judge process reward model that works with any Scorer backend.

For each step it asks the judge model whether the latest step of a partial solution is correct and
returns ``P(yes) / (P(yes) + P(no))`` from the log-probabilities of the two answers. Every step to
score becomes one prompt with two continuations, all in one batched scoring call, so the two
answers share their prefix. It is the default PRM where no trained PRM is available.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from specs_core.errors import ConfigError
from specs_core.hookspecs import hookimpl
from specs_core.protocols import ModelResolver, Scorer
from specs_core.rewards import TokenTally, score_every_prefix
from specs_core.types import Prompt

__all__ = ["DEFAULT_JUDGE_TEMPLATE", "JudgeOptions", "JudgeRewardModel"]

DEFAULT_JUDGE_TEMPLATE = (
    "You are checking a student's solution to a math problem one step at a time.\n\n"
    "Problem:\n{question}\n\n"
    "Solution so far:\n{steps}\n\n"
    "Is step {index} correct and useful? Answer with Yes or No."
)
DEFAULT_JUDGE_SYSTEM = "You are a careful math teacher. Answer only Yes or No."


class JudgeOptions(BaseModel):
    """Options of the ``judge`` reward model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | dict[str, Any] = Field(
        default="target",
        description="the judge model: a role name (target, draft) or an inline model config",
    )
    template: str = Field(
        default=DEFAULT_JUDGE_TEMPLATE,
        description="user message with {question}, {steps} and {index} placeholders",
    )
    system: str | None = DEFAULT_JUDGE_SYSTEM
    yes: str = "Yes"
    no: str = "No"


def _numbered(steps: Sequence[str]) -> str:
    return "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, start=1))


class JudgeRewardModel:
    """Rewards each step by the judge model's probability of answering "Yes".

    Args:
        scorer: any model implementing :class:`~specs_core.protocols.Scorer`.
        options: the judge's prompt and answer words.
    """

    def __init__(self, scorer: Scorer, options: JudgeOptions | None = None) -> None:
        self.options = options or JudgeOptions()
        for key in ("{question}", "{steps}", "{index}"):
            if key not in self.options.template:
                raise ConfigError(f"reward.template must contain the placeholder {key}")
        self.scorer = scorer
        self._tally = TokenTally()

    @property
    def name(self) -> str:
        """``judge:<model name>``."""
        return f"judge:{self.scorer.name}"

    def _prompt(self, question: str, steps: Sequence[str]) -> Prompt:
        text = self.options.template.format(
            question=question, steps=_numbered(steps), index=len(steps)
        )
        return Prompt(question=text, system=self.options.system)

    def _judge(self, question: str, partials: Sequence[Sequence[str]]) -> list[float]:
        if not partials:
            return []
        prompts: list[Prompt] = []
        answers: list[str] = []
        for steps in partials:
            prompt = self._prompt(question, steps)
            prompts += [prompt, prompt]
            answers += [self.options.yes, self.options.no]
        scored = self.scorer.logprobs(prompts, answers)
        for s in scored[::2]:  # the two answers share one prompt
            self._tally.add(prompt=s.prompt_tokens, cached=s.cached_tokens)
        rewards = []
        for yes, no in zip(scored[::2], scored[1::2], strict=True):
            top = max(yes.sum, no.sum)
            p_yes, p_no = math.exp(yes.sum - top), math.exp(no.sum - top)
            rewards.append(p_yes / (p_yes + p_no))
        return rewards

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        """The reward of each solution's last step (one batched scoring call)."""
        return self._judge(question, solutions)

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """The reward of every step of every solution (one batched scoring call)."""
        return score_every_prefix(lambda prefixes: self._judge(question, prefixes), solutions)

    def take_token_usage(self) -> Mapping[str, int]:
        """Tokens the judge evaluated since the last call (read by the search accounting)."""
        return self._tally.take()

    def close(self) -> None:
        """Nothing to free: the judge model belongs to the configuration's model pool."""


def _build_judge(options: JudgeOptions, models: ModelResolver) -> JudgeRewardModel:
    return JudgeRewardModel(models(options.model), options)


@hookimpl
def register_reward_models(register: Any) -> None:
    """Register the ``judge`` reward model."""
    register(
        "judge",
        _build_judge,
        options=JudgeOptions,
        description="LLM-as-judge PRM: P(Yes) that the latest step is correct, on any Scorer",
    )

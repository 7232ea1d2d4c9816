"""The LLM-as-judge reward model: P(yes) / (P(yes) + P(no)), one batched scoring call."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import pytest
from specs_core.errors import ConfigError
from specs_core.judge import JudgeOptions, JudgeRewardModel
from specs_core.types import Prompt, TokenLogprobs


class _ScriptedScorer:
    """A test double Scorer: 'Yes' gets log 0.6 when the prompt mentions 'good', else log 0.2."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls: list[tuple[list[Prompt], list[str]]] = []

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        self.calls.append((list(prompts), list(continuations)))
        out = []
        for prompt, text in zip(prompts, continuations, strict=True):
            p_yes = 0.6 if "good" in prompt.question.split("Solution so far:")[1] else 0.2
            p = p_yes if text == "Yes" else 0.1
            out.append(TokenLogprobs((1,), (math.log(p),), prompt_tokens=7))
        return out


def test_reward_is_normalised_yes_probability_in_one_call() -> None:
    scorer = _ScriptedScorer()
    judge = JudgeRewardModel(scorer)
    rewards = judge.score_last("What is 1+1?", [["good step"], ["bad step"]])
    assert rewards == pytest.approx([0.6 / 0.7, 0.2 / 0.3])
    assert len(scorer.calls) == 1
    prompts, answers = scorer.calls[0]
    assert answers == ["Yes", "No", "Yes", "No"]
    assert prompts[0] == prompts[1] and prompts[0] != prompts[2]
    assert "What is 1+1?" in prompts[0].question and "Step 1: good step" in prompts[0].question


def test_score_rewards_every_step_with_its_own_prefix() -> None:
    scorer = _ScriptedScorer()
    judge = JudgeRewardModel(scorer)
    rewards = judge.score("q", [["bad", "good", "bad"], ["good"]])
    assert [len(r) for r in rewards] == [3, 1]
    assert rewards[0][0] == pytest.approx(0.2 / 0.3)
    assert rewards[0][1] == pytest.approx(0.6 / 0.7)  # the prefix now contains a good step
    assert len(scorer.calls) == 1
    prompts, _ = scorer.calls[0]
    assert "Is step 3 correct" in prompts[4].question
    assert judge.take_token_usage() == {"prompt": 4 * 7, "cached": 0}
    assert judge.take_token_usage() == {"prompt": 0, "cached": 0}


def test_concurrent_searches_each_take_their_own_tokens() -> None:
    judge = JudgeRewardModel(_ScriptedScorer())
    both_scored = threading.Barrier(2)
    taken: dict[int, dict[str, int]] = {}

    def search(partials: int) -> None:
        judge.score_last("q", [["good"]] * partials)
        both_scored.wait()  # each takes only after the other has scored too
        taken[partials] = dict(judge.take_token_usage())

    threads = [threading.Thread(target=search, args=(n,)) for n in (1, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert taken == {1: {"prompt": 7, "cached": 0}, 3: {"prompt": 3 * 7, "cached": 0}}


def test_template_must_keep_placeholders() -> None:
    with pytest.raises(ConfigError, match="placeholder"):
        JudgeRewardModel(_ScriptedScorer(), JudgeOptions(template="Is it right?"))

"""The toy models pass the conformance suite, and every check catches a deliberately broken model.

The ``Broken*`` classes are test doubles: each wraps the real toy model and injects one bug that a
real backend could have, to show that the check named after it fails.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from specs_core.errors import InvalidInputError
from specs_core.protocols import Capabilities
from specs_core.testing import (
    LANGUAGE_MODEL_CHECKS,
    REWARD_MODEL_CHECKS,
    ToyLanguageModel,
    ToyRewardModel,
    check_language_model,
    check_reward_model,
)
from specs_core.types import Completion, Prompt, SamplingParams, TokenLogprobs


@pytest.fixture(params=["target", "draft", "other"])
def toy(request: pytest.FixtureRequest) -> ToyLanguageModel:
    return ToyLanguageModel(request.param)


@pytest.mark.parametrize("name", sorted(LANGUAGE_MODEL_CHECKS))
def test_toy_passes_each_language_model_check(toy: ToyLanguageModel, name: str) -> None:
    LANGUAGE_MODEL_CHECKS[name](toy, 1e-9)


def test_toy_passes_the_whole_suite_with_a_tight_tolerance() -> None:
    check_language_model(ToyLanguageModel("target", ms_per_token=0.01), tolerance=1e-12)


@pytest.mark.parametrize("name", sorted(REWARD_MODEL_CHECKS))
def test_toy_reward_passes_each_check(name: str) -> None:
    REWARD_MODEL_CHECKS[name](ToyRewardModel(), 0.0)
    REWARD_MODEL_CHECKS[name](ToyRewardModel("salted"), 0.0)


def test_unknown_check_name_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="known checks"):
        check_language_model(ToyLanguageModel(), checks=["stops", "nope"])
    with pytest.raises(InvalidInputError, match="reward_range"):
        check_reward_model(ToyRewardModel(), checks=["nope"])


# -- broken language models (test doubles around the real toy) ---------------------------------


class _Wrapped:
    """Delegates everything to a real toy model."""

    def __init__(self) -> None:
        self.inner = ToyLanguageModel("target")

    @property
    def name(self) -> str:
        return "broken-" + type(self).__name__

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        return self.inner.generate(prompts, params)

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        return self.inner.logprobs(prompts, continuations)

    def close(self) -> None:
        self.inner.close()


class BrokenCapabilitiesAsDict(_Wrapped):
    @property
    def capabilities(self) -> Capabilities:
        return {"scoring": True}  # type: ignore[return-value]


class BrokenBatchOrder(_Wrapped):
    """Returns a batch's results in reverse prompt order."""

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        return self.inner.generate(prompts, params)[::-1]


class BrokenIgnoresStopStrings(_Wrapped):
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        return self.inner.generate(prompts, replace(params, stop=()))


class BrokenShiftedLogprobs(_Wrapped):
    """Records each token's logprob one position off (a classic echo/logprobs bug)."""

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        groups = self.inner.generate(prompts, params)
        return [
            [replace(c, logprobs=(*c.logprobs[1:], *c.logprobs[:1])) for c in g] for g in groups
        ]


class BrokenIgnoresSeed(_Wrapped):
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        return self.inner.generate(prompts, replace(params, seed=None))


class BrokenIgnoresTopP(_Wrapped):
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        return self.inner.generate(prompts, replace(params, top_p=1.0))


class BrokenStaleKVCache(_Wrapped):
    """Scores a continuation after the previous one when prompts repeat (KV not truncated)."""

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        out = []
        for i, (prompt, text) in enumerate(zip(prompts, continuations, strict=True)):
            if i and prompts[i - 1] == prompt:
                prompt = replace(prompt, partial=prompt.partial + continuations[i - 1])
            out.extend(self.inner.logprobs([prompt], [text]))
        return out


class BrokenDropsPartial(_Wrapped):
    """Starts a fresh answer instead of continuing the partial one."""

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        return self.inner.generate([replace(p, partial="") for p in prompts], params)


class BrokenTokenCounts(_Wrapped):
    """Reports no prompt tokens, like engines that return 0 or -1."""

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        groups = self.inner.generate(prompts, params)
        return [[replace(c, prompt_tokens=0, cached_tokens=0) for c in g] for g in groups]


BROKEN_MODELS: dict[str, type[_Wrapped]] = {
    "interface": BrokenCapabilitiesAsDict,
    "batching": BrokenBatchOrder,
    "stops": BrokenIgnoresStopStrings,
    "logprob_consistency": BrokenShiftedLogprobs,
    "seeded_determinism": BrokenIgnoresSeed,
    "greedy_sampling": BrokenIgnoresTopP,
    "prefix_sharing": BrokenStaleKVCache,
    "partial_continuation": BrokenDropsPartial,
    "token_counts": BrokenTokenCounts,
}


def test_every_language_model_check_has_a_broken_model() -> None:
    assert set(BROKEN_MODELS) == set(LANGUAGE_MODEL_CHECKS)


@pytest.mark.parametrize("name", sorted(BROKEN_MODELS))
def test_check_fails_on_its_broken_model(name: str) -> None:
    broken = BROKEN_MODELS[name]()
    with pytest.raises(AssertionError, match=f"conformance check {name!r} failed"):
        LANGUAGE_MODEL_CHECKS[name](broken, 1e-6)


@pytest.mark.parametrize("name", sorted(BROKEN_MODELS))
def test_the_whole_suite_names_the_failed_check(name: str) -> None:
    with pytest.raises(AssertionError) as info:
        check_language_model(BROKEN_MODELS[name](), tolerance=1e-6)
    assert f"check {name!r}" in str(info.value)
    assert "checks failed" in str(info.value)


def test_the_wrapper_itself_conforms() -> None:
    check_language_model(_Wrapped(), tolerance=1e-9)


def test_a_check_that_raises_is_reported_by_name() -> None:
    class BrokenScoringRaises(_Wrapped):
        def logprobs(
            self, prompts: Sequence[Prompt], continuations: Sequence[str]
        ) -> list[TokenLogprobs]:
            raise RuntimeError("engine crashed")

    with pytest.raises(
        AssertionError, match=r"'prefix_sharing' raised RuntimeError: engine crashed"
    ):
        check_language_model(BrokenScoringRaises(), checks=["prefix_sharing", "stops"])


# -- broken reward models -----------------------------------------------------------------------


class _WrappedReward:
    def __init__(self) -> None:
        self.inner = ToyRewardModel()

    @property
    def name(self) -> str:
        return "broken-" + type(self).__name__

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        return self.inner.score(question, solutions)

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        return self.inner.score_last(question, solutions)

    def close(self) -> None:
        self.inner.close()


class BrokenRewardDropsLastStep(_WrappedReward):
    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        return [row[:-1] for row in self.inner.score(question, solutions)]


class BrokenRewardOutOfRange(_WrappedReward):
    """Returns raw logits instead of probabilities."""

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        return [[4 * r - 2 for r in row] for row in self.inner.score(question, solutions)]


class BrokenRewardNoisy(_WrappedReward):
    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        rows = self.inner.score(question, solutions)
        return [[min(1.0, max(0.0, r + random.uniform(-0.1, 0.1))) for r in row] for row in rows]


class BrokenRewardBatchPosition(_WrappedReward):
    """Rewards drift with the position in the batch (padding bug)."""

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        rows = self.inner.score(question, solutions)
        return [[r * (1 - 0.1 * i) for r in row] for i, row in enumerate(rows)]


class BrokenRewardLooksAhead(_WrappedReward):
    """A step's reward depends on the steps after it."""

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        rows = self.inner.score(question, solutions)
        return [[r / len(row) for r in row] for row in rows]


class BrokenScoreLastReturnsFirst(_WrappedReward):
    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        return [row[0] for row in self.inner.score(question, solutions)]


BROKEN_REWARDS: dict[str, type[_WrappedReward]] = {
    "reward_shape": BrokenRewardDropsLastStep,
    "reward_range": BrokenRewardOutOfRange,
    "reward_deterministic": BrokenRewardNoisy,
    "reward_batch": BrokenRewardBatchPosition,
    "reward_prefix": BrokenRewardLooksAhead,
    "reward_score_last": BrokenScoreLastReturnsFirst,
}


def test_every_reward_check_has_a_broken_model() -> None:
    assert set(BROKEN_REWARDS) == set(REWARD_MODEL_CHECKS)


@pytest.mark.parametrize("name", sorted(BROKEN_REWARDS))
def test_reward_check_fails_on_its_broken_model(name: str) -> None:
    with pytest.raises(AssertionError, match=f"conformance check {name!r} failed"):
        REWARD_MODEL_CHECKS[name](BROKEN_REWARDS[name](), 1e-9)
    with pytest.raises(AssertionError, match=f"check {name!r}"):
        check_reward_model(BROKEN_REWARDS[name]())


def test_reward_wrapper_itself_conforms() -> None:
    check_reward_model(_WrappedReward(), tolerance=0.0)


def test_reward_model_without_score_last_passes() -> None:
    class NoScoreLast:
        name = "no-score-last"

        def __init__(self) -> None:
            self.inner = ToyRewardModel()

        def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
            return self.inner.score(question, solutions)

        def close(self) -> None:
            pass

    check_reward_model(NoScoreLast())

"""Every contract of specs in one place: models, reward models, policies and their roles.

- :class:`Generator`, :class:`Scorer`, :class:`LanguageModel`: what a backend's model does, with
  its :class:`Capabilities` declared as data.
- :class:`RewardModel`, and the optional :class:`LastStepRewardModel` and
  :class:`TokenUsageReporter` that a reward model may also implement.
- :class:`ProposalVerifier` (with :class:`Verification` and :data:`ContinueIf`): a model that
  verifies another model's tokens in one pass and continues from what it accepts.
- :class:`Policy`, :class:`Roles` and :class:`ModelResolver`: what a search policy is, the models
  it is built with, and how a reward-model factory reaches the configuration's models.

All calls are batch-first. Texts go in and come out; each model tokenizes for itself, so a draft
and a target of different families can be compared on the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from specs_core.errors import CapabilityError, ConfigError, InvalidInputError
from specs_core.types import (
    Completion,
    Prompt,
    SamplingParams,
    SearchResult,
    StepCallback,
    TokenLogprobs,
)

__all__ = [
    "Capabilities",
    "ContinueIf",
    "Generator",
    "HiddenStateReader",
    "LanguageModel",
    "LastStepRewardModel",
    "LogprobRewardModel",
    "ModelResolver",
    "Policy",
    "ProposalVerifier",
    "RewardModel",
    "Roles",
    "Scorer",
    "TokenUsageReporter",
    "Verification",
    "check_pairs",
    "check_shared_tokenizer",
    "require",
]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared as data so that a policy can check it up front.

    Attributes:
        batched_generation: ``n`` continuations of a prompt are produced in one batched call.
        prefix_cache: a prefix shared by several calls or candidates is evaluated once.
        generation_logprobs: generated tokens come with their log-probabilities.
        scoring: :meth:`Scorer.logprobs` is supported.
        seeded: a seed makes sampling reproducible.
        concurrent: the model may be called from several threads at once (it serialises itself).
        reproducible_interleaved: searches whose calls interleave on the model get the results
            each gets when run alone. False for llama.cpp: an interleaved call can find another
            search's prefix in the prompt cache, and a prefix evaluated in other pieces can
            differ in the last digits, enough to flip a threshold.
    """

    batched_generation: bool = True
    prefix_cache: bool = False
    generation_logprobs: bool = True
    scoring: bool = True
    seeded: bool = True
    concurrent: bool = True
    reproducible_interleaved: bool = True


def require(capabilities: Capabilities, needed: Sequence[str], *, who: str, why: str) -> None:
    """Raise :class:`CapabilityError` unless every capability in ``needed`` is present.

    Args:
        capabilities: the model's declared capabilities.
        needed: attribute names of :class:`Capabilities` that must be true.
        who: the model or role, for the message (e.g. ``"target 'qwen-1.5b'"``).
        why: what needs them (e.g. ``"policy 'specs'"``).
    """
    missing = [name for name in needed if not getattr(capabilities, name)]
    if missing:
        raise CapabilityError(
            f"{who} lacks {', '.join(missing)}, which {why} needs: choose a backend that "
            "supports it or another policy"
        )


def check_pairs(prompts: Sequence[Prompt], continuations: Sequence[str]) -> None:
    """Raise :class:`InvalidInputError` unless :meth:`Scorer.logprobs` got one continuation per
    prompt."""
    if len(prompts) != len(continuations):
        raise InvalidInputError(
            f"got {len(prompts)} prompts and {len(continuations)} continuations; pass one "
            "continuation per prompt"
        )


@runtime_checkable
class Generator(Protocol):
    """Generates continuations of prompts."""

    @property
    def name(self) -> str:
        """A stable, human-readable model name (used as the accounting key)."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this model supports."""
        ...

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Continue each prompt ``params.n`` times.

        Returns:
            One list of ``params.n`` completions per prompt, in prompt order.
        """
        ...


@runtime_checkable
class Scorer(Protocol):
    """Scores given continuations of prompts without generating."""

    @property
    def name(self) -> str:
        """A stable, human-readable model name (used as the accounting key)."""
        ...

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        """The log-probability of ``continuations[i]`` appended to ``prompts[i]``.

        Prompts that are equal share their evaluated prefix where the backend has a prefix cache.
        """
        ...


@runtime_checkable
class LanguageModel(Generator, Scorer, Protocol):
    """A loaded model that generates and scores. Weights load on first use."""

    def close(self) -> None:
        """Free the model's resources. Calling it twice is harmless."""
        ...


@runtime_checkable
class RewardModel(Protocol):
    """A process reward model: one reward in [0, 1] per step of each partial solution."""

    @property
    def name(self) -> str:
        """A stable, human-readable name."""
        ...

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """Rewards for every step of every partial solution.

        Args:
            question: the problem statement.
            solutions: each a list of step texts, without the step delimiter.

        Returns:
            ``rewards[i][j]`` is the reward of step ``j`` of solution ``i`` (higher is better,
            within [0, 1]); ``len(rewards[i]) == len(solutions[i])``.
        """
        ...

    def close(self) -> None:
        """Free resources. Calling it twice is harmless."""
        ...


@runtime_checkable
class LastStepRewardModel(Protocol):
    """Optional: a reward model that scores only the last step of each partial solution.

    Implement it when scoring every step costs more than scoring the last one (an LLM judge, a
    classifier reading the last separator); searches that need the newest step's reward only
    call it instead of :meth:`RewardModel.score`.
    """

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        """The reward in [0, 1] of the last step of each solution (steps without delimiter)."""
        ...


@runtime_checkable
class HiddenStateReader(Protocol):
    """Optional: a model that returns its final hidden states (what probe reward models read)."""

    @property
    def weights_sha256(self) -> str:
        """The sha256 of the model's weights file, so that a probe trained on it can check it
        reads the same model."""
        ...

    def hidden_states(self, prompts: Sequence[Prompt]) -> list[list[float]]:
        """The final hidden state (after the last norm) at the last token of each prompt as the
        model renders it (chat template and open partial answer)."""
        ...


@runtime_checkable
class LogprobRewardModel(Protocol):
    """Optional: a reward model computed from one role's token log-probabilities of the steps.

    A search that already holds those log-probabilities (the target's own generation of a step,
    or its scoring of a draft) hands them over, and the reward costs no model call.
    """

    @property
    def reads_role(self) -> str | None:
        """The role (``"target"``, ``"draft"``) whose log-probabilities it reads; ``None`` when
        it reads a model of its own."""
        ...

    def score_last_given(
        self,
        question: str,
        solutions: Sequence[Sequence[str]],
        logprobs: Sequence[Sequence[float]],
    ) -> list[float]:
        """The reward of each solution's last step, given the role's log-probability of each
        token of that step (``logprobs[i]`` for ``solutions[i]``)."""
        ...


@runtime_checkable
class TokenUsageReporter(Protocol):
    """Optional: a reward model that runs a language model and reports the tokens it evaluated.

    The search calls :meth:`take_token_usage` right after each of its own reward calls, on the
    thread that made it, and adds the counts to its accounting under the reward model's name
    (see :class:`specs_core.rewards.TokenTally` for a per-thread implementation).
    """

    def take_token_usage(self) -> Mapping[str, int]:
        """``{"prompt": int, "cached": int}`` evaluated on this thread since its last take."""
        ...


@dataclass(frozen=True)
class Verification:
    """What a :class:`ProposalVerifier` returns.

    Attributes:
        scores: per proposal, the verifier's untempered log-probabilities of its tokens.
        accepted: per proposal, how many leading tokens the verifier's sampling accepted.
        completions: the continuations (one per proposal), or ``None`` when ``continue_if``
            declined them.
        score_interval: ``time.perf_counter`` readings around the verification pass.
        generate_interval: readings around the continuation (``None`` without one).
    """

    scores: list[TokenLogprobs]
    accepted: list[int]
    completions: list[Completion] | None
    score_interval: tuple[float, float]
    generate_interval: tuple[float, float] | None = None


ContinueIf = Callable[[list[TokenLogprobs]], bool]
"""Decides, from the verifier's scores of the proposals, whether to continue them."""


@runtime_checkable
class ProposalVerifier(Protocol):
    """A model that verifies proposed tokens in one pass and continues from what it accepts.

    Backends implement it as an optional extension of :class:`LanguageModel` (llama.cpp and the
    toy backend do); the SPECS hybrid step uses it.
    """

    @property
    def tokenizer_id(self) -> str:
        """A fingerprint of the vocabulary: models with equal ids tokenize text alike."""
        ...

    def verify_proposals(
        self,
        prompt: Prompt,
        proposals: Sequence[Sequence[int]],
        params: SamplingParams,
        continue_if: ContinueIf,
    ) -> Verification:
        """Score ``proposals`` (token ids in this model's vocabulary) after ``prompt``; then,
        when ``continue_if(scores)`` is true, continue sample ``k`` from proposal ``k``.

        Continuation ``k`` accepts the longest prefix of proposal ``k`` that
        :func:`specs_core.backend_kit.ngram.accept_by_sampling` accepts with sample ``k``'s
        random stream, then generates the rest as usual. The continuations are therefore
        distributed exactly as ``generate([prompt], params)`` (and, the computation being the
        same, equal to it for the same seed). ``continue_if`` is called with the model's lock
        held: it must not call the model.

        Raises:
            InvalidInputError: ``len(proposals) != params.n``.
        """
        ...


def check_shared_tokenizer(draft: object, target: object, *, why: str) -> ProposalVerifier:
    """The target as a :class:`ProposalVerifier` sharing the draft's tokenizer.

    Raises:
        ConfigError: the target cannot verify proposals, or the two tokenizers differ.
    """
    draft_name = getattr(draft, "name", "draft")
    target_name = getattr(target, "name", "target")
    if not isinstance(target, ProposalVerifier):
        raise ConfigError(
            f"{why} needs a target that verifies draft tokens, but {target_name!r} "
            f"({type(target).__name__}) does not: use the llamacpp or toy backend for the "
            "target, or set hybrid: false"
        )
    draft_id = getattr(draft, "tokenizer_id", None)
    if not isinstance(draft_id, str) or draft_id != target.tokenizer_id:
        raise ConfigError(
            f"{why} needs a draft and a target that share a tokenizer, but {draft_name!r} and "
            f"{target_name!r} do not: pick two models of one family (e.g. "
            "qwen2.5-coder-0.5b and qwen2.5-coder-1.5b), or set hybrid: false"
        )
    return target


@dataclass(frozen=True)
class Roles:
    """The models a policy works with.

    Attributes:
        target: the large model (``None`` when the policy does not use it).
        draft: the small model.
        reward: the process reward model.
        reward_plugin: the plugin that registered the reward model, named in error messages.
    """

    target: LanguageModel | None = None
    draft: LanguageModel | None = None
    reward: RewardModel | None = None
    reward_plugin: str = ""


@runtime_checkable
class Policy(Protocol):
    """A search policy bound to its models (built by a registered factory from options and
    :class:`Roles`). :class:`specs_core.search.SearchPolicy` is a base class for writing one."""

    def run(self, question: str, *, on_step: StepCallback | None = None) -> SearchResult:
        """Solve ``question``; ``on_step`` is called with each step as it is committed."""
        ...


class ModelResolver(Protocol):
    """Hands reward-model factories the configuration's shared models (and other reward models)."""

    def __call__(self, ref: str | Mapping[str, Any]) -> LanguageModel:
        """Resolve ``ref`` (``"target"``, ``"draft"``, or ``{"backend": ..., ...}``)."""
        ...

    def reward_model(self, config: Mapping[str, Any], where: str) -> RewardModel:
        """Build another registered reward model from ``{"name": ..., **options}``.

        ``where`` names the config location in error messages (e.g. ``"reward.parts[0]"``).
        """
        ...

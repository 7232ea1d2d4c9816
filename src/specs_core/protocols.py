"""The three contracts every engine and reward model implements, and their capabilities.

All calls are batch-first. Texts go in and come out; each model tokenizes for itself, so a draft
and a target of different families can be compared on the same text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from specs_core.errors import CapabilityError, InvalidInputError
from specs_core.types import Completion, Prompt, SamplingParams, TokenLogprobs

__all__ = [
    "Capabilities",
    "Generator",
    "LanguageModel",
    "RewardModel",
    "Scorer",
    "check_pairs",
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
    """

    batched_generation: bool = True
    prefix_cache: bool = False
    generation_logprobs: bool = True
    scoring: bool = True
    seeded: bool = True
    concurrent: bool = True


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

"""Value objects shared by backends, reward models, policies and integrations.

Everything on the hot path is a frozen dataclass. Texts are plain ``str``; token ids and logprobs
are tuples so that values are hashable and cannot be changed behind a caller's back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from specs_core.errors import InvalidInputError

__all__ = [
    "PHASES",
    "CandidateRecord",
    "Completion",
    "Decision",
    "FinishReason",
    "Phase",
    "Prompt",
    "SamplingParams",
    "SearchResult",
    "StepCallback",
    "StepRecord",
    "StepSource",
    "StopReason",
    "TokenLogprobs",
    "TokenUsage",
    "Usage",
]


class Phase(str, Enum):
    """A phase of a search whose wall time every result reports."""

    DRAFT_GENERATE = "draft_generate"
    """The draft model generating candidates."""
    TARGET_GENERATE = "target_generate"
    """The target model generating candidates."""
    TARGET_SCORE = "target_score"
    """The target model scoring given text (a prefill, no generation)."""
    DRAFT_SCORE = "draft_score"
    """The draft model scoring given text."""
    REWARD = "reward"
    """The reward model."""
    OVERHEAD = "overhead"
    """Time covered by no other phase (policy logic, waiting)."""


#: The names of the phases every result reports (plus ``total``), in :class:`Phase` order.
PHASES: tuple[str, ...] = tuple(p.value for p in Phase)


class Decision(str, Enum):
    """How a policy arrived at a committed step."""

    TARGET = "target"
    """The target wrote the step; nothing was drafted."""
    DRAFT_ACCEPTED = "draft_accepted"
    """A draft candidate passed verification and was committed."""
    DRAFT_REJECTED = "draft_rejected"
    """Every draft candidate failed verification; the target wrote the step."""
    DRAFT_REJECTED_HYBRID = "draft_rejected_hybrid"
    """Every draft failed verification; the target continued from the drafts' accepted tokens."""
    BEAM = "beam"
    """A beam search kept the step (written by the policy's one model)."""
    BEST_OF_N = "best_of_n"
    """A step of the whole solution chosen among n by the reward model."""
    MAJORITY = "majority"
    """A step of the whole solution chosen by majority vote."""
    GREEDY = "greedy"
    """A step of the one greedy solution."""

    @property
    def rejected_draft(self) -> bool:
        """Drafts were proposed for the step and all were rejected."""
        return self in (Decision.DRAFT_REJECTED, Decision.DRAFT_REJECTED_HYBRID)


class StopReason(str, Enum):
    """Why a search ended."""

    FINISHED = "finished"
    """The chosen solution ended on its own (end of sequence)."""
    MAX_STEPS = "max_steps"
    """The step budget (``max_steps``) was spent before a solution finished."""
    MAX_TOKENS = "max_tokens"
    """A whole solution reached its token budget before it finished."""
    CONTEXT = "context"
    """The next step no longer fitted a model's context window."""
    TIME_LIMIT = "time_limit"
    """The problem's time budget was spent (see :class:`specs_core.search.Budget`)."""
    TOKEN_LIMIT = "token_limit"
    """The problem's budget of generated tokens was spent."""
    STOPPED = "stopped"
    """The caller ended the search (its budget's ``until`` event was set, e.g. when a stop
    string appeared in the committed text)."""


class FinishReason(str, Enum):
    """Why a generated continuation ended."""

    STOP = "stop"
    """A stop string (the step delimiter) was produced; it is kept at the end of the text."""
    LENGTH = "length"
    """``max_tokens`` was reached."""
    EOS = "eos"
    """The model ended its answer (end of sequence): the solution is finished."""


@dataclass(frozen=True)
class Prompt:
    """What a model continues: a question and the assistant's answer so far.

    Each backend renders ``system`` and ``question`` with its own chat template and then continues
    ``partial`` as the (still open) assistant message, so draft and target may differ in family.

    Attributes:
        question: the user's question.
        partial: the assistant's partial answer (earlier steps, delimiters included).
        system: an optional system message.
    """

    question: str
    partial: str = ""
    system: str | None = None


@dataclass(frozen=True)
class SamplingParams:
    """Backend-neutral sampling options, mapped by each backend to its engine.

    Attributes:
        n: continuations per prompt.
        temperature: 0 means greedy decoding.
        top_p: nucleus sampling mass.
        max_tokens: the most tokens to generate per continuation.
        stop: stop strings; the first one produced ends the continuation and is kept in the text.
        seed: makes sampling reproducible; ``None`` means unseeded.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise InvalidInputError(f"n must be at least 1, got {self.n}")
        if self.temperature < 0 or math.isnan(self.temperature):
            raise InvalidInputError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidInputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if any(not s for s in self.stop):
            raise InvalidInputError("stop strings must not be empty")


def _mean(values: tuple[float, ...]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass(frozen=True)
class Completion:
    """One generated continuation.

    Attributes:
        text: the continuation text (ends with the stop string when ``finish_reason`` is STOP).
        token_ids: the generated token ids.
        logprobs: the model's log-probability of each generated token under its untempered
            distribution (temperature 1), so that it equals what scoring the text returns.
        finish_reason: why generation ended.
        prompt_tokens: tokens in the rendered prompt.
        cached_tokens: prompt tokens served from a cache instead of being evaluated.
        draft_tokens_proposed: tokens a token-level drafter (e.g. n-gram lookup) proposed while
            generating this continuation (0 without speculative decoding).
        draft_tokens_accepted: proposed tokens that the model's own sampling accepted.
        draft_rounds: verification passes that checked a non-empty proposal.
    """

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason
    prompt_tokens: int = 0
    cached_tokens: int = 0
    draft_tokens_proposed: int = 0
    draft_tokens_accepted: int = 0
    draft_rounds: int = 0

    @property
    def completion_tokens(self) -> int:
        """Number of generated tokens."""
        return len(self.token_ids)

    @property
    def sum_logprob(self) -> float:
        """Total log-probability of the generated tokens."""
        return sum(self.logprobs)

    @property
    def mean_logprob(self) -> float:
        """Mean per-token log-probability (0.0 for an empty continuation)."""
        return _mean(self.logprobs)


@dataclass(frozen=True)
class TokenLogprobs:
    """A model's log-probabilities of a continuation's tokens given its prefix.

    Attributes:
        token_ids: the continuation's tokens, as the model tokenized them.
        logprobs: one log-probability per token.
        prompt_tokens: tokens of the rendered prefix.
        cached_tokens: prefix tokens served from a cache instead of being evaluated.
    """

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def sum(self) -> float:
        """Total log-probability."""
        return sum(self.logprobs)

    @property
    def mean(self) -> float:
        """Mean per-token log-probability (0.0 for an empty continuation)."""
        return _mean(self.logprobs)


class StepSource(str, Enum):
    """Which model wrote a step."""

    DRAFT = "draft"
    TARGET = "target"


@dataclass(frozen=True)
class CandidateRecord:
    """One candidate step considered by a policy, with every score it got.

    Attributes:
        text: the candidate step text.
        source: the model that generated it.
        finished: the candidate ended the solution.
        draft_logprob: its log-probability under the draft (mean or sum, as the policy uses).
        target_logprob: its log-probability under the target (mean or sum, as the policy uses).
        reward: the reward model's score of the partial solution ending with this step.
        score: the policy's selection score (SPECS: ``(l_t - l_d) + beta * r``).
        accepted: it passed the policy's acceptance test (or, for target candidates, was kept).
        draft_prefix_tokens: for a target candidate of a SPECS hybrid step, how many of its
            leading tokens were taken over from the rejected draft it was paired with (``None``
            outside hybrid steps).
        duplicate: its text repeats an earlier candidate's of the same step, so it took no part
            in the decision (it shares that candidate's scores).
        tokens: how many tokens its model generated for it (``None`` when not known).
    """

    text: str
    source: StepSource
    finished: bool = False
    draft_logprob: float | None = None
    target_logprob: float | None = None
    reward: float | None = None
    score: float | None = None
    accepted: bool = False
    draft_prefix_tokens: int | None = None
    duplicate: bool = False
    tokens: int | None = None


@dataclass(frozen=True)
class StepRecord:
    """One committed step of a search and the decision that produced it.

    Attributes:
        index: 0-based step number.
        source: the model that wrote the committed step.
        text: the committed step text.
        reward: the reward of the partial solution ending with this step.
        drafted: draft candidates were proposed for this step.
        accepted: a draft candidate was accepted (``None`` when nothing was drafted).
        decision: how the policy arrived at the step.
        switched_to_draft: after this step the policy moved to draft mode.
        candidates: every candidate considered, drafts first.
        beam: the beam index for multi-beam policies (0 otherwise).
    """

    index: int
    source: StepSource
    text: str
    reward: float | None
    drafted: bool
    accepted: bool | None
    decision: Decision
    switched_to_draft: bool = False
    candidates: tuple[CandidateRecord, ...] = ()
    beam: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.decision, Decision):
            try:
                object.__setattr__(self, "decision", Decision(self.decision))
            except ValueError:
                allowed = ", ".join(d.value for d in Decision)
                raise InvalidInputError(
                    f"step decision {self.decision!r} is unknown; use a Decision ({allowed})"
                ) from None


#: Called by a policy each time it commits a step (used for streaming).
StepCallback = Callable[[StepRecord], None]


@dataclass
class TokenUsage:
    """Token counts for one model.

    The ``draft_*`` counters describe token-level speculative decoding inside the model's own
    generation (see :mod:`specs_core.backend_kit.ngram`); they stay 0 when it is off.
    """

    prompt: int = 0
    generated: int = 0
    cached: int = 0
    calls: int = 0
    draft_proposed: int = 0
    draft_accepted: int = 0
    draft_rounds: int = 0

    @property
    def mean_accepted(self) -> float:
        """Mean accepted draft tokens per verification pass (0.0 without any)."""
        return self.draft_accepted / self.draft_rounds if self.draft_rounds else 0.0


@dataclass(frozen=True)
class Usage:
    """Measured cost of one search.

    Attributes:
        latency_s: wall seconds with ``total`` and one key per entry of :data:`PHASES`.
        tokens: token counts per model name.
        reward_cache_hits: reward lookups answered from the cache.
        reward_cache_misses: reward lookups that called the reward model.
        hybrid_steps: SPECS hybrid steps: every draft was rejected and the target continued
            from the drafts' accepted prefixes.
        hybrid_proposed: draft tokens offered to the target in hybrid steps.
        hybrid_accepted: of those, tokens the target's sampling accepted (not decoded again).
    """

    latency_s: Mapping[str, float]
    tokens: Mapping[str, TokenUsage]
    reward_cache_hits: int = 0
    reward_cache_misses: int = 0
    hybrid_steps: int = 0
    hybrid_proposed: int = 0
    hybrid_accepted: int = 0


@dataclass(frozen=True)
class SearchResult:
    """The outcome of one policy run on one question.

    Counts of steps (by source, accepted and rejected drafts, switches) are derived from
    ``steps``, so that every policy reports them alike.

    Attributes:
        question: the question asked.
        policy: the policy's registered name.
        text: the full chosen solution.
        answer: the final answer extracted from ``text`` (``None`` when none was found).
        steps: the committed steps of the search, in order (for multi-beam policies, every
            beam's steps, tagged with ``beam``).
        solution_steps: the chosen solution split into its steps.
        final_score: the chosen solution's aggregated reward (``None`` without a reward model).
        finished: the chosen solution ended on its own (not cut by the step or token limit).
        stop_reason: why the search ended.
        usage: latency per phase and tokens per model.
        extra: policy-specific figures (JSON-ready).
    """

    question: str
    policy: str
    text: str
    answer: str | None
    steps: tuple[StepRecord, ...]
    solution_steps: tuple[str, ...]
    final_score: float | None
    finished: bool
    stop_reason: StopReason
    usage: Usage
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def draft_steps(self) -> int:
        """Committed steps written by the draft."""
        return sum(1 for s in self.steps if s.source is StepSource.DRAFT)

    @property
    def target_steps(self) -> int:
        """Committed steps written by the target."""
        return sum(1 for s in self.steps if s.source is StepSource.TARGET)

    @property
    def accepted_draft_steps(self) -> int:
        """Steps where a draft candidate was accepted."""
        return sum(1 for s in self.steps if s.decision is Decision.DRAFT_ACCEPTED)

    @property
    def rejected_draft_steps(self) -> int:
        """Steps where drafts were proposed and every one was rejected."""
        return sum(1 for s in self.steps if s.decision.rejected_draft)

    @property
    def switches(self) -> int:
        """Times the policy switched from target mode to draft mode."""
        return sum(1 for s in self.steps if s.switched_to_draft)

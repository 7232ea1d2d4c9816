"""One result schema: the JSON form of a search result, used everywhere a result leaves Python.

``specs solve --json`` prints a :class:`ResultRecord`, every ``specs bench`` row holds its fields
(without the step trace), and the LangChain integration returns it. Every counter of a
:class:`~specs_core.types.SearchResult` is in it, and it is valid JSON: floats are finite, and a
value that is not (an infinite log-probability, say) is ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from specs_core.types import CandidateRecord, SearchResult, StepRecord, TokenUsage

__all__ = [
    "CandidateTrace",
    "HybridCounts",
    "ResultRecord",
    "RewardCacheCounts",
    "StepTrace",
    "TokenCounts",
    "json_safe",
]


def _finite(value: float | None) -> float | None:
    """JSON has no infinities or NaN: they become null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (recursively), enums by their
    values, and tuples by lists: what ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, bool | int | str) or value is None:
        return getattr(value, "value", value)
    if isinstance(value, Mapping):
        return {str(getattr(k, "value", k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return getattr(value, "value", str(value))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CandidateTrace(_Frozen):
    """One candidate step a policy considered, with every score it got.

    ``draft_logprob`` and ``target_logprob`` are the log-probabilities the policy used (mean or
    sum per token); ``score`` is its selection score (SPECS: ``(l_t - l_d) + beta * r``);
    ``draft_prefix_tokens`` is set for the target candidates of a SPECS hybrid step;
    ``duplicate`` marks a candidate whose text repeats an earlier one of the same step;
    ``tokens`` is how many tokens its model generated for it.
    """

    text: str
    source: str
    finished: bool
    draft_logprob: float | None
    target_logprob: float | None
    reward: float | None
    score: float | None
    accepted: bool
    draft_prefix_tokens: int | None
    duplicate: bool
    tokens: int | None = None

    @classmethod
    def from_record(cls, record: CandidateRecord) -> CandidateTrace:
        """Convert a :class:`~specs_core.types.CandidateRecord`."""
        return cls(
            text=record.text,
            source=record.source.value,
            finished=record.finished,
            draft_logprob=_finite(record.draft_logprob),
            target_logprob=_finite(record.target_logprob),
            reward=_finite(record.reward),
            score=_finite(record.score),
            accepted=record.accepted,
            draft_prefix_tokens=record.draft_prefix_tokens,
            duplicate=record.duplicate,
            tokens=record.tokens,
        )


class StepTrace(_Frozen):
    """One committed step of the search: who wrote it, its reward, and the decision.

    ``decision`` is a :class:`~specs_core.types.Decision` value; ``accepted`` is ``None`` when
    nothing was drafted for the step.
    """

    index: int
    beam: int
    source: str
    text: str
    reward: float | None
    drafted: bool
    accepted: bool | None
    decision: str
    switched_to_draft: bool
    candidates: tuple[CandidateTrace, ...]

    @classmethod
    def from_record(cls, record: StepRecord) -> StepTrace:
        """Convert a :class:`~specs_core.types.StepRecord`."""
        return cls(
            index=record.index,
            beam=record.beam,
            source=record.source.value,
            text=record.text,
            reward=_finite(record.reward),
            drafted=record.drafted,
            accepted=record.accepted,
            decision=record.decision.value,
            switched_to_draft=record.switched_to_draft,
            candidates=tuple(CandidateTrace.from_record(c) for c in record.candidates),
        )


class TokenCounts(_Frozen):
    """Tokens one model spent: prompt (evaluated), generated, served from cache, calls, and the
    counters of token-level speculative decoding inside its generation (0 when off)."""

    prompt: int
    generated: int
    cached: int
    calls: int
    draft_proposed: int = 0
    draft_accepted: int = 0
    draft_rounds: int = 0

    @classmethod
    def from_usage(cls, usage: TokenUsage) -> TokenCounts:
        """Convert a :class:`~specs_core.types.TokenUsage`."""
        return cls(
            prompt=usage.prompt,
            generated=usage.generated,
            cached=usage.cached,
            calls=usage.calls,
            draft_proposed=usage.draft_proposed,
            draft_accepted=usage.draft_accepted,
            draft_rounds=usage.draft_rounds,
        )


class RewardCacheCounts(_Frozen):
    """Reward lookups answered from the per-search cache, and those that called the model."""

    hits: int = 0
    misses: int = 0


class HybridCounts(_Frozen):
    """SPECS hybrid steps, and the draft tokens offered to and accepted by the target in them."""

    steps: int = 0
    proposed: int = 0
    accepted: int = 0


class ResultRecord(_Frozen):
    """A search result as JSON-ready data: every figure, copied from the result, none recomputed.

    Attributes:
        question: the question solved.
        policy: the policy that ran.
        answer: the extracted final answer (``None`` when the solution states none).
        text: the full chosen solution.
        solution_steps: the chosen solution split into steps.
        final_score: the chosen solution's aggregated reward.
        finished: the solution ended on its own (not cut by a step or token limit).
        stop_reason: why the search ended (a :class:`~specs_core.types.StopReason` value).
        latency_s: wall seconds per phase, and ``total``.
        tokens: tokens per model name.
        reward_cache: reward lookups answered from the per-search cache, and misses.
        hybrid: SPECS hybrid-step counters.
        draft_steps: committed steps written by the draft.
        target_steps: committed steps written by the target.
        accepted_draft_steps: steps where a draft was accepted.
        rejected_draft_steps: steps where every draft was rejected.
        switches: switches from target mode to draft mode.
        steps: every committed step with its decision and candidate scores.
        extra: policy-specific figures.
    """

    question: str
    policy: str
    answer: str | None
    text: str
    solution_steps: tuple[str, ...]
    final_score: float | None
    finished: bool
    stop_reason: str
    latency_s: dict[str, float]
    tokens: dict[str, TokenCounts]
    reward_cache: RewardCacheCounts
    hybrid: HybridCounts
    draft_steps: int
    target_steps: int
    accepted_draft_steps: int
    rejected_draft_steps: int
    switches: int
    steps: tuple[StepTrace, ...]
    extra: dict[str, Any]

    @classmethod
    def from_result(cls, result: SearchResult) -> ResultRecord:
        """Convert a :class:`~specs_core.types.SearchResult`."""
        usage = result.usage
        return cls(
            question=result.question,
            policy=result.policy,
            answer=result.answer,
            text=result.text,
            solution_steps=tuple(result.solution_steps),
            final_score=_finite(result.final_score),
            finished=result.finished,
            stop_reason=result.stop_reason.value,
            latency_s={k: float(v) for k, v in usage.latency_s.items()},
            tokens={m: TokenCounts.from_usage(u) for m, u in usage.tokens.items()},
            reward_cache=RewardCacheCounts(
                hits=usage.reward_cache_hits, misses=usage.reward_cache_misses
            ),
            hybrid=HybridCounts(
                steps=usage.hybrid_steps,
                proposed=usage.hybrid_proposed,
                accepted=usage.hybrid_accepted,
            ),
            draft_steps=result.draft_steps,
            target_steps=result.target_steps,
            accepted_draft_steps=result.accepted_draft_steps,
            rejected_draft_steps=result.rejected_draft_steps,
            switches=result.switches,
            steps=tuple(StepTrace.from_record(s) for s in result.steps),
            extra=json_safe(dict(result.extra)),
        )

    def to_json(self, *, steps: bool = True) -> dict[str, Any]:
        """Plain JSON data (``json.dumps(..., allow_nan=False)`` accepts it); ``steps=False``
        leaves out the per-step trace."""
        return self.model_dump(mode="json", exclude=None if steps else {"steps"})

    def summary(self) -> dict[str, Any]:
        """Everything but the per-step trace, as plain JSON data."""
        return self.to_json(steps=False)

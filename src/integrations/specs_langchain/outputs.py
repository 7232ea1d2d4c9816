"""What a :class:`~specs_langchain.SpecsRunnable` returns and streams.

- :class:`SpecsOutput`: the structured result (answer, full solution, latency per phase, tokens
  per model, per-step trace), JSON-ready so that tracers can record it.
- :class:`StepTrace`: one committed step and the decision that produced it; it is also the payload
  of the per-step custom event.
- :class:`StepChunk`: a streamed step. It is the step's text (a ``str``, so text parsers such as
  ``StrOutputParser`` stream it through) carrying its :class:`StepTrace` as ``.step``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from specs_core.types import CandidateRecord, SearchResult, StepRecord

__all__ = ["CandidateTrace", "SpecsOutput", "StepChunk", "StepTrace", "TokenCounts"]


class CandidateTrace(BaseModel):
    """One candidate step a policy considered, with every score it got.

    ``draft_logprob`` and ``target_logprob`` are the log-probabilities the policy used (mean or sum
    per token); ``score`` is its selection score (SPECS: ``(l_t - l_d) + beta * r``).
    """

    model_config = ConfigDict(frozen=True)

    text: str
    source: str
    finished: bool
    draft_logprob: float | None
    target_logprob: float | None
    reward: float | None
    score: float | None
    accepted: bool

    @classmethod
    def from_record(cls, record: CandidateRecord) -> CandidateTrace:
        """Convert a core :class:`~specs_core.types.CandidateRecord`."""
        return cls(
            text=record.text,
            source=record.source.value,
            finished=record.finished,
            draft_logprob=record.draft_logprob,
            target_logprob=record.target_logprob,
            reward=record.reward,
            score=record.score,
            accepted=record.accepted,
        )


class StepTrace(BaseModel):
    """One committed step of the search: who wrote it, its reward, and the decision.

    ``decision`` is the policy's tag (e.g. ``"draft_accepted"``, ``"draft_rejected"``,
    ``"target"``); ``accepted`` is ``None`` when nothing was drafted for the step.
    """

    model_config = ConfigDict(frozen=True)

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
        """Convert a core :class:`~specs_core.types.StepRecord`."""
        return cls(
            index=record.index,
            beam=record.beam,
            source=record.source.value,
            text=record.text,
            reward=record.reward,
            drafted=record.drafted,
            accepted=record.accepted,
            decision=record.decision,
            switched_to_draft=record.switched_to_draft,
            candidates=tuple(CandidateTrace.from_record(c) for c in record.candidates),
        )


class TokenCounts(BaseModel):
    """Tokens one model spent: prompt (evaluated), generated, served from cache, and calls."""

    model_config = ConfigDict(frozen=True)

    prompt: int
    generated: int
    cached: int
    calls: int


class SpecsOutput(BaseModel):
    """The structured result of one question.

    Attributes:
        question: the question solved.
        policy: the policy that ran.
        answer: the extracted final answer (``None`` when the solution states none).
        solution: the full chosen solution text.
        solution_steps: the chosen solution split into steps.
        final_score: the chosen solution's aggregated reward.
        finished: the solution ended on its own (not cut by a step or token limit).
        latency_s: wall seconds per phase, and ``total``.
        tokens: tokens per model name.
        steps: every committed step with its decision and candidate scores.
        draft_steps: committed steps written by the draft.
        target_steps: committed steps written by the target.
        accepted_draft_steps: steps where a draft was accepted.
        rejected_draft_steps: steps where every draft was rejected.
        switches: switches from target mode to draft mode.
        reward_cache_hits: reward lookups answered from the per-search cache.
        reward_cache_misses: reward lookups that called the reward model.
        extra: policy-specific figures.
    """

    model_config = ConfigDict(frozen=True)

    question: str
    policy: str
    answer: str | None
    solution: str
    solution_steps: tuple[str, ...]
    final_score: float | None
    finished: bool
    latency_s: dict[str, float]
    tokens: dict[str, TokenCounts]
    steps: tuple[StepTrace, ...]
    draft_steps: int
    target_steps: int
    accepted_draft_steps: int
    rejected_draft_steps: int
    switches: int
    reward_cache_hits: int
    reward_cache_misses: int
    extra: dict[str, Any]

    @classmethod
    def from_result(cls, result: SearchResult) -> SpecsOutput:
        """Convert a core :class:`~specs_core.types.SearchResult` (figures are copied, not
        recomputed)."""
        usage = result.usage
        return cls(
            question=result.question,
            policy=result.policy,
            answer=result.answer,
            solution=result.text,
            solution_steps=tuple(result.solution_steps),
            final_score=result.final_score,
            finished=result.finished,
            latency_s=dict(usage.latency_s),
            tokens={name: TokenCounts(**counts.as_dict()) for name, counts in usage.tokens.items()},
            steps=tuple(StepTrace.from_record(s) for s in result.steps),
            draft_steps=result.draft_steps,
            target_steps=result.target_steps,
            accepted_draft_steps=result.accepted_draft_steps,
            rejected_draft_steps=result.rejected_draft_steps,
            switches=result.switches,
            reward_cache_hits=usage.reward_cache_hits,
            reward_cache_misses=usage.reward_cache_misses,
            extra=dict(result.extra),
        )

    def summary(self) -> dict[str, Any]:
        """Everything but the per-step trace, JSON-ready (the payload of the result event)."""
        return self.model_dump(mode="json", exclude={"steps"})


class StepChunk(str):
    """A streamed step: the step's text, with its trace as :attr:`step`.

    A ``StepChunk`` is a ``str`` so that text parsers downstream stream it through, but it cannot
    be concatenated on its left (``chunk + x`` raises ``TypeError``; ``"" + chunk`` and
    ``"".join(chunks)`` work). That is how LangChain folds a stream whose chunks are not addable:
    it keeps the last chunk, so the folded stream equals the final output that ``invoke``
    returns, and a non-streaming parser after the runnable receives that final output.

    Attributes:
        step: the committed step, its decision and candidate scores.
    """

    step: StepTrace

    def __new__(cls, step: StepTrace) -> StepChunk:
        """Build the chunk of ``step``."""
        chunk = super().__new__(cls, step.text)
        chunk.step = step
        return chunk

    def __add__(self, other: str) -> str:
        return NotImplemented

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self.step,)

    def __repr__(self) -> str:
        return (
            f"StepChunk(index={self.step.index}, source={self.step.source!r}, "
            f"decision={self.step.decision!r}, text={str(self)!r})"
        )

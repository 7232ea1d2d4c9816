"""The ``cascade`` policy: the draft answers, and the target only when the reward model doubts it.

The draft samples ``n`` whole solutions; the reward model scores every step of each. When the
best aggregated reward reaches ``threshold`` that solution is the answer, and the target never
runs. Otherwise the target samples ``n`` solutions too and the best of all ``2n`` is the answer.

It is written against specs' public search API only: :class:`~specs_core.search.SearchPolicy`
opens the search context, and every model call made through the context is timed under its phase
and counted under its model, so the result reports latency per phase and tokens per model with
no accounting code here.
"""

from __future__ import annotations

import math

from pydantic import Field
from specs_core.rewards import Aggregation
from specs_core.search import (
    ModelChoice,
    Role,
    SearchContext,
    SearchPolicy,
    SolutionOptions,
    SolutionPath,
    argmax,
    commit_solution,
    path_of,
    sample_solutions,
)
from specs_core.types import Decision, SearchResult, StepSource, StopReason

__all__ = ["CascadeOptions", "CascadePolicy"]


class CascadeOptions(SolutionOptions):
    """Options of ``cascade`` (``n``, ``temperature``, ``max_solution_tokens``, ``seed``...
    come from :class:`~specs_core.search.SolutionOptions`)."""

    threshold: float = Field(
        0.7, ge=0.0, le=1.0, description="the draft's best reward that spares the target"
    )
    aggregation: Aggregation = Field(
        Aggregation.MIN, description="how per-step rewards rank whole solutions"
    )


class CascadePolicy(SearchPolicy[CascadeOptions]):
    """Draft first; defer to the target when no draft solution earns ``threshold``."""

    def required_roles(self) -> tuple[Role, ...]:
        """Draft, target and reward model, checked before any model call."""
        return ("draft", "target", "reward")

    def _scored(self, ctx: SearchContext, model: ModelChoice) -> list[SolutionPath]:
        """``n`` whole solutions of ``model``, every step scored by the reward model."""
        o = self.options
        completions = sample_solutions(ctx, model, o.n, o.temperature, o.max_solution_tokens)
        paths = [path_of(c, o.step_delimiter) for c in completions]
        scorable = [i for i, p in enumerate(paths) if p.steps]
        rewards = ctx.rewards_all([paths[i].steps for i in scorable])
        for i, row in zip(scorable, rewards, strict=True):
            paths[i] = SolutionPath(paths[i].steps, tuple(row), paths[i].finished)
        return paths

    def _best(self, paths: list[SolutionPath]) -> tuple[int, float | None]:
        scores = [p.score(self.options.aggregation) for p in paths]
        best = argmax([-math.inf if s is None else s for s in scores])
        return best, scores[best]

    def search(self, ctx: SearchContext) -> SearchResult:
        """Run the cascade in ``ctx``."""
        o = self.options
        drafts = self._scored(ctx, "draft")
        best, score = self._best(drafts)
        if score is not None and score >= o.threshold:
            chosen, source, decision, deferred = (
                drafts[best],
                StepSource.DRAFT,
                Decision.DRAFT_ACCEPTED,
                False,
            )
        else:
            candidates = drafts + self._scored(ctx, "target")
            best, score = self._best(candidates)
            chosen, deferred = candidates[best], True
            source = StepSource.DRAFT if best < len(drafts) else StepSource.TARGET
            decision = Decision.DRAFT_REJECTED
        commit_solution(ctx, chosen, source, decision)
        return ctx.result(
            chosen,
            final_score=score,
            unfinished=StopReason.MAX_TOKENS,
            extra={"deferred": deferred, "threshold": o.threshold},
        )

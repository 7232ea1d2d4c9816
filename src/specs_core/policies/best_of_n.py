"""Best-of-N: sample whole solutions and rank them by their aggregated process rewards.

Each of the ``n`` solutions is split into steps at the step delimiter, the reward model scores
every step, and the rewards are aggregated (``aggregation``). ``selection="prm"`` returns the best
scored solution; ``selection="weighted_majority"`` sums the aggregated rewards of the solutions
that reach each extracted answer, picks the answer with the largest sum, and returns its best
scored solution.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from specs_core.protocols import Roles
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
    source_of,
)
from specs_core.text import extract_answer
from specs_core.types import Decision, SearchResult, StopReason

__all__ = ["BestOfNOptions", "BestOfNPolicy", "DraftBestOfNOptions", "weighted_majority"]


class BestOfNOptions(SolutionOptions):
    """Options of ``best_of_n``."""

    model: ModelChoice = Field("target", description="the model that writes the solutions")
    aggregation: Aggregation = Field(
        Aggregation.LAST, description="how per-step rewards rank solutions"
    )
    selection: Literal["prm", "weighted_majority"] = Field(
        "prm", description="best reward, or the answer with the largest summed reward"
    )


class DraftBestOfNOptions(BestOfNOptions):
    """Options of ``draft_best_of_n``: best-of-N over the draft model."""

    model: ModelChoice = Field("draft", description="the model that writes the solutions")


def weighted_majority(answers: list[str | None], scores: list[float | None]) -> int | None:
    """The index of the best-scored solution of the answer with the largest summed score.

    Solutions without an answer or a score do not vote; ties go to the answer seen first.
    Returns ``None`` when no solution votes.
    """
    totals: dict[str, float] = {}
    for answer, score in zip(answers, scores, strict=True):
        if answer is not None and score is not None:
            totals[answer] = totals.get(answer, 0.0) + score
    if not totals:
        return None
    names = list(totals)
    winner = names[argmax([totals[a] for a in names])]
    members = [i for i, a in enumerate(answers) if a == winner and scores[i] is not None]
    return members[argmax([scores[i] or 0.0 for i in members])]


class BestOfNPolicy(SearchPolicy[BestOfNOptions]):
    """Best-of-N ranked by a process reward model; the chosen solution's steps are committed
    once it is chosen.

    Args:
        options: validated :class:`BestOfNOptions`.
        roles: must hold the chosen model and ``reward``.
        name: the registered name recorded in results.
    """

    def __init__(self, options: BestOfNOptions, roles: Roles, *, name: str = "best_of_n") -> None:
        super().__init__(options, roles, name=name)

    def required_roles(self) -> tuple[Role, ...]:
        """The chosen model and the reward model."""
        return (self.options.model, "reward")

    def search(self, ctx: SearchContext) -> SearchResult:
        """Sample, score and choose in ``ctx``."""
        o = self.options

        completions = sample_solutions(ctx, o.model, o.n, o.temperature, o.max_solution_tokens)
        paths = [path_of(c, o.step_delimiter) for c in completions]
        scorable = [i for i, p in enumerate(paths) if p.steps]
        rewards = ctx.rewards_all([paths[i].steps for i in scorable])
        for i, row in zip(scorable, rewards, strict=True):
            paths[i] = SolutionPath(paths[i].steps, tuple(row), paths[i].finished)
        scores = [p.score(o.aggregation) for p in paths]
        answers = [extract_answer(p.text) for p in paths]

        chosen_index = None
        if o.selection == "weighted_majority":
            chosen_index = weighted_majority(answers, scores)
        if chosen_index is None:
            chosen_index = argmax([-math.inf if s is None else s for s in scores])
        chosen = paths[chosen_index]
        commit_solution(ctx, chosen, source_of(o.model), Decision.BEST_OF_N)
        return ctx.result(
            chosen,
            final_score=scores[chosen_index],
            unfinished=StopReason.MAX_TOKENS,
            extra={
                "selection": o.selection,
                "chosen": chosen_index,
                "solutions": [
                    {
                        "answer": a,
                        "score": s,
                        "finished": p.finished,
                        "steps": len(p.steps),
                        "text": p.text,
                    }
                    for a, s, p in zip(answers, scores, paths, strict=True)
                ],
            },
        )

"""Majority vote (self-consistency): sample whole solutions and return the most frequent answer.

No reward model is needed. Ties go to the answer seen first; the result is the first solution
that reaches the winning answer (the first solution when no answer could be extracted).
"""

from __future__ import annotations

from pydantic import Field

from specs_core.protocols import Roles
from specs_core.search import (
    ModelChoice,
    Role,
    SearchContext,
    SearchPolicy,
    SolutionOptions,
    commit_solution,
    path_of,
    sample_solutions,
    source_of,
)
from specs_core.text import extract_answer
from specs_core.types import Decision, SearchResult, StopReason

__all__ = ["DraftMajorityOptions", "MajorityOptions", "MajorityPolicy", "majority_vote"]


class MajorityOptions(SolutionOptions):
    """Options of ``majority``."""

    model: ModelChoice = Field("target", description="the model that writes the solutions")


class DraftMajorityOptions(MajorityOptions):
    """Options of ``draft_majority``: majority vote over the draft model."""

    model: ModelChoice = Field("draft", description="the model that writes the solutions")


def majority_vote(answers: list[str | None]) -> tuple[int, dict[str, int]]:
    """The index of the first solution with the most frequent answer, and the vote counts.

    Solutions without an answer do not vote; ties go to the answer seen first; with no answer
    at all the first solution is returned.
    """
    votes: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            votes[answer] = votes.get(answer, 0) + 1
    if not votes:
        return 0, votes
    top = max(votes.values())
    winner = next(a for a, v in votes.items() if v == top)
    return answers.index(winner), votes


class MajorityPolicy(SearchPolicy[MajorityOptions]):
    """Majority vote over ``n`` sampled solutions; the chosen solution's steps are committed once
    it is chosen.

    Args:
        options: validated :class:`MajorityOptions`.
        roles: must hold the chosen model.
        name: the registered name recorded in results.
    """

    def __init__(self, options: MajorityOptions, roles: Roles, *, name: str = "majority") -> None:
        super().__init__(options, roles, name=name)

    def required_roles(self) -> tuple[Role, ...]:
        """The chosen model."""
        return (self.options.model,)

    def search(self, ctx: SearchContext) -> SearchResult:
        """Sample and vote in ``ctx``."""
        o = self.options
        completions = sample_solutions(ctx, o.model, o.n, o.temperature, o.max_solution_tokens)
        paths = [path_of(c, o.step_delimiter) for c in completions]
        answers = [extract_answer(p.text) for p in paths]
        index, votes = majority_vote(answers)
        chosen = paths[index]
        commit_solution(ctx, chosen, source_of(o.model), Decision.MAJORITY)
        return ctx.result(
            chosen,
            final_score=None,
            unfinished=StopReason.MAX_TOKENS,
            extra={
                "votes": votes,
                "chosen": index,
                "answers": answers,
                "solutions": [
                    {"answer": a, "finished": p.finished, "steps": len(p.steps), "text": p.text}
                    for a, p in zip(answers, paths, strict=True)
                ],
            },
        )

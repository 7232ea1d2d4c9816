"""Greedy decoding: one solution at temperature 0, no reward model. The cheapest baseline."""

from __future__ import annotations

from pydantic import Field

from specs_core.protocols import Roles
from specs_core.search import (
    ModelChoice,
    PolicyOptions,
    Role,
    SearchContext,
    SearchPolicy,
    commit_solution,
    path_of,
    sample_solutions,
    source_of,
)
from specs_core.types import Decision, SearchResult, StopReason

__all__ = ["DraftGreedyOptions", "GreedyOptions", "GreedyPolicy"]


class GreedyOptions(PolicyOptions):
    """Options of ``greedy``."""

    model: ModelChoice = Field("target", description="the model that writes the solution")
    max_solution_tokens: int = Field(2048, ge=1, description="the most tokens of the solution")


class DraftGreedyOptions(GreedyOptions):
    """Options of ``draft_greedy``: greedy decoding with the draft model."""

    model: ModelChoice = Field("draft", description="the model that writes the solution")


class GreedyPolicy(SearchPolicy[GreedyOptions]):
    """One greedy solution; its steps are committed once it is generated.

    Args:
        options: validated :class:`GreedyOptions`.
        roles: must hold the chosen model.
        name: the registered name recorded in results.
    """

    def __init__(self, options: GreedyOptions, roles: Roles, *, name: str = "greedy") -> None:
        super().__init__(options, roles, name=name)

    def required_roles(self) -> tuple[Role, ...]:
        """The chosen model."""
        return (self.options.model,)

    def search(self, ctx: SearchContext) -> SearchResult:
        """Decode greedily in ``ctx``."""
        o = self.options
        completion = sample_solutions(ctx, o.model, 1, 0.0, o.max_solution_tokens)[0]
        path = path_of(completion, o.step_delimiter)
        commit_solution(ctx, path, source_of(o.model), Decision.GREEDY)
        return ctx.result(path, final_score=None, unfinished=StopReason.MAX_TOKENS)

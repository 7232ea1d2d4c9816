"""Greedy decoding: one solution at temperature 0, no reward model. The cheapest baseline."""

from __future__ import annotations

from pydantic import Field

from specs_core.plugins import Roles
from specs_core.types import SearchResult, StepCallback

from ._search import (
    ModelChoice,
    PolicyOptions,
    SearchContext,
    commit_solution,
    path_of,
    sample_solutions,
    source_of,
)

__all__ = ["DraftGreedyOptions", "GreedyOptions", "GreedyPolicy"]


class GreedyOptions(PolicyOptions):
    """Options of ``greedy``."""

    model: ModelChoice = Field("target", description="the model that writes the solution")
    max_solution_tokens: int = Field(2048, ge=1, description="the most tokens of the solution")


class DraftGreedyOptions(GreedyOptions):
    """Options of ``draft_greedy``: greedy decoding with the draft model."""

    model: ModelChoice = Field("draft", description="the model that writes the solution")


class GreedyPolicy:
    """One greedy solution.

    Args:
        options: validated :class:`GreedyOptions`.
        roles: must hold the chosen model.
        name: the registered name recorded in results.
    """

    def __init__(self, options: GreedyOptions, roles: Roles, *, name: str = "greedy") -> None:
        self.options = options
        self.roles = roles
        self.name = name

    def run(self, question: str, *, on_step: StepCallback | None = None) -> SearchResult:
        """Solve ``question``; ``on_step`` receives the solution's steps once generated.

        Raises:
            ConfigError: the chosen model is missing.
        """
        o = self.options
        ctx = SearchContext(self.name, question, o, self.roles)
        ctx.start(on_step)
        completion = sample_solutions(ctx, o.model, 1, 0.0, o.max_solution_tokens)[0]
        path = path_of(completion, o.step_delimiter)
        commit_solution(ctx, path, source_of(o.model), "greedy")
        return ctx.result(path, final_score=None)

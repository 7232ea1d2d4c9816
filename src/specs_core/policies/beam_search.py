"""Step-level beam search scored by a process reward model, over the target or the draft.

Each step, every active beam is continued by ``n // beam_width`` candidate steps (the first step:
``n`` candidates from the empty solution), all in one batched call; the reward model scores each
partial solution, and every finished candidate enters the completed pool. Then the
``beam_width`` best distinct candidates are kept:

- ``on_finished: continue`` (the default, as the SPECS authors run it): only unfinished candidates
  are kept while any is left, so the search goes on until every candidate of a step is finished
  (those are then kept, ending their beams) or ``max_steps`` is spent;
- ``on_finished: stop``: finished candidates compete like any other; a kept one completes its
  beam for good (fewer beams are kept from then on), and the search stops when ``beam_width``
  beams have finished.

The last step (index ``max_steps - 1``) runs to the end of the sequence. The answer is the pooled
solution with the best aggregated reward (or, when nothing finished, the best active beam).

With ``beam_width=1`` it is the paper's target-only (or draft-only) baseline and commits exactly
the steps that SPECS commits with ``tau_acc=+inf`` under the same seed.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from specs_core.errors import ContextOverflowError
from specs_core.protocols import Roles
from specs_core.search import (
    CompletedPool,
    FinishedRule,
    ModelChoice,
    Role,
    SearchContext,
    SearchPolicy,
    SolutionPath,
    StepSearchOptions,
    argmax,
    candidate,
    generated_logprobs,
    is_finished,
    source_of,
)
from specs_core.types import Decision, SearchResult, StepRecord

__all__ = ["BeamSearchOptions", "BeamSearchPolicy", "DraftBeamSearchOptions"]


class BeamSearchOptions(StepSearchOptions):
    """Options of ``beam_search``."""

    model: ModelChoice = Field("target", description="the model that writes every step")
    beam_width: int = Field(1, ge=1, description="m: beams kept per step (at most n)")
    on_finished: FinishedRule = Field(
        "continue",
        description="continue: keep only unfinished candidates while any is left; stop: a kept "
        "finished candidate completes its beam",
    )

    @model_validator(mode="after")
    def _width_fits(self) -> BeamSearchOptions:
        if self.beam_width > self.n:
            raise ValueError(
                f"beam_width ({self.beam_width}) must not exceed n ({self.n}): each step keeps "
                "beam_width of the n candidates; raise n or lower beam_width"
            )
        return self


class DraftBeamSearchOptions(BeamSearchOptions):
    """Options of ``draft_beam_search``: beam search over the draft model."""

    model: ModelChoice = Field("draft", description="the model that writes every step")


class BeamSearchPolicy(SearchPolicy[BeamSearchOptions]):
    """Reward-guided step-level beam search.

    Args:
        options: validated :class:`BeamSearchOptions`.
        roles: must hold the chosen model and ``reward``.
        name: the registered name recorded in results.
    """

    def __init__(
        self, options: BeamSearchOptions, roles: Roles, *, name: str = "beam_search"
    ) -> None:
        super().__init__(options, roles, name=name)

    def required_roles(self) -> tuple[Role, ...]:
        """The chosen model and the reward model."""
        return (self.options.model, "reward")

    def search(self, ctx: SearchContext) -> SearchResult:
        """Run the beam search in ``ctx``."""
        o = self.options
        role = o.model
        source = source_of(role)

        beams = [SolutionPath()]
        pool = CompletedPool(o.aggregation)
        done = 0  # kept candidates that finished: their beams are complete
        try:
            for i in range(o.max_steps):
                per_beam = o.n if i == 0 else max(1, o.n // o.beam_width)
                prompts = [ctx.prompt(b.text) for b in beams]
                groups = ctx.generate(role, prompts, ctx.step_params(o, role, i, per_beam))
                flat = [(b, c) for b, group in enumerate(groups) for c in group]
                rewards = ctx.rewards_last(
                    [[*beams[b].steps, c.text] for b, c in flat],
                    role=role,
                    logprobs=generated_logprobs([c for _, c in flat]),
                )
                for (b, c), r in zip(flat, rewards, strict=True):
                    if is_finished(c):
                        pool.add(beams[b].extend(c.text, r, finished=True))

                ranked = sorted(range(len(flat)), key=lambda k: -rewards[k])  # stable on ties
                open_ = [k for k in ranked if not is_finished(flat[k][1])]
                if o.on_finished == "continue" and open_:
                    ranked = open_  # the finished ones wait in the pool
                kept: list[int] = []
                seen: set[str] = set()
                for k in ranked:
                    if len(kept) >= o.beam_width - done:
                        break
                    b, c = flat[k]
                    text = beams[b].text + c.text
                    if text not in seen:
                        seen.add(text)
                        kept.append(k)

                next_beams: list[SolutionPath] = []
                for slot, k in enumerate(kept):
                    b, c = flat[k]
                    siblings = [j for j, (parent, _) in enumerate(flat) if parent == b]
                    ctx.commit(
                        StepRecord(
                            index=i,
                            source=source,
                            text=c.text,
                            reward=rewards[k],
                            drafted=False,
                            accepted=None,
                            decision=Decision.BEAM,
                            beam=slot,
                            candidates=tuple(
                                candidate(flat[j][1], source, reward=rewards[j], accepted=j in kept)
                                for j in siblings
                            ),
                        )
                    )
                    if is_finished(c):
                        done += 1
                    else:
                        next_beams.append(beams[b].extend(c.text, rewards[k]))
                beams = next_beams
                if not beams or done >= o.beam_width:
                    break
        except ContextOverflowError as e:
            ctx.stop_on_overflow(e)

        chosen = pool.best()
        if chosen is None:
            scores = [b.score(o.aggregation) for b in beams]
            chosen = beams[argmax([-math.inf if s is None else s for s in scores])]
        return ctx.result(
            chosen,
            final_score=chosen.score(o.aggregation),
            extra={"completed": len(pool), "beam_width": o.beam_width, "model": role},
        )

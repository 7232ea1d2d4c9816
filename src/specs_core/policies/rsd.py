"""Reward-guided speculative decoding (RSD, arXiv 2501.19324), at the level of reasoning steps.

Each step the draft writes ``n`` candidate steps (one by default) and the reward model scores
them; the best is accepted when its reward reaches ``delta``. Otherwise the target rewrites the
step: with ``n == 1`` its step is taken as is (not scored, as in the paper, so the step's reward is
``None``); with ``n > 1`` the reward model picks the best of the target's ``n``. The search stops
when the committed step ends the solution or after ``max_steps`` (the last step runs to the end of
the sequence).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from specs_core.errors import ContextOverflowError
from specs_core.protocols import Roles
from specs_core.search import (
    Role,
    SearchContext,
    SearchPolicy,
    SolutionPath,
    StepSearchOptions,
    argmax,
    candidate,
    generated_logprobs,
    is_finished,
    reject_nan,
)
from specs_core.types import Decision, SearchResult, StepRecord, StepSource

__all__ = ["RsdOptions", "RsdPolicy"]


class RsdOptions(StepSearchOptions):
    """Options of the ``rsd`` policy."""

    n: int = Field(1, ge=1, description="candidate steps per model per step")
    delta: float = Field(0.7, description="a draft step is accepted when its reward >= delta")

    @field_validator("delta")
    @classmethod
    def _not_nan(cls, value: float) -> float:
        return reject_nan(value)


class RsdPolicy(SearchPolicy[RsdOptions]):
    """Reward-guided speculative decoding bound to a draft, a target and a reward model.

    Args:
        options: validated :class:`RsdOptions`.
        roles: must hold ``target``, ``draft`` and ``reward``.
        name: the registered name recorded in results.
    """

    def __init__(self, options: RsdOptions, roles: Roles, *, name: str = "rsd") -> None:
        super().__init__(options, roles, name=name)

    def required_roles(self) -> tuple[Role, ...]:
        """Draft, target and reward model."""
        return ("draft", "target", "reward")

    def search(self, ctx: SearchContext) -> SearchResult:
        """Run RSD in ``ctx``."""
        o = self.options
        path = SolutionPath()
        try:
            for i in range(o.max_steps):
                prompt = ctx.prompt(path.text)
                drafts = ctx.generate("draft", [prompt], ctx.step_params(o, "draft", i, o.n))[0]
                rewards = ctx.rewards_last(
                    [[*path.steps, c.text] for c in drafts],
                    role="draft",
                    logprobs=generated_logprobs(drafts),
                )
                best = argmax(rewards)
                draft_records = tuple(
                    candidate(c, StepSource.DRAFT, reward=r, accepted=r >= o.delta)
                    for c, r in zip(drafts, rewards, strict=True)
                )
                if rewards[best] >= o.delta:
                    chosen = drafts[best]
                    record = StepRecord(
                        index=i,
                        source=StepSource.DRAFT,
                        text=chosen.text,
                        reward=rewards[best],
                        drafted=True,
                        accepted=True,
                        decision=Decision.DRAFT_ACCEPTED,
                        candidates=draft_records,
                    )
                else:
                    targets = ctx.generate(
                        "target", [prompt], ctx.step_params(o, "target", i, o.n)
                    )[0]
                    target_rewards: list[float | None]
                    if o.n > 1:
                        target_rewards = list(
                            ctx.rewards_last(
                                [[*path.steps, c.text] for c in targets],
                                role="target",
                                logprobs=generated_logprobs(targets),
                            )
                        )
                        pick = argmax([r for r in target_rewards if r is not None])
                    else:
                        target_rewards, pick = [None], 0
                    chosen = targets[pick]
                    record = StepRecord(
                        index=i,
                        source=StepSource.TARGET,
                        text=chosen.text,
                        reward=target_rewards[pick],
                        drafted=True,
                        accepted=False,
                        decision=Decision.DRAFT_REJECTED,
                        candidates=(
                            *draft_records,
                            *(
                                candidate(c, StepSource.TARGET, reward=r, accepted=j == pick)
                                for j, (c, r) in enumerate(
                                    zip(targets, target_rewards, strict=True)
                                )
                            ),
                        ),
                    )
                path = path.extend(record.text, record.reward, is_finished(chosen))
                ctx.commit(record)
                if path.finished:
                    break
        except ContextOverflowError as e:
            ctx.stop_on_overflow(e)

        return ctx.result(
            path,
            final_score=path.score(o.aggregation),
            extra={"delta": o.delta},
        )

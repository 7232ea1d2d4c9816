"""SPECS: speculative step drafting with soft verification by the target and a reward model.

The algorithm of arXiv 2506.15733 as its authors' code runs it, with four of its defects fixed:

1. The target writes the first step. In target mode the target samples ``n`` steps, the reward
   model scores each, the best is kept, and when a reward exceeds ``tau_sw`` the next step is
   drafted.
2. In draft mode the draft samples ``n`` steps in one batched call. Duplicate drafts are dropped
   (``dedupe``). Each draft gets ``s = (l_t - l_d) + beta * r`` where ``l_d``/``l_t`` are the
   draft's and the target's mean (or summed) token log-probabilities of the step and ``r`` the
   reward of the partial solution ending with it; the target's scoring and the reward model run
   concurrently. Drafts with ``s > tau_acc`` survive and one is sampled with probability
   ``softmax(s / T)``; when none survives, the target writes the step (target mode, drafts kept
   in the trace) and the next mode follows from its rewards and ``tau_sw`` as in step 1.
3. Finished candidates that are valid (every target candidate, and drafts that passed the
   acceptance test) enter a completed pool without duplicates. With ``on_finished: continue``
   (the default, as the authors run it) they are set aside: the search goes on from the best
   unfinished candidate (a surviving draft, or the target candidate with the best reward) until
   every candidate of a step is finished or ``max_steps`` is spent. With ``on_finished: stop``
   a finished candidate competes like any other and committing one ends the search. The answer
   is the pooled solution with the best aggregated reward (the committed path when nothing
   finished).

Fixed defects: (a) a finished draft that failed acceptance never enters the pool; (b) the final
choice compares one score, the aggregated reward, for every solution; (c) the target scores the
draft's text, tokenized by itself, so draft and target may use different tokenizers; (d) rejected
drafts stay in the trace with all their scores, and the per-run reward cache spares the reward
model a second call for a target step whose text equals a rejected draft.

Hybrid (``hybrid: true``, draft and target sharing a tokenizer): the target's verification pass
over the drafts' tokens is reused when every draft is rejected. Target candidate ``k`` accepts
the longest prefix of draft ``k`` that token-level speculative sampling accepts
(:func:`specs_core.backend_kit.ngram.accept_by_sampling`) and generates only the rest, from the
cells the verification already filled. The target candidates keep exactly the distribution (with
a seed: the very samples) of a plain target step. The reward model then runs before the
target's verification instead of beside it, because the target decides inside that one call
whether to continue.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from specs_core.errors import BackendError, ContextOverflowError
from specs_core.protocols import Roles, Verification, check_shared_tokenizer, require
from specs_core.search import (
    CompletedPool,
    FinishedRule,
    Role,
    SearchContext,
    SearchPolicy,
    SolutionPath,
    StepSearchOptions,
    argmax,
    first_of_each_text,
    generated_logprobs,
    is_finished,
    reject_nan,
)
from specs_core.text import repeated_share
from specs_core.types import (
    CandidateRecord,
    Completion,
    Decision,
    Prompt,
    SearchResult,
    StepRecord,
    StepSource,
    TokenLogprobs,
)

__all__ = ["SpecsOptions", "SpecsPolicy", "softmax_choice"]

log = logging.getLogger(__name__)


class SpecsOptions(StepSearchOptions):
    """Options of the ``specs`` policy (defaults: the authors' example run)."""

    beta: float = Field(10.0, ge=0.0, allow_inf_nan=False, description="weight of the reward")
    tau_acc: float = Field(
        7.0, description="acceptance threshold on s = (l_t - l_d) + beta*r; +inf: never draft"
    )
    tau_sw: float = Field(0.7, description="a target step reward above it switches to drafting")
    log_ratio: Literal["mean", "sum"] = Field(
        "mean", description="length-normalised (mean) or total (sum) token log-probabilities"
    )
    on_finished: FinishedRule = Field(
        "continue",
        description="continue: finished candidates go to the pool and the search goes on from "
        "the best unfinished one; stop: committing a finished candidate ends the search",
    )
    dedupe: bool = Field(
        True, description="drop drafts whose text repeats an earlier draft's before s is tested"
    )
    hybrid: bool = Field(
        False,
        description="when every draft is rejected, the target keeps the prefix of each draft that "
        "token-level speculative sampling accepts (draft and target must share a tokenizer)",
    )
    max_repetition: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="reject a draft when more than this share of its word 4-grams were already "
        "written (earlier in the solution or in the draft itself): a small draft's loops read as "
        "likely to the target; 1.0: no guard",
    )

    @field_validator("tau_acc", "tau_sw")
    @classmethod
    def _not_nan(cls, value: float) -> float:
        return reject_nan(value)


def softmax_choice(scores: Sequence[float], temperature: float, rng: random.Random) -> int:
    """Sample an index with probability ``softmax(scores / temperature)``.

    ``temperature == 0`` picks the largest score (the first on ties); when some scores are
    ``+inf`` one of them is picked uniformly.

    Raises:
        ValueError: ``scores`` is empty.
    """
    if not scores:
        raise ValueError("softmax_choice needs at least one score")
    top = max(scores)
    if temperature == 0:
        return argmax(scores)
    if top == math.inf:
        tops = [i for i, s in enumerate(scores) if s == math.inf]
        return tops[rng.randrange(len(tops))]
    weights = [math.exp((s - top) / temperature) for s in scores]
    x = rng.random() * sum(weights)
    for i, w in enumerate(weights):
        x -= w
        if x < 0:
            return i
    return max(i for i, w in enumerate(weights) if w > 0)


@dataclass(frozen=True)
class _DraftOutcome:
    records: list[CandidateRecord]
    chosen: int | None
    rewards: list[float]
    completions: list[Completion]
    verification: Verification | None = None


class SpecsPolicy(SearchPolicy[SpecsOptions]):
    """The SPECS search bound to a draft, a target and a reward model.

    Args:
        options: validated :class:`SpecsOptions`.
        roles: must hold ``target``, ``draft`` and ``reward``.
        name: the registered name recorded in results.
    """

    def __init__(self, options: SpecsOptions, roles: Roles, *, name: str = "specs") -> None:
        super().__init__(options, roles, name=name)

    def required_roles(self) -> tuple[Role, ...]:
        """Target, draft and reward model."""
        return ("target", "draft", "reward")

    # -- measures ---------------------------------------------------------------------------

    def _measure(self, logprobs: Sequence[float]) -> float:
        if self.options.log_ratio == "sum":
            return float(sum(logprobs))
        return float(sum(logprobs) / len(logprobs)) if logprobs else 0.0

    def _draft_logprob(self, ctx: SearchContext, completion: Completion) -> float:
        if len(completion.logprobs) != len(completion.token_ids):
            raise BackendError(
                f"draft model {ctx.model('draft').name!r} returned {len(completion.logprobs)} "
                f"logprobs for {len(completion.token_ids)} tokens; it declares "
                "generation_logprobs, so it must return one per generated token"
            )
        return self._measure(completion.logprobs)

    def _distinct(self, texts: Sequence[str]) -> list[int]:
        """The candidates that take part in a decision (each text once with ``dedupe``)."""
        return first_of_each_text(texts) if self.options.dedupe else list(range(len(texts)))

    def _eligible(
        self, candidates: Sequence[int], finished: Sequence[bool], step: Sequence[int]
    ) -> list[int]:
        """Which of ``candidates`` may be committed. With ``on_finished: continue``, while any
        candidate of the ``step`` is unfinished only unfinished ones may (the finished ones wait
        in the pool), so a step whose unfinished drafts all fail goes to the target."""
        if self.options.on_finished == "continue" and any(not finished[j] for j in step):
            return [j for j in candidates if not finished[j]]
        return list(candidates)

    # -- the two modes ----------------------------------------------------------------------

    def _verify(
        self,
        ctx: SearchContext,
        prompt: Prompt,
        path: SolutionPath,
        texts: list[str],
        score_draft: bool,
    ) -> tuple[list[TokenLogprobs], list[float], list[TokenLogprobs] | None]:
        """Target log-probs, rewards (and draft log-probs) of the drafts, run concurrently."""
        prompts = [prompt] * len(texts)
        paths = [[*path.steps, t] for t in texts]
        if ctx.reward_reads("target"):  # the reward comes from the target's scores: no model call
            drafted = ctx.score("draft", prompts, texts) if score_draft else None
            target_lp = ctx.score("target", prompts, texts)
            lps = [t.logprobs for t in target_lp]
            return target_lp, ctx.rewards_last(paths, role="target", logprobs=lps), drafted
        parallel = ctx.model("target").capabilities.concurrent
        if not parallel:
            drafted = ctx.score("draft", prompts, texts) if score_draft else None
            return ctx.score("target", prompts, texts), ctx.rewards_last(paths), drafted
        workers = 3 if score_draft else 2
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="specs-verify") as pool:
            target_f = pool.submit(ctx.score, "target", prompts, texts)
            reward_f = pool.submit(ctx.rewards_last, paths)
            draft_f = pool.submit(ctx.score, "draft", prompts, texts) if score_draft else None
            futures: list[Future[Any]] = [target_f, reward_f]
            if draft_f is not None:
                futures.append(draft_f)
            wait(futures)
        # .result() re-raises a worker's exception in this thread.
        return target_f.result(), reward_f.result(), draft_f.result() if draft_f else None

    def _soft_scores(
        self, target_lp: Sequence[TokenLogprobs], l_d: Sequence[float], rewards: Sequence[float]
    ) -> list[float]:
        """``s = (l_t - l_d) + beta * r`` of each draft."""
        beta = self.options.beta
        l_t = [self._measure(t.logprobs) for t in target_lp]
        return [(lt - ld) + beta * r for lt, ld, r in zip(l_t, l_d, rewards, strict=True)]

    def _survivors(self, scores: Sequence[float], candidates: Sequence[int]) -> list[int]:
        """The candidate drafts whose soft score passes the acceptance test ``s > tau_acc``."""
        return [j for j in candidates if scores[j] > self.options.tau_acc]

    def _fresh(
        self, texts: Sequence[str], distinct: Sequence[int], path: SolutionPath
    ) -> list[int]:
        """The distinct drafts that do not repeat what is written (``max_repetition``)."""
        limit = self.options.max_repetition
        if limit >= 1.0:
            return list(distinct)
        fresh = [j for j in distinct if repeated_share(texts[j], path.text) <= limit]
        if len(fresh) < len(distinct):
            log.debug("drafts %s repeat the solution so far", sorted(set(distinct) - set(fresh)))
        return fresh

    def _draft_step(
        self,
        ctx: SearchContext,
        prompt: Prompt,
        path: SolutionPath,
        step: int,
        pool: CompletedPool,
        score_draft: bool,
    ) -> _DraftOutcome:
        o = self.options
        completions = ctx.generate("draft", [prompt], ctx.step_params(o, "draft", step, o.n))[0]
        texts = [c.text for c in completions]
        finished = [is_finished(c) for c in completions]
        distinct = self._distinct(texts)
        fresh = self._fresh(texts, distinct, path)
        verification: Verification | None = None
        if o.hybrid:
            draft_lp = ctx.score("draft", [prompt] * len(texts), texts) if score_draft else None
            l_d = self._draft_measures(ctx, completions, draft_lp)
            rewards = ctx.rewards_last([[*path.steps, t] for t in texts])

            def none_eligible(scored: list[TokenLogprobs]) -> bool:
                survivors = self._survivors(self._soft_scores(scored, l_d, rewards), fresh)
                return not self._eligible(survivors, finished, distinct)

            # every draft is a proposal (sample k continues proposal k), duplicates included
            verification = ctx.verify(
                "target",
                prompt,
                [c.token_ids for c in completions],
                ctx.step_params(o, "target", step, o.n),
                none_eligible,
            )
            target_lp = verification.scores
        else:
            # a duplicate shares the scores of its first occurrence: score each text once
            once = [texts[j] for j in distinct]
            scored_lp, scored_r, scored_d = self._verify(ctx, prompt, path, once, score_draft)
            slot = {texts[j]: k for k, j in enumerate(distinct)}
            target_lp = [scored_lp[slot[t]] for t in texts]
            rewards = [scored_r[slot[t]] for t in texts]
            draft_lp = None if scored_d is None else [scored_d[slot[t]] for t in texts]
            l_d = self._draft_measures(ctx, completions, draft_lp)
        l_t = [self._measure(t.logprobs) for t in target_lp]
        scores = self._soft_scores(target_lp, l_d, rewards)
        survivors = self._survivors(scores, fresh)
        eligible = self._eligible(survivors, finished, distinct)
        chosen: int | None = None
        if eligible:
            pick = softmax_choice([scores[j] for j in eligible], o.temperature, ctx.rng)
            chosen = eligible[pick]
        passed = set(survivors)
        records = []
        for j, c in enumerate(completions):
            if finished[j] and j in passed:  # defect (a): only drafts that passed may complete
                pool.add(path.extend(c.text, rewards[j], finished=True))
            records.append(
                CandidateRecord(
                    text=c.text,
                    source=StepSource.DRAFT,
                    finished=finished[j],
                    draft_logprob=l_d[j],
                    target_logprob=l_t[j],
                    reward=rewards[j],
                    score=scores[j],
                    accepted=j in passed,
                    duplicate=j not in distinct,
                    tokens=len(c.token_ids),
                )
            )
        log.debug("step %d drafts: scores %s, survivors %s", step, scores, survivors)
        return _DraftOutcome(records, chosen, rewards, completions, verification)

    def _draft_measures(
        self,
        ctx: SearchContext,
        completions: Sequence[Completion],
        draft_lp: Sequence[TokenLogprobs] | None,
    ) -> list[float]:
        """``l_d`` of each draft: from its generation, or from scoring when it has none."""
        if draft_lp is not None:
            return [self._measure(d.logprobs) for d in draft_lp]
        return [self._draft_logprob(ctx, c) for c in completions]

    def _target_step(
        self,
        ctx: SearchContext,
        prompt: Prompt,
        path: SolutionPath,
        step: int,
        pool: CompletedPool,
        hybrid: Verification | None = None,
    ) -> tuple[list[CandidateRecord], int, list[float], list[Completion], bool]:
        """The target's step; ``hybrid`` holds the candidates continued from rejected drafts.

        Returns the candidates' records, the index of the committed one (the best reward among
        the eligible), the rewards, the completions, and whether to draft the next step (a
        reward of an eligible candidate above ``tau_sw``).
        """
        o = self.options
        if hybrid is not None and hybrid.completions is not None:
            completions = hybrid.completions
            ctx.acct.count_hybrid_step(
                proposed=sum(len(s.token_ids) for s in hybrid.scores),
                accepted=sum(hybrid.accepted),
            )
        else:
            params = ctx.step_params(o, "target", step, o.n)
            completions = ctx.generate("target", [prompt], params)[0]
        rewards = ctx.rewards_last(
            [[*path.steps, c.text] for c in completions],
            role="target",
            logprobs=generated_logprobs(completions),
        )
        finished = [is_finished(c) for c in completions]
        distinct = self._distinct([c.text for c in completions])
        eligible = self._eligible(distinct, finished, distinct)
        best = eligible[argmax([rewards[j] for j in eligible])]
        records = []
        for j, c in enumerate(completions):
            if finished[j]:
                pool.add(path.extend(c.text, rewards[j], finished=True))
            own = self._measure(c.logprobs) if len(c.logprobs) == len(c.token_ids) else None
            records.append(
                CandidateRecord(
                    text=c.text,
                    source=StepSource.TARGET,
                    finished=finished[j],
                    target_logprob=own,
                    reward=rewards[j],
                    accepted=j == best,
                    draft_prefix_tokens=hybrid.accepted[j] if hybrid is not None else None,
                    duplicate=j not in distinct,
                    tokens=len(c.token_ids),
                )
            )
        switch = any(rewards[j] > o.tau_sw for j in eligible)
        return records, best, rewards, completions, switch

    # -- the search -------------------------------------------------------------------------

    def search(self, ctx: SearchContext) -> SearchResult:
        """Run SPECS in ``ctx``.

        Raises:
            CapabilityError: the target cannot score, or the draft gives no log-probabilities.
        """
        o = self.options
        target, draft = ctx.model("target"), ctx.model("draft")
        why = f"policy {self.name!r}"
        require(target.capabilities, ["scoring"], who=f"target {target.name!r}", why=why)
        score_draft = not draft.capabilities.generation_logprobs
        if score_draft and not draft.capabilities.scoring:
            who = f"draft {draft.name!r}"
            require(draft.capabilities, ["generation_logprobs"], who=who, why=why)
        drafting = o.tau_acc < math.inf  # with tau_acc = +inf no draft can ever be accepted
        if o.hybrid:
            check_shared_tokenizer(draft, target, why=f"policy {self.name!r} with hybrid: true")

        path = SolutionPath()
        pool = CompletedPool(o.aggregation)
        use_draft = False
        try:
            for i in range(o.max_steps):
                prompt = ctx.prompt(path.text)
                drafts: list[CandidateRecord] = []
                record: StepRecord | None = None
                finished = False
                hybrid: Verification | None = None
                if use_draft:
                    outcome = self._draft_step(ctx, prompt, path, i, pool, score_draft)
                    drafts = outcome.records
                    hybrid = outcome.verification
                    if outcome.chosen is not None:
                        c = outcome.completions[outcome.chosen]
                        finished = is_finished(c)
                        record = StepRecord(
                            index=i,
                            source=StepSource.DRAFT,
                            text=c.text,
                            reward=outcome.rewards[outcome.chosen],
                            drafted=True,
                            accepted=True,
                            decision=Decision.DRAFT_ACCEPTED,
                            candidates=tuple(drafts),
                        )
                if record is None:
                    records, best, rewards, completions, switch = self._target_step(
                        ctx, prompt, path, i, pool, hybrid
                    )
                    use_draft = switch and drafting
                    finished = is_finished(completions[best])
                    record = StepRecord(
                        index=i,
                        source=StepSource.TARGET,
                        text=completions[best].text,
                        reward=rewards[best],
                        drafted=bool(drafts),
                        accepted=False if drafts else None,
                        decision=(
                            (
                                Decision.DRAFT_REJECTED_HYBRID
                                if hybrid is not None
                                else Decision.DRAFT_REJECTED
                            )
                            if drafts
                            else Decision.TARGET
                        ),
                        switched_to_draft=use_draft,
                        candidates=(*drafts, *records),
                    )
                path = path.extend(record.text, record.reward, finished)
                ctx.commit(record)
                if finished:
                    break
        except ContextOverflowError as e:
            ctx.stop_on_overflow(e)

        chosen = pool.best() or path
        return ctx.result(
            chosen,
            final_score=chosen.score(o.aggregation),
            extra={
                "completed": len(pool),
                "drafting": drafting,
                "log_ratio": o.log_ratio,
                "hybrid": o.hybrid,
                "tau_sw": o.tau_sw,
                "best_target_reward": max(
                    (
                        c.reward
                        for s in ctx.steps
                        for c in s.candidates
                        if c.source is StepSource.TARGET and c.reward is not None
                    ),
                    default=None,
                ),
            },
        )

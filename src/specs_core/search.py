"""The public machinery of search policies: the search context, options, solution paths.

Every policy, built-in or from a plugin, is written against this module:

- :class:`SearchPolicy` is the base class. Its ``run`` opens a :class:`SearchContext` for the
  question, checks that the roles the policy needs were given, and calls the policy's
  ``search(ctx)``.
- :class:`SearchContext` lives for one run. It wraps the models of each role so that every call
  is timed under its :class:`~specs_core.types.Phase` and its tokens are counted under the
  model's name, guards the reward model (validation and a per-run reward cache), derives the
  sampling seeds, records the committed steps (handing each to the caller's step callback), and
  builds the :class:`~specs_core.types.SearchResult`.
- :class:`PolicyOptions`, :class:`StepSearchOptions` and :class:`SolutionOptions` are the option
  bases; :class:`SolutionPath` and :class:`CompletedPool` hold partial and finished solutions.

Step texts keep their delimiter in the partial solution that models continue; the reward model
receives the steps without it (:func:`specs_core.text.step_content`).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from specs_core.accounting import Accountant
from specs_core.errors import (
    BackendError,
    BudgetExceededError,
    ConfigError,
    ContextOverflowError,
    InvalidInputError,
)
from specs_core.protocols import ContinueIf, LanguageModel, ProposalVerifier, Roles, Verification
from specs_core.rewards import Aggregation, GuardedRewardModel, aggregate
from specs_core.text import (
    DEFAULT_STEP_DELIMITER,
    DEFAULT_SYSTEM_PROMPT,
    extract_answer,
    split_steps,
    step_content,
)
from specs_core.types import (
    CandidateRecord,
    Completion,
    Decision,
    FinishReason,
    Phase,
    Prompt,
    SamplingParams,
    SearchResult,
    StepCallback,
    StepRecord,
    StepSource,
    StopReason,
    TokenLogprobs,
)

__all__ = [
    "Budget",
    "CompletedPool",
    "FinishedRule",
    "ModelChoice",
    "PolicyOptions",
    "Role",
    "SearchCancelled",
    "SearchContext",
    "SearchPolicy",
    "SolutionOptions",
    "SolutionPath",
    "StepSearchOptions",
    "argmax",
    "cancellable",
    "candidate",
    "commit_solution",
    "first_of_each_text",
    "generated_logprobs",
    "is_finished",
    "path_of",
    "reject_nan",
    "sample_solutions",
    "source_of",
    "spending",
]

log = logging.getLogger(__name__)

ModelChoice = Literal["target", "draft"]
"""Which configured model a call (or a single-model policy) runs on."""

Role = Literal["target", "draft", "reward"]
"""A role a policy may need."""

_PHASE_OF = {
    ("draft", "generate"): Phase.DRAFT_GENERATE,
    ("target", "generate"): Phase.TARGET_GENERATE,
    ("draft", "score"): Phase.DRAFT_SCORE,
    ("target", "score"): Phase.TARGET_SCORE,
}


def reject_nan(value: float) -> float:
    """A pydantic validator body: infinities are allowed, NaN is not."""
    if math.isnan(value):
        raise ValueError("must be a number or +inf/-inf, not NaN")
    return value


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on ties."""
    if not values:
        raise InvalidInputError("argmax of an empty sequence")
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


class PolicyOptions(BaseModel):
    """Options every policy takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_prompt: str | None = Field(
        DEFAULT_SYSTEM_PROMPT, description="system message given to every model (null: none)"
    )
    seed: int = Field(0, description="seeds sampling and every random choice of the policy")
    step_delimiter: str = Field(
        DEFAULT_STEP_DELIMITER, min_length=1, description="text that ends a reasoning step"
    )


class StepSearchOptions(PolicyOptions):
    """Options of the policies that build a solution step by step.

    A step ends at the step delimiter, at the end of the sequence (the solution is finished), or
    at its token budget. A step cut by its budget is not finished: the next step continues its
    text. The last step (index ``max_steps - 1``) has no delimiter and its own, larger budget.
    """

    n: int = Field(4, ge=1, description="candidate steps sampled per step")
    temperature: float = Field(0.3, ge=0.0, allow_inf_nan=False, description="sampling temperature")
    max_steps: int = Field(30, ge=1, description="K: the most steps; the last runs to the end")
    max_step_tokens: int = Field(256, ge=1, description="the most tokens of one step")
    max_last_step_tokens: int = Field(
        1024, ge=1, description="the most tokens of the last step, which runs to the end"
    )
    aggregation: Aggregation = Field(
        Aggregation.LAST, description="how per-step rewards rank complete solutions"
    )


FinishedRule = Literal["continue", "stop"]
"""What a pooled step search does with finished candidates.

``continue`` (the SPECS authors' rule): finished candidates are set aside in the completed pool
and the search goes on from the best unfinished candidate, until no candidate is unfinished or
the step budget is spent. ``stop``: a finished candidate may be committed like any other, and
committing one ends the search (for beam search, completes its beam)."""


class SolutionOptions(PolicyOptions):
    """Options of the policies that sample whole solutions."""

    n: int = Field(4, ge=1, description="solutions sampled")
    temperature: float = Field(0.7, ge=0.0, allow_inf_nan=False, description="sampling temperature")
    max_solution_tokens: int = Field(2048, ge=1, description="the most tokens of one solution")


def first_of_each_text(texts: Sequence[str]) -> list[int]:
    """The indices of the first occurrence of each distinct text, in order."""
    seen: dict[str, int] = {}
    for i, text in enumerate(texts):
        seen.setdefault(text, i)
    return list(seen.values())


@dataclass(frozen=True)
class SolutionPath:
    """A (partial) solution: its steps, delimiters included, and the reward recorded for each.

    Attributes:
        steps: step texts as generated (each ends with the delimiter except possibly the last).
        rewards: the reward of the partial solution ending with each step (``None``: not scored).
        finished: the last step ended the solution (end of sequence).
    """

    steps: tuple[str, ...] = ()
    rewards: tuple[float | None, ...] = ()
    finished: bool = False

    @property
    def text(self) -> str:
        """The solution text."""
        return "".join(self.steps)

    def extend(self, step: str, reward: float | None, finished: bool = False) -> SolutionPath:
        """A new path with one more step."""
        return SolutionPath((*self.steps, step), (*self.rewards, reward), finished)

    def contents(self, delimiter: str) -> list[str]:
        """The steps as the reward model sees them (delimiter and outer whitespace removed)."""
        return [step_content(s, delimiter) for s in self.steps]

    def score(self, how: Aggregation | str) -> float | None:
        """The aggregated reward, or ``None`` when a step was not scored or there are no steps."""
        if not self.rewards or any(r is None for r in self.rewards):
            return None
        return aggregate([r for r in self.rewards if r is not None], how)


@dataclass
class CompletedPool:
    """Finished solutions of a search, without duplicates, ranked by one aggregated reward."""

    aggregation: Aggregation | str
    paths: list[SolutionPath] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def add(self, path: SolutionPath) -> bool:
        """Add a finished solution; returns ``False`` for a duplicate text (dropped)."""
        text = path.text
        if text in self._seen:
            return False
        self._seen.add(text)
        self.paths.append(path)
        return True

    def __len__(self) -> int:
        return len(self.paths)

    def best(self) -> SolutionPath | None:
        """The solution with the highest aggregated reward (first added on ties)."""
        if not self.paths:
            return None
        scores = [p.score(self.aggregation) for p in self.paths]
        return self.paths[argmax([-math.inf if s is None else s for s in scores])]


@dataclass(frozen=True)
class Budget:
    """What one search may spend: wall-clock seconds and generated tokens (``None``: no limit).

    A search checks its budget before each model call, so it stops within one call of the
    limit; it keeps the steps committed so far and its result says which budget ended it
    (:attr:`~specs_core.types.StopReason.TIME_LIMIT`, ``TOKEN_LIMIT``). A whole-solution policy
    makes one call, so only a search that is already over its budget is stopped (with a
    :class:`~specs_core.errors.BudgetExceededError`).
    """

    seconds: float | None = None
    tokens: int | None = None
    until: threading.Event | None = field(default=None, compare=False)
    """Set by the caller to end the search gracefully before its next model call, keeping the
    committed steps (:attr:`~specs_core.types.StopReason.STOPPED`); unlike a cancellation
    (:func:`cancellable`) the search still returns its result."""

    def __post_init__(self) -> None:
        if self.seconds is not None and not self.seconds > 0:
            raise InvalidInputError(
                f"a time budget is a positive number of seconds, got {self.seconds}"
            )
        if self.tokens is not None and self.tokens < 1:
            raise InvalidInputError(f"a token budget is a positive number, got {self.tokens}")


_budget: ContextVar[Budget | None] = ContextVar("specs_budget", default=None)


@contextmanager
def spending(budget: Budget | None) -> Iterator[None]:
    """Searches started inside the block (in this thread or task) get ``budget``."""
    token = _budget.set(budget)
    try:
        yield
    finally:
        _budget.reset(token)


class SearchCancelled(BaseException):
    """Raised inside a search, before its next model call, once its caller cancelled it (see
    :func:`cancellable`).

    A ``BaseException``, like ``KeyboardInterrupt``, so that a policy's ``except Exception``
    cannot swallow it.
    """


_cancel: ContextVar[threading.Event | None] = ContextVar("specs_cancel", default=None)


@contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Searches started inside the block (in this thread or task) stop before their next model
    call once ``event`` is set, raising :class:`SearchCancelled`; the model they were calling
    finishes that call first, then is free for other searches."""
    token = _cancel.set(event)
    try:
        yield
    finally:
        _cancel.reset(token)


class SearchContext:
    """Everything one policy run shares: models by role, accounting, reward guard, seeds, trace.

    Attributes:
        policy: the policy's registered name.
        question: the problem being solved.
        options: the policy's validated options.
        roles: the models the policy was built with.
        acct: the run's :class:`~specs_core.accounting.Accountant` (for work timed elsewhere).
        rng: the run's random stream, seeded by ``options.seed`` (for the policy's own choices).
        steps: the steps committed so far.
        stop_reason: set by :meth:`stop_on_overflow`; otherwise derived by :meth:`result`.

    Args:
        policy: the policy's registered name (recorded in the result).
        question: the problem to solve.
        options: the policy's validated options.
        roles: the models the policy was built with.
        on_step: called with each step as it is committed (e.g. for streaming).

    Raises:
        InvalidInputError: the question is empty.
    """

    def __init__(
        self,
        policy: str,
        question: str,
        options: PolicyOptions,
        roles: Roles,
        on_step: StepCallback | None = None,
    ) -> None:
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError("the question is empty; pass the problem text to solve")
        self.policy = policy
        self.question = question
        self.options = options
        self.roles = roles
        self.acct = Accountant()
        self.rng = random.Random(options.seed)
        self.steps: list[StepRecord] = []
        self.stop_reason: StopReason | None = None
        self._on_step = on_step
        self.budget = _budget.get()
        self._cancel = _cancel.get()
        self._deadline = (
            time.monotonic() + self.budget.seconds
            if self.budget is not None and self.budget.seconds is not None
            else None
        )
        self.reward: GuardedRewardModel | None = (
            GuardedRewardModel(roles.reward, self.acct, roles.reward_plugin)
            if roles.reward is not None
            else None
        )

    # -- models -----------------------------------------------------------------------------

    def model(self, role: ModelChoice) -> LanguageModel:
        """The model playing ``role``.

        Raises:
            ConfigError: the policy was built without that model.
        """
        model = self.roles.target if role == "target" else self.roles.draft
        if model is None:
            raise ConfigError(
                f"policy {self.policy!r} needs a {role} model but none was given: add a "
                f"{role}: section to the config, or pass Roles({role}=...)"
            )
        return model

    def require(self, role: Role) -> None:
        """Check up front that the policy was given the model of ``role``.

        Raises:
            ConfigError: it was not (the message says how to add it).
        """
        if role == "reward":
            self.require_reward()
        else:
            self.model(role)

    def require_reward(self) -> GuardedRewardModel:
        """The guarded reward model.

        Raises:
            ConfigError: the policy was built without a reward model.
        """
        if self.reward is None:
            raise ConfigError(
                f"policy {self.policy!r} needs a reward model: add a reward: section to the "
                "config (e.g. reward: {name: judge, model: target})"
            )
        return self.reward

    def prompt(self, partial: str = "") -> Prompt:
        """The prompt continuing ``partial`` as the assistant's answer to the question."""
        return Prompt(self.question, partial, self.options.system_prompt)

    def call_seed(self, role: str, step: int) -> int:
        """The sampling seed of the ``role`` call at ``step``.

        Derived from the run's seed and the call site only, so that two policies that make the
        same call at the same step (SPECS with ``tau_acc=+inf`` and target beam search) sample
        the same candidates.
        """
        return random.Random(f"{self.options.seed}/{role}/{step}").getrandbits(31)

    def step_params(
        self, options: StepSearchOptions, role: str, step: int, n: int
    ) -> SamplingParams:
        """Sampling options of one step; the last step (``max_steps - 1``) has no stop string
        and the ``max_last_step_tokens`` budget."""
        last = step >= options.max_steps - 1
        return SamplingParams(
            n=n,
            temperature=options.temperature,
            max_tokens=options.max_last_step_tokens if last else options.max_step_tokens,
            stop=() if last else (options.step_delimiter,),
            seed=self.call_seed(role, step),
        )

    def check_budget(self) -> None:
        """Raise when the search's :class:`Budget` is spent or its caller cancelled it (called
        before each model call).

        Raises:
            BudgetExceededError: the time or token budget is spent.
            SearchCancelled: the search was cancelled (see :func:`cancellable`).
        """
        if self._cancel is not None and self._cancel.is_set():
            raise SearchCancelled(f"the {self.policy} search was cancelled by its caller")
        if self._deadline is not None and time.monotonic() > self._deadline:
            assert self.budget is not None and self.budget.seconds is not None
            raise BudgetExceededError(
                f"the time budget of {self.budget.seconds:g} s is spent",
                reason=StopReason.TIME_LIMIT.value,
            )
        if self.budget is not None and self.budget.until is not None and self.budget.until.is_set():
            raise BudgetExceededError(
                "the caller ended the search", reason=StopReason.STOPPED.value
            )
        if self.budget is not None and self.budget.tokens is not None:
            spent = self.acct.generated_tokens()
            if spent >= self.budget.tokens:
                raise BudgetExceededError(
                    f"the budget of {self.budget.tokens} generated tokens is spent ({spent})",
                    reason=StopReason.TOKEN_LIMIT.value,
                )

    def generate(
        self, role: ModelChoice, prompts: Sequence[Prompt], params: SamplingParams
    ) -> list[list[Completion]]:
        """Generate with the model of ``role``, timed and counted.

        Raises:
            BackendError: the model returned the wrong number of completions.
            BudgetExceededError: the search's budget is spent.
        """
        self.check_budget()
        model = self.model(role)
        with self.acct.phase(_PHASE_OF[(role, "generate")]):
            out = model.generate(list(prompts), params)
        if len(out) != len(prompts) or any(len(group) != params.n for group in out):
            shape = [len(group) for group in out]
            raise BackendError(
                f"{role} model {model.name!r} returned {shape} completions for {len(prompts)} "
                f"prompt(s) with n={params.n}; a backend must return n per prompt"
            )
        self.acct.add_generation(model.name, out)
        return out

    def score(
        self, role: ModelChoice, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        """Score continuations with the model of ``role``, timed and counted.

        The model tokenizes the texts itself, so draft and target may use different tokenizers.

        Raises:
            BackendError: the model returned the wrong number of results.
            BudgetExceededError: the search's budget is spent.
        """
        self.check_budget()
        model = self.model(role)
        with self.acct.phase(_PHASE_OF[(role, "score")]):
            out = model.logprobs(list(prompts), list(continuations))
        if len(out) != len(continuations):
            raise BackendError(
                f"{role} model {model.name!r} returned {len(out)} scores for "
                f"{len(continuations)} continuations; a backend must return one per continuation"
            )
        self.acct.add_scoring(model.name, out)
        return out

    def verify(
        self,
        role: ModelChoice,
        prompt: Prompt,
        proposals: Sequence[Sequence[int]],
        params: SamplingParams,
        continue_if: ContinueIf,
    ) -> Verification:
        """Let the model of ``role`` verify proposed tokens and maybe continue them, counted.

        The verification pass is timed as the role's scoring phase and the continuation as its
        generation phase; their tokens are counted like a scoring and a generation call.

        Raises:
            ConfigError: the model does not implement
                :class:`~specs_core.protocols.ProposalVerifier`.
            BackendError: the model returned the wrong number of results.
        """
        self.check_budget()
        model = self.model(role)
        if not isinstance(model, ProposalVerifier):
            raise ConfigError(
                f"{role} model {model.name!r} cannot verify proposed tokens; use a backend that "
                "implements it (llamacpp, toy)"
            )
        out = model.verify_proposals(prompt, list(proposals), params, continue_if)
        if len(out.scores) != len(proposals) or (
            out.completions is not None and len(out.completions) != params.n
        ):
            raise BackendError(
                f"{role} model {model.name!r} returned {len(out.scores)} scores for "
                f"{len(proposals)} proposals; a backend must return one per proposal and n "
                "continuations"
            )
        self.acct.add_interval(_PHASE_OF[(role, "score")], *out.score_interval)
        self.acct.add_scoring(model.name, out.scores)
        if out.completions is not None:
            if out.generate_interval is not None:
                self.acct.add_interval(_PHASE_OF[(role, "generate")], *out.generate_interval)
            self.acct.add_generation(model.name, [out.completions])
        return out

    def reward_reads(self, role: ModelChoice) -> bool:
        """The reward model computes its rewards from ``role``'s token log-probabilities: pass
        them to :meth:`rewards_last` when the search holds them, and the rewards are free."""
        return self.reward is not None and self.reward.reads(role)

    def rewards_last(
        self,
        paths: Sequence[Sequence[str]],
        *,
        role: ModelChoice | None = None,
        logprobs: Sequence[Sequence[float]] | None = None,
    ) -> list[float]:
        """The reward of the last step of each partial solution (steps as generated).

        ``logprobs`` are ``role``'s log-probabilities of the tokens of each last step, when the
        search holds them (a generation's own, or a scoring call's); a reward model that reads
        that role's log-probabilities uses them instead of calling a model.
        """
        delimiter = self.options.step_delimiter
        contents = [[step_content(s, delimiter) for s in steps] for steps in paths]
        reward = self.require_reward()
        given = logprobs if role is not None and reward.reads(role) else None
        return reward.last(self.question, contents, given)

    def rewards_all(self, paths: Sequence[Sequence[str]]) -> list[list[float]]:
        """The reward of every step of each solution (steps as generated)."""
        delimiter = self.options.step_delimiter
        contents = [[step_content(s, delimiter) for s in steps] for steps in paths]
        return self.require_reward().all_steps(self.question, contents)

    # -- trace and result -------------------------------------------------------------------

    def commit(self, record: StepRecord) -> None:
        """Record a committed step and hand it to the step callback at once."""
        self.steps.append(record)
        log.debug(
            "%s step %d (beam %d): %s by %s, reward %s",
            self.policy,
            record.index,
            record.beam,
            record.decision.value,
            record.source.value,
            record.reward,
        )
        if self._on_step is not None:
            self._on_step(record)

    def stop_on_overflow(self, error: ContextOverflowError) -> None:
        """End the search because its next step no longer fits a model's context.

        The search keeps what it committed (the result is then marked unfinished, with
        ``stop_reason`` :attr:`~specs_core.types.StopReason.CONTEXT`); a search that could not
        commit one step re-raises.

        Raises:
            ContextOverflowError: ``error``, when no step was committed.
        """
        if not self.steps:
            raise error
        if isinstance(error, BudgetExceededError):
            log.info("%s: stopping after %d steps: %s", self.policy, len(self.steps), error)
            self.stop_reason = StopReason(error.reason)
            return
        log.warning(
            "%s: stopping after %d steps, the next one does not fit: %s",
            self.policy,
            len(self.steps),
            error,
        )
        self.stop_reason = StopReason.CONTEXT

    def result(
        self,
        path: SolutionPath,
        *,
        final_score: float | None,
        unfinished: StopReason = StopReason.MAX_STEPS,
        extra: Mapping[str, object] | None = None,
    ) -> SearchResult:
        """The result of the run with ``path`` as the chosen solution.

        Step counts are derived from the committed steps. The stop reason is
        :attr:`~specs_core.types.StopReason.CONTEXT` after :meth:`stop_on_overflow`, else
        :attr:`~specs_core.types.StopReason.FINISHED` when ``path`` finished, else
        ``unfinished`` (the budget that cut it).
        """
        text = path.text
        if self.stop_reason is not None:
            reason = self.stop_reason
        else:
            reason = StopReason.FINISHED if path.finished else unfinished
        return SearchResult(
            question=self.question,
            policy=self.policy,
            text=text,
            answer=extract_answer(text),
            steps=tuple(self.steps),
            solution_steps=path.steps,
            final_score=final_score,
            finished=path.finished,
            stop_reason=reason,
            usage=self.acct.finish(),
            extra=dict(extra or {}),
        )


def source_of(role: ModelChoice) -> StepSource:
    """The step source of a role."""
    return StepSource.DRAFT if role == "draft" else StepSource.TARGET


def is_finished(completion: Completion) -> bool:
    """The completion ended the solution (end of sequence, not a stop string or the limit)."""
    return completion.finish_reason is FinishReason.EOS


def candidate(
    completion: Completion, source: StepSource, *, reward: float | None, accepted: bool
) -> CandidateRecord:
    """The trace record of a generated candidate step: its text, whether it finished, its token
    count, and the mean log-probability its own model gave its tokens (when the backend returned
    one per token)."""
    own = None
    if completion.logprobs and len(completion.logprobs) == len(completion.token_ids):
        own = sum(completion.logprobs) / len(completion.logprobs)
    return CandidateRecord(
        text=completion.text,
        source=source,
        finished=is_finished(completion),
        draft_logprob=own if source is StepSource.DRAFT else None,
        target_logprob=own if source is StepSource.TARGET else None,
        reward=reward,
        accepted=accepted,
        tokens=len(completion.token_ids),
    )


def generated_logprobs(completions: Sequence[Completion]) -> list[Sequence[float]] | None:
    """The per-token log-probabilities of each completion, or ``None`` when a backend did not
    return one per token for every completion."""
    if all(c.logprobs and len(c.logprobs) == len(c.token_ids) for c in completions):
        return [c.logprobs for c in completions]
    return None


def sample_solutions(
    ctx: SearchContext, role: ModelChoice, n: int, temperature: float, max_tokens: int
) -> list[Completion]:
    """``n`` whole solutions from the model of ``role`` (no stop string), in one batched call."""
    params = SamplingParams(
        n=n, temperature=temperature, max_tokens=max_tokens, seed=ctx.call_seed(role, 0)
    )
    try:
        return ctx.generate(role, [ctx.prompt()], params)[0]
    except BudgetExceededError:
        raise
    except ContextOverflowError as e:
        raise ContextOverflowError(
            f"{e}; for this policy, lower policy.max_solution_tokens (now {max_tokens}) or "
            f"policy.n (now {n}), e.g. --set policy.max_solution_tokens={max(1, max_tokens // 2)}"
        ) from e


def path_of(completion: Completion, delimiter: str) -> SolutionPath:
    """A whole generated solution split into its steps (rewards not yet known)."""
    steps = tuple(split_steps(completion.text, delimiter))
    return SolutionPath(steps, (None,) * len(steps), is_finished(completion))


def commit_solution(
    ctx: SearchContext, path: SolutionPath, source: StepSource, decision: Decision
) -> None:
    """Commit the steps of a chosen whole solution, in order (whole-solution policies)."""
    for i, (step, reward) in enumerate(zip(path.steps, path.rewards, strict=True)):
        ctx.commit(
            StepRecord(
                index=i,
                source=source,
                text=step,
                reward=reward,
                drafted=False,
                accepted=None,
                decision=decision,
            )
        )


OptionsT = TypeVar("OptionsT", bound=PolicyOptions)


class SearchPolicy(ABC, Generic[OptionsT]):
    """Base class of a search policy.

    A subclass implements :meth:`search`, and :meth:`required_roles` when it needs models;
    :meth:`run` opens the :class:`SearchContext`, checks the roles and calls :meth:`search`. A
    plugin registers a factory ``(options, roles) -> policy`` (see ``docs/plugins.md``).

    Args:
        options: the policy's validated options (a :class:`PolicyOptions` subclass).
        roles: the models the policy works with.
        name: the registered name, recorded in results.
    """

    def __init__(self, options: OptionsT, roles: Roles, *, name: str) -> None:
        self.options = options
        self.roles = roles
        self.name = name

    def required_roles(self) -> tuple[Role, ...]:
        """The roles checked before the search starts, in order (default: none)."""
        return ()

    def run(self, question: str, *, on_step: StepCallback | None = None) -> SearchResult:
        """Solve ``question``; ``on_step`` receives each step as it is committed.

        Raises:
            InvalidInputError: the question is empty.
            ConfigError: a role the policy needs is missing.
        """
        ctx = SearchContext(self.name, question, self.options, self.roles, on_step)
        for role in self.required_roles():
            ctx.require(role)
        return self.search(ctx)

    @abstractmethod
    def search(self, ctx: SearchContext) -> SearchResult:
        """Run the search in ``ctx`` and return :meth:`SearchContext.result`."""

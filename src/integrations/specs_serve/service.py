"""What the HTTP layer calls: admission, one search per request, its steps and its result.

:class:`SearchService` owns the loaded models (one :class:`~specs_core.solver.Specs`, shared by
every request) and runs each request's search in a worker thread
(:class:`~specs_core.streaming.SolveStream`). At most ``max_running`` searches run at once and at
most ``max_waiting`` more wait for a slot; a request beyond that is refused at once
(:class:`QueueFullError`, HTTP 429) rather than queued without bound. A consumer that stops
reading (a client that disconnected) cancels its search before the search's next model call, and
its slot is free once the worker thread has stopped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from specs_core.answering import AnswerEvent, AnswerStep, AnswerStream
from specs_core.config import ROLE_NAMES
from specs_core.errors import InvalidInputError
from specs_core.solver import Specs
from specs_core.types import SearchResult

from specs_serve.metrics import Metrics
from specs_serve.protocol import SearchRequest

__all__ = [
    "Admission",
    "QueueFullError",
    "SearchJob",
    "SearchService",
    "Ticket",
    "UnknownModelError",
    "openai_usage",
]

log = logging.getLogger(__name__)


class UnknownModelError(InvalidInputError):
    """A request names a model the server does not offer."""


class QueueFullError(Exception):
    """Every slot is busy and the waiting line is full.

    Attributes:
        retry_after: seconds after which a retry has a fair chance (for ``Retry-After``).
    """

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class SearchJob:
    """One request's search, validated (not started yet).

    Attributes:
        model: the model id the client asked for (echoed in responses).
        answer: the search, as answer events.
    """

    model: str
    answer: AnswerStream


def openai_usage(result: SearchResult) -> dict[str, Any]:
    """OpenAI's ``usage`` object: every model's prompt and generated tokens.

    ``completion_tokens`` counts every token the search generated (all candidates, all models),
    the way a reasoning model counts its hidden reasoning tokens; ``cached_tokens`` the prompt
    tokens served from a prefix cache. The split per model is in the ``specs`` extension.
    """
    tokens = result.usage.tokens.values()
    prompt = sum(u.prompt for u in tokens)
    generated = sum(u.generated for u in tokens)
    cached = sum(u.cached for u in tokens)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": generated,
        "total_tokens": prompt + generated,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


class Admission:
    """At most ``slots`` holders at once and at most ``waiting`` more in line.

    :meth:`reserve` takes a place in line or refuses at once; the place is then entered (waiting
    for a slot) with ``async with``, or given back with :meth:`Ticket.abandon` when the request
    ends before it ran.
    """

    def __init__(self, slots: int, waiting: int) -> None:
        if slots < 1 or waiting < 0:
            raise InvalidInputError(
                f"max_running must be >= 1 and max_waiting >= 0 (got {slots}, {waiting})"
            )
        self.slots = slots
        self.max_waiting = waiting
        self.running = 0
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(slots)
        self._mean_s = 0.0

    def reserve(self) -> Ticket:
        """A place in line.

        Raises:
            QueueFullError: every slot is busy and the line is full.
        """
        if self.running + self.waiting >= self.slots + self.max_waiting:
            raise QueueFullError(
                f"the server is busy: {self.running} searches running and {self.waiting} "
                f"waiting (max_running {self.slots}, max_waiting {self.max_waiting}); retry later",
                self.retry_after(),
            )
        self.waiting += 1
        return Ticket(self)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the mean search time times the line's length."""
        rounds = (self.waiting + 1) / self.slots
        return max(1, math.ceil(self._mean_s * rounds))

    def finished(self, seconds: float) -> None:
        """Record a finished search's wall time (for :meth:`retry_after`)."""
        self._mean_s = seconds if self._mean_s == 0 else 0.8 * self._mean_s + 0.2 * seconds


class Ticket:
    """A place in an :class:`Admission` line; ``async with`` waits for a slot and holds it."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._state = "waiting"

    async def __aenter__(self) -> Ticket:
        admission = self._admission
        try:
            await admission._semaphore.acquire()
        finally:  # cancelled while waiting, or admitted: out of the line either way
            admission.waiting -= 1
            self._state = "done"
        admission.running += 1
        self._state = "running"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = "done"
        self._admission.running -= 1
        self._admission._semaphore.release()

    def abandon(self) -> None:
        """Give the place back if it was never entered (the request ended before it ran)."""
        if self._state == "waiting":
            self._state = "done"
            self._admission.waiting -= 1


class SearchService:
    """The served configuration: its models, the policies it offers, and request admission.

    Args:
        specs: the loaded configuration (shared by every request; closed by :meth:`close`).
        name: the configuration's model id (its own policy and options).
        max_running: searches that run at once.
        max_waiting: requests that may wait for a slot; more are refused (HTTP 429).
    """

    def __init__(self, specs: Specs, name: str, *, max_running: int, max_waiting: int) -> None:
        self.specs = specs
        self.name = name
        self.admission = Admission(max_running, max_waiting)
        self.started = time.time()
        self.metrics = Metrics(
            {
                "specs_queue_depth": ("Requests waiting for a search slot.", self._waiting),
                "specs_searches_running": ("Searches running now.", self._running),
            }
        )

    def _waiting(self) -> float:
        return self.admission.waiting

    def _running(self) -> float:
        return self.admission.running

    # -- models -------------------------------------------------------------------------------

    def model_ids(self) -> list[str]:
        """The configuration's name, then every registered policy its models can run."""
        config = self.specs.config
        have = {role for role in ROLE_NAMES if getattr(config, role) is not None}
        if config.reward is not None:
            have.add("reward")
        ids = [self.name]
        for name, spec in sorted(self.specs.registry.policies.items()):
            if name != self.name and spec.unavailable_reason() is None and set(spec.roles) <= have:
                ids.append(name)
        return ids

    def job(self, request: SearchRequest, question: str, system: str | None) -> SearchJob:
        """Validate a request's model and options into a job.

        Raises:
            UnknownModelError: an unknown model.
            ConfigError: an option the policy does not take, or a bad value (naming it).
        """
        if request.model not in self.model_ids():
            raise UnknownModelError(
                f"unknown model {request.model!r}; this server offers "
                f"{', '.join(self.model_ids())} (GET /v1/models)"
            )
        options = dict(request.specs or {})
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.seed is not None:
            options["seed"] = request.seed
        answer = AnswerStream(
            self.specs,
            question,
            policy=None if request.model == self.name else request.model,
            options=options,
            system=system,
            stops=request.stop_strings(),
            token_limit=request.token_limit(),
        )
        return SearchJob(request.model, answer)

    # -- running ------------------------------------------------------------------------------

    async def run(self, job: SearchJob) -> AsyncIterator[AnswerEvent]:
        """Run ``job``'s search: each committed step, then the end (see
        :class:`~specs_core.answering.AnswerStream`); closing the iterator early (a client that
        went away) cancels the search before its next model call and waits for its thread."""
        events = job.answer.aiter()
        start = time.monotonic()
        try:
            async for event in events:
                if isinstance(event, AnswerStep):
                    self.metrics.step(event.record.source.value)
                else:
                    for name, usage in event.result.usage.tokens.items():
                        self.metrics.tokens(name, usage.generated)
                yield event
        finally:
            await events.aclose()
            self.admission.finished(time.monotonic() - start)

    def close(self) -> None:
        """Free the models."""
        self.specs.close()

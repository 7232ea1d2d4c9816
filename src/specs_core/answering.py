"""One question answered by a search, as a stream of answer events (for chat interfaces).

A chat interface (``specs serve``, the LangChain ``ChatSpecs``) shows an answer as it grows.
:class:`AnswerStream` runs the search in a worker thread
(:class:`~specs_core.streaming.SolveStream`) and turns what the policy commits into
:class:`AnswerStep` events, then an :class:`AnswerEnd`:

- when the committed steps are the answer (``linear``: single-beam searches that commit a
  finished candidate and stop, ``on_finished: stop``, and the whole-solution policies), each step
  carries the answer text it adds;
- otherwise (multi-beam searches, and searches that set finished candidates aside and choose the
  answer at the end: ``on_finished: continue``, the SPECS default), each step carries its text as
  *reasoning* and the answer comes whole with the end.

Stop strings cut the answer before the first one. For a linear search the search also ends
gracefully before its next model call (:attr:`~specs_core.search.Budget.until`), keeping what it
committed; otherwise the chosen answer is cut. Iterating synchronously or with :meth:`aiter` gives
the same events; leaving early cancels the search before its next model call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

from specs_core.resolution import resolve_policy
from specs_core.search import Budget
from specs_core.solver import Specs
from specs_core.streaming import SolveStream
from specs_core.types import SearchResult, StepCallback, StepRecord

__all__ = [
    "AnswerEnd",
    "AnswerEvent",
    "AnswerStep",
    "AnswerStream",
    "StopScanner",
    "search_summary",
    "step_summary",
]

log = logging.getLogger(__name__)


class StopScanner:
    """Cuts a text arriving in pieces before the first of some stop strings.

    :meth:`feed` returns what can be shown now: it holds back a tail that could be the start of
    a stop string split across pieces, and :meth:`flush` returns it at the end.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.stopped = False
        self.text = ""
        self._held = ""

    def feed(self, piece: str) -> str:
        """Add ``piece``; return the text that is now safe to show."""
        if self.stopped:
            return ""
        buffer = self._held + piece
        cuts = [i for i in (buffer.find(stop) for stop in self.stops) if i >= 0]
        if cuts:
            self.stopped = True
            self._held = ""
            out = buffer[: min(cuts)]
        else:
            partial = (k for s in self.stops for k in range(1, len(s)) if buffer.endswith(s[:k]))
            hold = max(partial, default=0)
            out, self._held = buffer[: len(buffer) - hold], buffer[len(buffer) - hold :]
        self.text += out
        return out

    def flush(self) -> str:
        """The held-back tail (the text ended without a stop string)."""
        out, self._held = ("" if self.stopped else self._held), ""
        self.text += out
        return out


@dataclass(frozen=True)
class AnswerStep:
    """A committed step: the answer text it adds (linear searches), or else its text as
    reasoning (the answer is chosen at the end)."""

    record: StepRecord
    content: str
    reasoning: str


@dataclass(frozen=True)
class AnswerEnd:
    """The end: the rest of the answer, the whole answer, why it ended, and the result.

    Attributes:
        content: answer text not sent with the steps.
        text: the whole answer (cut before a stop string).
        finish_reason: ``stop`` (finished, or a stop string) or ``length`` (a limit ended it).
        result: the search's result.
    """

    content: str
    text: str
    finish_reason: str
    result: SearchResult


AnswerEvent = AnswerStep | AnswerEnd


def step_summary(record: StepRecord) -> dict[str, Any]:
    """A committed step as JSON-ready data (source, decision, reward...)."""
    return {
        "step": record.index,
        "text": record.text,
        "beam": record.beam,
        "source": record.source.value,
        "decision": record.decision.value,
        "reward": record.reward,
        "drafted": record.drafted,
        "accepted": record.accepted,
        "candidates": len(record.candidates),
    }


def search_summary(result: SearchResult) -> dict[str, Any]:
    """A search's answer, steps, tokens per model and latency per phase, as JSON-ready data."""
    return {
        "policy": result.policy,
        "answer": result.answer,
        "stop_reason": result.stop_reason.value,
        "finished": result.finished,
        "final_score": result.final_score,
        "steps": len(result.steps),
        "draft_steps": result.draft_steps,
        "target_steps": result.target_steps,
        "accepted_draft_steps": result.accepted_draft_steps,
        "rejected_draft_steps": result.rejected_draft_steps,
        "switches": result.switches,
        "latency_s": dict(result.usage.latency_s),
        "tokens": {name: asdict(usage) for name, usage in result.usage.tokens.items()},
    }


class AnswerStream:
    """One question answered by a search policy of ``specs``, as answer events.

    Args:
        specs: the loaded configuration.
        question: the problem.
        policy: a registered policy (default: the config's).
        options: policy options on top of the config's.
        system: a system prompt (``None``: the policy's).
        stops: stop strings.
        token_limit: the most tokens the search may generate over all its candidates and models
            (``None``: no limit).
        seconds: the most wall-clock seconds the search may take (``None``: no limit).
        reproducible: run it as :meth:`~specs_core.solver.Specs.reproducible` says, so that
            concurrent searches give the results they give alone (at the cost of running one at
            a time on engines such as llama.cpp).

    Raises:
        PluginError: the policy is unknown.
        ConfigError: an option is unknown to the policy or invalid (naming it).
    """

    def __init__(
        self,
        specs: Specs,
        question: str,
        *,
        policy: str | None = None,
        options: Mapping[str, Any] | None = None,
        system: str | None = None,
        stops: tuple[str, ...] = (),
        token_limit: int | None = None,
        seconds: float | None = None,
        reproducible: bool = False,
    ) -> None:
        self._options = dict(options or {})
        if system is not None:
            self._options["system_prompt"] = system
        resolved = resolve_policy(specs.config, policy, self._options, specs.registry)
        self.policy = resolved.name
        self.linear = (
            getattr(resolved.options, "beam_width", 1) <= 1
            and getattr(resolved.options, "on_finished", "stop") == "stop"
        )
        self._specs = specs
        self._question = question
        self._stops = stops
        self._reproducible = reproducible
        self._until = threading.Event()
        self._budget = Budget(seconds=seconds, tokens=token_limit, until=self._until)
        self._scanner = StopScanner(stops)
        self._raw = ""
        self._stream = SolveStream(self._solve, name=f"specs-answer-{self.policy}")

    def _solve(self, on_step: StepCallback) -> SearchResult:
        watch = StopScanner(self._stops)  # in the search's thread: ends it before its next call

        def step(record: StepRecord) -> None:
            on_step(record)
            if self.linear and self._stops:
                watch.feed(record.text)
                if watch.stopped:
                    self._until.set()

        with self._specs.reproducible(self.policy) if self._reproducible else nullcontext():
            return self._specs.solve(
                self._question,
                policy=self.policy,
                options=self._options,
                on_step=step,
                budget=self._budget,
            )

    def _event(self, item: StepRecord | SearchResult) -> AnswerEvent:
        if isinstance(item, StepRecord):
            if not self.linear:
                return AnswerStep(item, "", item.text)
            self._raw += item.text
            return AnswerStep(item, self._scanner.feed(item.text), "")
        return self._end(item)

    def _end(self, result: SearchResult) -> AnswerEnd:
        scanner = self._scanner
        if not self.linear:  # the answer is known only now: it comes whole
            content = scanner.feed(result.text)
        elif result.text.startswith(self._raw):
            content = scanner.feed(result.text[len(self._raw) :])
        else:  # a policy whose answer is not its committed steps: keep what was sent
            log.warning("%s: the answer does not extend the committed steps", self.policy)
            content = ""
        content += scanner.flush()
        finish = "stop" if scanner.stopped or result.finished else "length"
        return AnswerEnd(content=content, text=scanner.text, finish_reason=finish, result=result)

    def __iter__(self) -> Iterator[AnswerEvent]:
        """Block for each step, then the end; an error of the search is raised here."""
        for item in self._stream:
            yield self._event(item)

    async def aiter(self) -> AsyncGenerator[AnswerEvent, None]:
        """Like iterating, but waits on the event loop instead of blocking it."""
        items = self._stream.aiter()
        try:
            async for item in items:
                yield self._event(item)
        finally:
            await items.aclose()

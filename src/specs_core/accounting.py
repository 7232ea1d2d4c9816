"""Wall time per phase and tokens per model, measured while a policy runs.

Phases may overlap (SPECS scores with the target and the reward model concurrently); each phase
reports its own wall time, and ``overhead`` is the part of the total covered by no phase.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from specs_core.errors import InvalidInputError
from specs_core.types import Completion, Phase, TokenLogprobs, TokenUsage, Usage

__all__ = ["Accountant"]

_TIMED_PHASES = tuple(p for p in Phase if p is not Phase.OVERHEAD)


def _timed_phase(name: Phase | str) -> Phase:
    try:
        phase = Phase(name)
    except ValueError:
        phase = Phase.OVERHEAD
    if phase is Phase.OVERHEAD:
        phases = ", ".join(p.value for p in _TIMED_PHASES)
        raise InvalidInputError(f"unknown phase {name!r}; phases are {phases}")
    return phase


def _union_length(intervals: list[tuple[float, float]]) -> float:
    covered = 0.0
    end = float("-inf")
    for lo, hi in sorted(intervals):
        if hi <= end:
            continue
        covered += hi - max(lo, end)
        end = hi
    return covered


class Accountant:
    """Collects the cost of one search. Thread-safe.

    Example:
        >>> acct = Accountant()
        >>> with acct.phase("draft_generate"):
        ...     pass
        >>> usage = acct.finish()
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self._intervals: dict[Phase, list[tuple[float, float]]] = {p: [] for p in _TIMED_PHASES}
        self._tokens: dict[str, TokenUsage] = {}
        self.reward_cache_hits = 0
        self.reward_cache_misses = 0
        self.hybrid_steps = 0
        self.hybrid_proposed = 0
        self.hybrid_accepted = 0

    @contextmanager
    def phase(self, name: Phase | str) -> Iterator[None]:
        """Time the enclosed block as phase ``name`` (any :class:`~specs_core.types.Phase` but
        overhead, which is what no phase covers)."""
        phase = _timed_phase(name)
        begin = time.perf_counter()
        try:
            yield
        finally:
            end = time.perf_counter()
            with self._lock:
                self._intervals[phase].append((begin, end))

    def add_interval(self, name: Phase | str, begin: float, end: float) -> None:
        """Count ``[begin, end]`` (``time.perf_counter`` readings) as time spent in phase ``name``.

        For work timed elsewhere, e.g. one backend call that first scores and then generates.
        """
        phase = _timed_phase(name)
        if end < begin:
            raise InvalidInputError(f"interval of phase {phase.value!r} ends before it begins")
        with self._lock:
            self._intervals[phase].append((begin, end))

    def _usage(self, model: str) -> TokenUsage:
        usage = self._tokens.get(model)
        if usage is None:
            usage = self._tokens[model] = TokenUsage()
        return usage

    def add_generation(self, model: str, completions: Iterable[Iterable[Completion]]) -> None:
        """Count the tokens of one ``generate`` call (all its completions)."""
        with self._lock:
            usage = self._usage(model)
            usage.calls += 1
            for group in completions:
                for i, c in enumerate(group):
                    if i == 0:  # the n samples of one prompt share its prefill
                        usage.prompt += c.prompt_tokens
                        usage.cached += c.cached_tokens
                    usage.generated += c.completion_tokens
                    usage.draft_proposed += c.draft_tokens_proposed
                    usage.draft_accepted += c.draft_tokens_accepted
                    usage.draft_rounds += c.draft_rounds

    def generated_tokens(self) -> int:
        """Tokens generated so far by every model together."""
        with self._lock:
            return sum(u.generated for u in self._tokens.values())

    def add_scoring(self, model: str, scored: Iterable[TokenLogprobs]) -> None:
        """Count the tokens of one ``logprobs`` call: evaluated tokens count as prompt tokens."""
        with self._lock:
            usage = self._usage(model)
            usage.calls += 1
            for s in scored:
                usage.prompt += s.prompt_tokens + len(s.token_ids)
                usage.cached += s.cached_tokens

    def add_tokens(
        self, model: str, *, prompt: int = 0, generated: int = 0, cached: int = 0
    ) -> None:
        """Count tokens spent outside ``generate``/``logprobs`` (e.g. by a reward model)."""
        with self._lock:
            usage = self._usage(model)
            usage.calls += 1
            usage.prompt += prompt
            usage.generated += generated
            usage.cached += cached

    def count_reward_lookups(self, *, hits: int, misses: int) -> None:
        """Record reward-cache hits and misses."""
        with self._lock:
            self.reward_cache_hits += hits
            self.reward_cache_misses += misses

    def count_hybrid_step(self, *, proposed: int, accepted: int) -> None:
        """Record one SPECS hybrid step: draft tokens offered to the target and accepted."""
        with self._lock:
            self.hybrid_steps += 1
            self.hybrid_proposed += proposed
            self.hybrid_accepted += accepted

    def finish(self) -> Usage:
        """Freeze the figures measured so far into a :class:`Usage`."""
        now = time.perf_counter()
        with self._lock:
            total = now - self._start
            latency = {p.value: _union_length(iv) for p, iv in self._intervals.items()}
            covered = _union_length([i for iv in self._intervals.values() for i in iv])
            latency[Phase.OVERHEAD.value] = max(0.0, total - covered)
            latency["total"] = total
            tokens = {m: dataclasses.replace(u) for m, u in self._tokens.items()}
            return Usage(
                latency_s=latency,
                tokens=tokens,
                reward_cache_hits=self.reward_cache_hits,
                reward_cache_misses=self.reward_cache_misses,
                hybrid_steps=self.hybrid_steps,
                hybrid_proposed=self.hybrid_proposed,
                hybrid_accepted=self.hybrid_accepted,
            )

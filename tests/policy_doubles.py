"""Scripted test doubles for policy decision tests.

``ScriptedModel`` and ``ScriptedReward`` are test doubles: they return exactly the candidates,
log-probabilities and rewards a test specifies, so that each policy decision can be checked
against hand-computed numbers. End-to-end behaviour is tested on the toy backend instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from specs_core.protocols import Capabilities
from specs_core.types import Completion, FinishReason, Prompt, SamplingParams, TokenLogprobs

STOP = FinishReason.STOP
EOS = FinishReason.EOS
LENGTH = FinishReason.LENGTH


@dataclass(frozen=True)
class Scripted:
    """One scripted candidate: its text, its generation log-probs and how it ended."""

    text: str
    logprobs: tuple[float, ...] = (-1.0,)
    finish: FinishReason = STOP


def cand(text: str, *logprobs: float, finish: FinishReason | None = None) -> Scripted:
    """A candidate; ends with STOP when ``text`` ends with a blank line, else with EOS."""
    if finish is None:
        finish = STOP if text.endswith("\n\n") else EOS
    return Scripted(text, tuple(logprobs) or (-1.0,), finish)


@dataclass
class ScriptedModel:
    """Test double of a LanguageModel: candidates looked up by the prompt's partial text.

    Args:
        name: the accounting name.
        script: partial text -> candidates; a generate call returns the first ``n`` of them.
        scores: continuation text -> the log-probs ``logprobs()`` returns (the model's own
            tokenization of that text, which may differ from any other model's).
        capabilities: declared capabilities.
        events: a shared list where every call is appended (to check call order).
        on_score: called inside ``logprobs()`` (e.g. to wait on a barrier).
    """

    name: str
    script: Mapping[str, Sequence[Scripted]] = field(default_factory=dict)
    scores: Mapping[str, Sequence[float]] = field(default_factory=dict)
    capabilities: Capabilities = field(default_factory=Capabilities)
    events: list[tuple[str, ...]] = field(default_factory=list)
    on_score: Callable[[], None] | None = None
    generate_calls: list[tuple[list[Prompt], SamplingParams]] = field(default_factory=list)
    score_calls: list[tuple[list[Prompt], list[str]]] = field(default_factory=list)
    closed: bool = False

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        self.generate_calls.append((list(prompts), params))
        self.events.append(("generate", self.name, *(p.partial for p in prompts)))
        out = []
        for p in prompts:
            options = self.script.get(p.partial)
            if options is None or len(options) < params.n:
                raise KeyError(f"{self.name}: no {params.n} scripted candidates for {p.partial!r}")
            out.append(
                [
                    Completion(
                        text=c.text,
                        token_ids=tuple(range(len(c.logprobs))),
                        logprobs=c.logprobs if self.capabilities.generation_logprobs else (),
                        finish_reason=c.finish,
                        prompt_tokens=10 + len(p.partial),
                        cached_tokens=len(p.partial),
                    )
                    for c in options[: params.n]
                ]
            )
        return out

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        self.score_calls.append((list(prompts), list(continuations)))
        self.events.append(("score", self.name))
        if self.on_score is not None:
            self.on_score()
        out = []
        for p, text in zip(prompts, continuations, strict=True):
            lps = tuple(self.scores[text])
            ids = tuple(range(len(lps)))
            out.append(TokenLogprobs(ids, lps, prompt_tokens=10 + len(p.partial)))
        return out

    def close(self) -> None:
        self.closed = True


@dataclass
class ScriptedReward:
    """Test double of a RewardModel: the reward of a step is looked up by its content.

    Args:
        rewards: step content (no delimiter) -> reward; a tuple of contents keys a whole prefix.
        default: the reward of any other step.
        on_score: called inside ``score()`` (e.g. to wait on a barrier or to raise).
    """

    rewards: Mapping[object, float] = field(default_factory=dict)
    default: float = 0.5
    on_score: Callable[[], None] | None = None
    name: str = "scripted-prm"
    calls: int = 0
    scored: list[tuple[str, ...]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _one(self, prefix: tuple[str, ...]) -> float:
        if prefix in self.rewards:
            return self.rewards[prefix]
        return self.rewards.get(prefix[-1], self.default)

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        if self.on_score is not None:
            self.on_score()
        with self._lock:
            self.calls += 1
            self.scored.extend(tuple(s) for s in solutions)
        return [[self._one(tuple(s[: j + 1])) for j in range(len(s))] for s in solutions]

    def close(self) -> None:
        pass

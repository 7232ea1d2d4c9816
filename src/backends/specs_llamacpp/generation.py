"""Batched multi-sample generation and continuation scoring on a :class:`LlamaRuntime`.

Generation of ``n`` samples of one prompt: the prompt is evaluated once in sequence 0 (reusing any
cached prefix), forked to sequences 1..g-1, and every step decodes one token per live sequence in a
single batch. Samples are drawn from the same first-token logits and then from their own rows.
When ``n`` exceeds ``n_seq_max``, or ``n`` samples of ``max_tokens`` would not fit in the shared
cache, the samples run in successive groups of ``g``; each sample has its own seeded generator, so
the grouping does not change which tokens are drawn.

Scoring a continuation: the prefix and the prefix+continuation texts are tokenized separately and
the tokens after their common token prefix are scored. When the continuation's first characters
merge with the prefix's last token (e.g. a partial word), the scored tokens start a little before
the continuation text: the scores are then those of exactly the tokens the model would have
produced for the whole text, which is what a sampled continuation is compared against.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from specs_core.errors import ContextOverflowError, InvalidInputError
from specs_core.types import Completion, FinishReason, SamplingParams, TokenLogprobs

from specs_llamacpp.runtime import LlamaRuntime, common_prefix
from specs_llamacpp.sampling import sample_token, sequence_rngs, token_logprob

__all__ = ["check_generation_fits", "generate_samples", "score_continuations"]


@dataclass
class _Sample:
    """One sequence being generated."""

    seq: int
    rng: np.random.Generator
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    finish: FinishReason | None = None
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    def push(self, rt: LlamaRuntime, token: int, logprob: float, params: SamplingParams) -> None:
        """Append a sampled token and decide whether the sequence is finished."""
        if rt.is_end(token):  # the end token is not part of the text, ids or logprobs
            self.finish = FinishReason.EOS
            self.text += self.decoder.decode(b"", final=True)
            return
        self.tokens.append(token)
        self.logprobs.append(logprob)
        before = len(self.text)
        self.text += self.decoder.decode(rt.piece(token))
        if params.stop:
            longest = max(len(s) for s in params.stop)
            start = max(0, before - longest + 1)
            ends = [found + len(s) for s in params.stop if (found := self.text.find(s, start)) >= 0]
            if ends:
                self.text = self.text[: min(ends)]
                self.finish = FinishReason.STOP
                return
        if len(self.tokens) >= params.max_tokens:
            self.finish = FinishReason.LENGTH
            self.text += self.decoder.decode(b"", final=True)


def check_generation_fits(
    prompt_tokens: int, params: SamplingParams, n_ctx: int, name: str
) -> None:
    """Raise :class:`ContextOverflowError` when one sample cannot fit in the context."""
    if prompt_tokens + params.max_tokens > n_ctx:
        raise ContextOverflowError(
            f"model {name!r}: the prompt has {prompt_tokens} tokens and max_tokens is "
            f"{params.max_tokens}, {prompt_tokens + params.max_tokens} in all, more than the "
            f"context of {n_ctx} tokens; raise the n_ctx option or shorten the prompt or "
            "max_tokens"
        )


def evaluate_prompt(rt: LlamaRuntime, prompt: Sequence[int]) -> tuple[npt.NDArray[np.float32], int]:
    """Evaluate ``prompt`` (reusing the cached prefix); the logits after its last token, and how
    many tokens were reused.

    Raises:
        InvalidInputError: the prompt is empty.
    """
    if not prompt:
        raise InvalidInputError("the rendered prompt is empty; there is nothing to continue")
    first: list[npt.NDArray[np.float32]] = []
    reused = rt.evaluate(prompt, len(prompt) - 1, lambda _pos, row: first.append(row.copy()))
    return first[-1], reused


def generate_samples(
    rt: LlamaRuntime, prompt: Sequence[int], params: SamplingParams, seed: int, prompt_index: int
) -> list[Completion]:
    """Generate ``params.n`` samples of one tokenized prompt (see the module docstring)."""
    size = len(prompt)
    logits0, reused = evaluate_prompt(rt, prompt)
    group = max(1, min(params.n, rt.n_seq_max, (rt.n_ctx - size) // params.max_tokens))
    rngs = sequence_rngs(seed, prompt_index, params.n)
    completions: list[Completion] = []
    for start in range(0, params.n, group):
        count = min(group, params.n - start)
        if start:
            rt.trim(size)
        rt.fork(count)
        samples = [_Sample(seq=j, rng=rngs[start + j]) for j in range(count)]
        for s in samples:
            token, logprob = sample_token(
                logits0, temperature=params.temperature, top_p=params.top_p, rng=s.rng
            )
            s.push(rt, token, logprob, params)
        live = [s for s in samples if s.finish is None]
        while live:
            rows = rt.step([(s.tokens[-1], size + len(s.tokens) - 1, s.seq) for s in live])
            for s, row in zip(live, rows, strict=True):
                token, logprob = sample_token(
                    row, temperature=params.temperature, top_p=params.top_p, rng=s.rng
                )
                s.push(rt, token, logprob, params)
            live = [s for s in live if s.finish is None]
        completions.extend(
            Completion(
                text=s.text,
                token_ids=tuple(s.tokens),
                logprobs=tuple(s.logprobs),
                finish_reason=s.finish or FinishReason.LENGTH,
                prompt_tokens=size,
                cached_tokens=reused,
            )
            for s in samples
        )
    rt.fork(1)  # free the other sequences' cells; sequence 0 keeps the prompt and sample 0
    return completions


def score_continuations(
    rt: LlamaRuntime, prefix: Sequence[int], fulls: Sequence[Sequence[int]]
) -> list[TokenLogprobs]:
    """Score each tokenized ``prefix + continuation`` after its common prefix with ``prefix``.

    The runtime's cache makes the prefix evaluated once: each text reuses what the previous one
    left in sequence 0 and evaluates only the tokens after the shared part.
    """
    results: list[TokenLogprobs] = []
    for full in fulls:
        start = common_prefix(prefix, full)
        if start == 0:
            raise InvalidInputError("the rendered prompt is empty; a continuation needs a prefix")
        if start == len(full):
            results.append(TokenLogprobs((), (), prompt_tokens=start, cached_tokens=start))
            continue
        if len(full) > rt.n_ctx:
            raise ContextOverflowError(
                f"prompt and continuation have {len(full)} tokens, more than the context of "
                f"{rt.n_ctx} tokens; raise the n_ctx option or shorten them"
            )
        scored: list[float] = []

        def collect(
            pos: int,
            row: npt.NDArray[np.float32],
            full: Sequence[int] = full,
            scored: list[float] = scored,
        ) -> None:
            scored.append(token_logprob(row, full[pos + 1]))

        reused = rt.evaluate(full[:-1], start - 1, collect)
        results.append(
            TokenLogprobs(
                token_ids=tuple(full[start:]),
                logprobs=tuple(scored),
                prompt_tokens=start,
                cached_tokens=reused,
            )
        )
    return results

r"""A deterministic, pure-Python toy language model with true probabilities.

:class:`ToyLanguageModel` implements :class:`~specs_core.protocols.LanguageModel` without any
engine, so that policies, accounting, plugins and integrations are tested offline in milliseconds.

How it works:

- **Vocabulary.** A few dozen word tokens (step openers such as ``"First"``, words such as
  ``" add"``, numbers ``" 0"`` .. ``" 20"``, answers ``" \boxed{0}"`` .. ``" \boxed{20}"``,
  ``"."``, ``","``), the step delimiter ``"\n\n"``, an end-of-sequence token, and 256 byte tokens.
  Any string tokenizes (known words greedily, longest first; any other character as its UTF-8
  bytes), so text written by another model scores to finite log-probabilities.
- **Distribution.** At every position the next token follows a proper softmax over the whole
  output vocabulary. Its logits mix a light grammar (steps of a few words, the delimiter more
  likely as a step grows, a boxed answer more likely after a few steps, then end of sequence) with
  noise drawn from a hash of the question and the last three tokens. The toy "knows" the answer
  :func:`toy_answer` (the sum of the question's integers modulo 21), so ``"What is 2 + 3?"`` is
  usually answered ``\boxed{5}``.
- **Variants.** Every model shares the same base noise. ``variant`` salts an extra noise term of
  scale ``mismatch``, and the answer knowledge is weakened by ``1 / (1 + mismatch)``: the
  ``"draft"`` variant (default mismatch 1) is a perturbed copy of the ``"target"`` variant
  (default mismatch 0), so target/draft log-ratios are meaningful and drafts are sometimes
  accepted, sometimes not.
- **Byte tokens** carry a tiny but nonzero probability (about 1e-6 in all). The sampler never
  emits them (a fixed top-k filter), so generated text always re-tokenizes into the tokens that
  produced it, and scoring generated text returns exactly the recorded log-probabilities.
- **Template.** ``system``, ``question`` and ``partial`` are rendered into one token context
  between marker tokens; ``partial`` stays the open assistant message and is continued.
- **Speculative decoding.** With ``speculative`` options the toy drafts with the shared n-gram
  drafter of :mod:`specs_core.backend_kit.ngram` and verifies with its acceptance rule, and it
  implements :class:`~specs_core.protocols.ProposalVerifier`; every variant shares one
  tokenizer, hence one ``tokenizer_id``. The samples are those of plain sampling with the same
  seed: the point is to test the rule, not to be faster.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from specs_core.backend_kit.ngram import (
    NgramSession,
    NgramTables,
    SpeculativeOptions,
    accept_by_sampling,
)
from specs_core.errors import ContextOverflowError, InvalidInputError
from specs_core.protocols import Capabilities, ContinueIf, Verification, check_pairs
from specs_core.testing.toy_tokenizer import (
    _ASSISTANT_ID,
    _BLOCK,
    _BLOCK_CLASSES,
    _BOX,
    _DELIM,
    _DELIM_ID,
    _EOS,
    _FIRST_BYTE,
    _NUM,
    _OTHER,
    _PUNCT_C,
    _START,
    _SYSTEM_ID,
    _USER_ID,
    _VOCAB_SIZE,
    _WORD,
    _WORD_STRINGS,
    ANSWER_RANGE,
    EOS_ID,
    STEP_DELIMITER,
    ToyTokenizer,
    _class_of,
    _hash_int,
    _number_value,
    toy_answer,
)
from specs_core.types import Completion, FinishReason, Prompt, SamplingParams, TokenLogprobs

__all__ = [
    "ANSWER_RANGE",
    "EOS_ID",
    "STEP_DELIMITER",
    "ToyLanguageModel",
    "ToyTokenizer",
    "toy_answer",
]

_BYTE_LOGIT = -16.0  # every byte token's logit: rare but possible in foreign text
_NOISE_SCALE = 1.5  # standard deviation of a variant's own noise per unit of mismatch


@dataclass(frozen=True)
class _State:
    """What the distribution at a position depends on, besides the question."""

    steps: int  # delimiters in the assistant message so far
    pos: int  # tokens in the current step
    boxed: bool  # an answer was boxed
    recent: tuple[int, ...]  # the last three tokens of the whole context

    def advance(self, token: int) -> _State:
        if token == _DELIM_ID:
            steps, pos = self.steps + 1, 0
        else:
            steps, pos = self.steps, self.pos + 1
        boxed = self.boxed or _class_of(token) == _BOX
        return _State(steps, pos, boxed, (*self.recent, token)[-3:])


@lru_cache(maxsize=1 << 15)
def _noise(salt: str, qkey: int, recent: tuple[int, ...]) -> tuple[float, ...]:
    """Unit-variance triangular noise, one value per block token, from a hash of the context."""
    data = hashlib.shake_128(repr((salt, qkey, recent)).encode("utf-8")).digest(2 * len(_BLOCK))
    scale = math.sqrt(6.0) / 255.0
    return tuple((data[i] + data[i + 1] - 255) * scale for i in range(0, len(data), 2))


@lru_cache(maxsize=4096)
def _class_biases(steps: int, pos: int, boxed: bool, prev: int) -> tuple[float, ...]:
    """The grammar part of the logits: one bias per token class."""
    bias = [0.0] * 8
    bias[_EOS] = -12.0
    if boxed:
        bias[_EOS] = 6.0 if prev in (_BOX, _PUNCT_C) or pos == 0 else 3.0
        for cls in (_START, _WORD, _NUM, _BOX, _PUNCT_C, _DELIM):
            bias[cls] = -4.0  # after the answer only closing punctuation fits
        if prev == _BOX:
            bias[_PUNCT_C], bias[_DELIM] = 1.0, -3.0
        return tuple(bias)
    if pos == 0:
        bias[_START], bias[_WORD], bias[_NUM] = 3.5, -1.5, -1.5
        bias[_BOX], bias[_PUNCT_C], bias[_DELIM] = -6.0, -1.5, -9.0
        return tuple(bias)
    bias[_START] = -5.0
    bias[_DELIM] = (-5.0 if pos < 3 else -2.0 + 1.0 * (pos - 3)) + (
        2.5 if prev == _PUNCT_C else 0.0
    )
    bias[_BOX] = (
        -6.5 + 1.7 * min(steps, 6) + (0.0 if pos >= 2 else -3.0) + (1.5 if prev == _WORD else 0.0)
    )
    bias[_PUNCT_C] = 1.0 if prev in (_NUM, _BOX) else -2.5
    bias[_NUM] = {_WORD: 1.2, _NUM: -2.5, _START: -1.0}.get(prev, 0.0)
    bias[_WORD] = {_START: 1.5, _NUM: 0.6, _PUNCT_C: -1.0}.get(prev, 0.0)
    return tuple(bias)


@lru_cache(maxsize=1024)
def _knowledge(answer: int, qnums: frozenset[int], weight: float) -> tuple[float, ...]:
    """What a model knows about the question: the right answer and the question's numbers."""
    out = []
    for token, cls in zip(_BLOCK, _BLOCK_CLASSES, strict=True):
        value = _number_value(token)
        if cls == _BOX:
            out.append(weight * (3.0 if value == answer else -1.5))
        elif cls == _NUM:
            out.append(
                weight * ((1.2 if value in qnums else 0.0) + (0.8 if value == answer else 0.0))
            )
        else:
            out.append(0.0)
    return tuple(out)


@lru_cache(maxsize=1 << 15)
def _distribution(
    salt: str, mismatch: float, qkey: int, answer: int, qnums: frozenset[int], state: _State
) -> tuple[tuple[float, ...], float]:
    """Log-probabilities of the block tokens and of each byte token at ``state``."""
    prev = _class_of(state.recent[-1]) if state.recent else _OTHER
    bias = _class_biases(min(state.steps, 6), min(state.pos, 30), state.boxed, prev)
    know = _knowledge(answer, qnums, 1.0 / (1.0 + mismatch))
    shared = _noise("shared", qkey, state.recent)
    logits = [0.8 * n + bias[c] + k for n, c, k in zip(shared, _BLOCK_CLASSES, know, strict=True)]
    if mismatch:
        own = _noise(salt, qkey, state.recent)
        logits = [x + _NOISE_SCALE * mismatch * n for x, n in zip(logits, own, strict=True)]
    top = max(logits)
    total = sum(math.exp(x - top) for x in logits) + 256 * math.exp(_BYTE_LOGIT - top)
    log_z = top + math.log(total)
    return tuple(x - log_z for x in logits), _BYTE_LOGIT - log_z


_BLOCK_INDEX = {token: i for i, token in enumerate(_BLOCK)}


class _PrefixCache:
    """Remembers recent contexts and reports how many leading tokens were already evaluated."""

    def __init__(self, size: int = 32) -> None:
        self._entries: list[tuple[int, ...]] = []
        self._size = size

    def take(self, tokens: tuple[int, ...]) -> int:
        best = 0
        for entry in self._entries:
            n = 0
            for a, b in zip(entry, tokens, strict=False):
                if a != b:
                    break
                n += 1
            best = max(best, n)
        if tokens in self._entries:
            self._entries.remove(tokens)
        self._entries.append(tokens)
        del self._entries[: -self._size]
        return best

    def clear(self) -> None:
        self._entries.clear()


class ToyLanguageModel:
    """A deterministic toy :class:`~specs_core.protocols.LanguageModel` (see the module doc).

    Args:
        variant: hash salt of the model's own noise; ``"target"`` and ``"draft"`` are the pair
            the tests use, any other string gives another model.
        mismatch: scale of the variant's own noise and weakening of its answer knowledge;
            default 0 for ``"target"`` and 1 for every other variant.
        ms_per_token: simulated milliseconds per generated token (default 0).
        ms_per_prompt_token: simulated milliseconds per evaluated prompt or scored token
            (default a quarter of ``ms_per_token``); cached prompt tokens cost nothing.
        name: the accounting name (default ``"toy-<variant>"``).
        n_ctx: the context window in tokens.
        speculative: n-gram drafting options (default: off).

    Example:
        >>> from specs_core.types import Prompt, SamplingParams
        >>> model = ToyLanguageModel("target")
        >>> [[c]] = model.generate([Prompt("What is 2 + 3?")], SamplingParams(temperature=0))
        >>> c.finish_reason.value
        'eos'
    """

    def __init__(
        self,
        variant: str = "target",
        *,
        mismatch: float | None = None,
        ms_per_token: float = 0.0,
        ms_per_prompt_token: float | None = None,
        name: str | None = None,
        n_ctx: int = 4096,
        speculative: SpeculativeOptions | None = None,
    ) -> None:
        if not variant:
            raise InvalidInputError("variant must be a non-empty string such as 'target'")
        if mismatch is None:
            mismatch = 0.0 if variant == "target" else 1.0
        if mismatch < 0 or ms_per_token < 0 or (ms_per_prompt_token or 0) < 0:
            raise InvalidInputError("mismatch and the latency knobs must be >= 0")
        if n_ctx < 16:
            raise InvalidInputError(f"n_ctx must be at least 16, got {n_ctx}")
        self.variant = variant
        self.mismatch = float(mismatch)
        self.ms_per_token = float(ms_per_token)
        self.ms_per_prompt_token = (
            self.ms_per_token / 4 if ms_per_prompt_token is None else float(ms_per_prompt_token)
        )
        self.n_ctx = n_ctx
        self.tokenizer = ToyTokenizer()
        self._name = name or f"toy-{variant}"
        self._lock = threading.Lock()
        self._cache = _PrefixCache()
        self._ngrams = NgramTables(speculative) if speculative is not None else None

    @property
    def name(self) -> str:
        """The accounting name."""
        return self._name

    @property
    def tokenizer_id(self) -> str:
        """The vocabulary's fingerprint: the same for every variant."""
        return f"toy-{_hash_int('vocabulary', _WORD_STRINGS, _VOCAB_SIZE):016x}"

    @property
    def capabilities(self) -> Capabilities:
        """Everything is supported, including a prefix cache."""
        return Capabilities(
            batched_generation=True,
            prefix_cache=True,
            generation_logprobs=True,
            scoring=True,
            seeded=True,
            concurrent=True,
        )

    # -- rendering and distribution ----------------------------------------------------------

    def render(self, prompt: Prompt) -> tuple[int, ...]:
        """The token context of ``prompt``: markers, system, question, then the open partial."""
        if not isinstance(prompt, Prompt):
            raise InvalidInputError(f"expected a Prompt, got {type(prompt).__name__}")
        encode = self.tokenizer.encode
        tokens: list[int] = []
        if prompt.system is not None:
            tokens += [_SYSTEM_ID, *encode(prompt.system)]
        tokens += [_USER_ID, *encode(prompt.question), _ASSISTANT_ID, *encode(prompt.partial)]
        return tuple(tokens)

    def _start(self, prompt: Prompt, context: tuple[int, ...]) -> _State:
        state = _State(0, 0, False, ())
        partial = len(self.tokenizer.encode(prompt.partial)) if prompt.partial else 0
        for token in context[len(context) - partial :]:
            state = state.advance(token)
        return _State(state.steps, state.pos, state.boxed, context[-3:])

    def _question_info(self, question: str) -> tuple[int, int, frozenset[int]]:
        qnums = frozenset(int(n) for n in re.findall(r"\d+", question) if int(n) < ANSWER_RANGE)
        return _hash_int("question", question), toy_answer(question), qnums

    def _dist(
        self, q: tuple[int, int, frozenset[int]], state: _State
    ) -> tuple[tuple[float, ...], float]:
        return _distribution(self.variant, self.mismatch, q[0], q[1], q[2], state)

    def next_token_logprobs(self, prompt: Prompt, continuation: str = "") -> dict[int, float]:
        """The full next-token distribution after ``prompt`` and ``continuation``.

        Returns:
            A log-probability for every output token id (EOS, words, bytes); they sum to 1 in
            probability.
        """
        context = self.render(prompt)
        state = self._start(prompt, context)
        q = self._question_info(prompt.question)
        for token in self.tokenizer.encode(continuation):
            state = state.advance(token)
        block, byte_lp = self._dist(q, state)
        out = dict(zip(_BLOCK, block, strict=False))
        out.update({t: byte_lp for t in range(_FIRST_BYTE, _VOCAB_SIZE)})
        return out

    def _logprob(self, dist: tuple[tuple[float, ...], float], token: int) -> float:
        index = _BLOCK_INDEX.get(token)
        if index is not None:
            return dist[0][index]
        return dist[1]  # a byte token: the tokenizer never produces markers

    # -- generation ---------------------------------------------------------------------------

    @staticmethod
    def _choose(block: tuple[float, ...], params: SamplingParams, rng: random.Random) -> int:
        if params.temperature == 0:
            return _BLOCK[max(range(len(block)), key=lambda i: (block[i], -i))]
        scaled = [lp / params.temperature for lp in block]
        top = max(scaled)
        weights = [math.exp(x - top) for x in scaled]
        order: Sequence[int] = range(len(block))
        if params.top_p < 1.0:
            ranked = sorted(order, key=lambda i: (-weights[i], i))
            total = sum(weights)
            kept, mass = [], 0.0
            for i in ranked:
                kept.append(i)
                mass += weights[i] / total
                if mass >= params.top_p:
                    break
            order = kept
        total = sum(weights[i] for i in order)
        threshold = rng.random() * total
        acc = 0.0
        for i in order:
            acc += weights[i]
            if acc > threshold:
                return _BLOCK[i]
        return _BLOCK[order[-1]]

    def _sample(
        self,
        prompt: Prompt,
        context: tuple[int, ...],
        params: SamplingParams,
        rng: random.Random,
        session: NgramSession | None = None,
        index: int = 0,
        proposal: Sequence[int] | None = None,
    ) -> tuple[Completion, int]:
        """One sample; with a drafter or a ``proposal``, verified with the acceptance rule.

        Returns:
            The completion and how many tokens of ``proposal`` were accepted.
        """
        q = self._question_info(prompt.question)
        state = self._start(prompt, context)
        tokens: list[int] = []
        logprobs: list[float] = []
        text = ""
        finish: FinishReason | None = None
        longest_stop = max((len(s) for s in params.stop), default=0)
        room = min(params.max_tokens, self.n_ctx - len(context))
        if room <= 0:
            finish = FinishReason.LENGTH

        def draw(_: int) -> int:
            return self._choose(self._dist(q, state)[0], params, rng)

        def emit(token: int) -> bool:
            nonlocal state, text, finish
            if token == EOS_ID:
                finish = FinishReason.EOS
                return False
            tokens.append(token)
            logprobs.append(self._logprob(self._dist(q, state), token))
            if session is not None:
                session.extend(index, (token,))
            before = len(text)
            text += self.tokenizer.piece(token)
            if params.stop:
                start = max(0, before - longest_stop + 1)
                ends = [
                    found + len(stop)
                    for stop in params.stop
                    if (found := text.find(stop, start)) >= 0
                ]
                if ends:
                    text = text[: min(ends)]
                    finish = FinishReason.STOP
                    return False
            state = state.advance(token)
            if len(tokens) >= room:
                finish = FinishReason.LENGTH
                return False
            return True

        accepted = proposed = rounds = taken = 0
        if proposal is not None and finish is None:
            taken = accept_by_sampling(proposal, draw, emit)
        while finish is None:
            draft = session.propose(index, room - len(tokens) - 1) if session is not None else []
            got = accept_by_sampling(draft, draw, emit)
            if draft and session is not None:
                proposed, accepted, rounds = proposed + len(draft), accepted + got, rounds + 1
                session.record(index, len(draft), got)
        completion = Completion(
            text,
            tuple(tokens),
            tuple(logprobs),
            finish,
            draft_tokens_proposed=proposed,
            draft_tokens_accepted=accepted,
            draft_rounds=rounds,
        )
        return completion, taken

    def _rng(self, params: SamplingParams, context: tuple[int, ...], index: int) -> random.Random:
        if params.seed is None:
            return random.Random(secrets.randbits(64))
        return random.Random(_hash_int("sample", self.variant, params.seed, index, context))

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Continue each prompt ``params.n`` times (see :class:`~specs_core.protocols.Generator`).

        The ``n`` samples of a prompt use generators derived from the seed, the sample index and
        the rendered prompt, so a prompt gets the same samples alone or in a batch.

        Raises:
            ContextOverflowError: a prompt does not fit in ``n_ctx``.
        """
        contexts = [self.render(p) for p in prompts]
        for context in contexts:
            if len(context) >= self.n_ctx:
                raise ContextOverflowError(
                    f"prompt of {len(context)} tokens does not fit the toy context of "
                    f"{self.n_ctx}; shorten it or raise n_ctx"
                )
        with self._lock:
            results: list[list[Completion]] = []
            evaluated = generated = 0
            for prompt, context in zip(prompts, contexts, strict=False):
                cached = self._cache.take(context)
                evaluated += len(context) - cached
                group, _ = self._samples(prompt, context, params, cached)
                generated += sum(len(c.token_ids) for c in group)
                results.append(group)
            self._sleep(evaluated * self.ms_per_prompt_token + generated * self.ms_per_token)
        return results

    def _samples(
        self,
        prompt: Prompt,
        context: tuple[int, ...],
        params: SamplingParams,
        cached: int,
        proposals: Sequence[Sequence[int]] | None = None,
    ) -> tuple[list[Completion], list[int]]:
        """The ``n`` samples of one prompt (and the proposal tokens each accepted)."""
        session = (
            self._ngrams.session(prompt.question, context, params.n)
            if self._ngrams is not None
            else None
        )
        group: list[Completion] = []
        taken: list[int] = []
        for index in range(params.n):
            c, got = self._sample(
                prompt,
                context,
                params,
                self._rng(params, context, index),
                session,
                index,
                None if proposals is None else proposals[index],
            )
            group.append(replace(c, prompt_tokens=len(context), cached_tokens=cached))
            taken.append(got)
        return group, taken

    def verify_proposals(
        self,
        prompt: Prompt,
        proposals: Sequence[Sequence[int]],
        params: SamplingParams,
        continue_if: ContinueIf,
    ) -> Verification:
        """Score proposals and, when ``continue_if`` agrees, continue sample ``k`` from
        proposal ``k`` (see :class:`~specs_core.protocols.ProposalVerifier`).

        The continuations equal ``generate([prompt], params)[0]`` for a seeded ``params``.
        """
        if len(proposals) != params.n:
            raise InvalidInputError(
                f"got {len(proposals)} proposals for n={params.n} samples; pass one per sample"
            )
        began = time.perf_counter()
        context = self.render(prompt)
        q = self._question_info(prompt.question)
        with self._lock:
            cached = self._cache.take(context)
            scores = []
            for proposal in proposals:
                state = self._start(prompt, context)
                values = []
                for token in proposal:
                    values.append(self._logprob(self._dist(q, state), token))
                    state = state.advance(token)
                scores.append(TokenLogprobs(tuple(proposal), tuple(values), len(context), cached))
                if self._ngrams is not None:
                    self._ngrams.index_text(prompt.question, context, proposal)
            # the continuations evaluate no prompt token: the verification did
            group, taken = self._samples(prompt, context, params, len(context), proposals)
            scored = time.perf_counter()
            if not continue_if(scores):
                return Verification(scores, taken, None, (began, scored))
            finished = time.perf_counter()
            return Verification(scores, taken, group, (began, scored), (scored, finished))

    # -- scoring ------------------------------------------------------------------------------

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        """Log-probability of each continuation token (see :meth:`Scorer.logprobs`)."""
        check_pairs(prompts, continuations)
        contexts = [self.render(p) for p in prompts]
        with self._lock:
            out: list[TokenLogprobs] = []
            evaluated = 0
            for prompt, context, text in zip(prompts, contexts, continuations, strict=False):
                cached = self._cache.take(context)
                q = self._question_info(prompt.question)
                state = self._start(prompt, context)
                ids = self.tokenizer.encode(text)
                values = []
                for token in ids:
                    values.append(self._logprob(self._dist(q, state), token))
                    state = state.advance(token)
                if self._ngrams is not None:  # scored text feeds the n-gram drafter
                    self._ngrams.index_text(prompt.question, context, ids)
                evaluated += len(context) - cached + len(ids)
                out.append(TokenLogprobs(tuple(ids), tuple(values), len(context), cached))
            self._sleep(evaluated * self.ms_per_prompt_token)
        return out

    @staticmethod
    def _sleep(ms: float) -> None:
        if ms > 0:
            time.sleep(ms / 1000.0)

    def close(self) -> None:
        """Forget the prefix cache. The model stays usable; calling it twice is harmless."""
        with self._lock:
            self._cache.clear()
            if self._ngrams is not None:
                self._ngrams.clear()

    def __repr__(self) -> str:
        return f"ToyLanguageModel(variant={self.variant!r}, mismatch={self.mismatch})"

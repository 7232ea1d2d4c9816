"""Speculative generation on a :class:`LlamaRuntime`: n-gram drafting and verifying proposals.

The loop generalises the batched sampling of :mod:`specs_llamacpp.generation`. In each pass
every live sample feeds its pending token (the last one it emitted) followed by the tokens
proposed for it; one ``llama_decode`` batch (split only when it holds more logit rows than the
runtime allows) returns logits at every fed position. Each sample then runs
:func:`~specs_core.backend_kit.ngram.accept_by_sampling` along its rows with its own seeded
generator, so it draws exactly the tokens plain decoding draws, and the cells of rejected proposal
tokens are removed from its sequence (``llama_memory_seq_rm``).

:func:`verify_proposals` makes the first pass verify proposals given by the caller (the tokens of
another model's candidates, all in one batch), records the model's untempered log-probability of
every proposal token, asks the caller whether to go on, and then continues each sample from the
cells the verification already filled.

This module imports ``numpy`` and the engine through :mod:`specs_llamacpp.runtime`; import it
lazily.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from specs_core.backend_kit.ngram import NgramSession
from specs_core.protocols import ContinueIf, Verification
from specs_core.types import Completion, FinishReason, SamplingParams, TokenLogprobs

from specs_llamacpp.generation import _Sample, evaluate_prompt
from specs_llamacpp.runtime import LlamaRuntime
from specs_llamacpp.sampling import sample_token, sequence_rngs, token_logprob

__all__ = ["generate_speculative", "group_size", "verify_proposals"]

Row = npt.NDArray[np.float32]


@dataclass
class _Lane:
    """One sample of a speculative group and its verification bookkeeping."""

    sample: _Sample
    index: int  # sample index within the call (the drafter's key)
    held: int = 0  # generated tokens whose cells the sequence holds
    start: Row | None = None  # logits predicting the first token (before the first pass)
    proposed: int = 0
    accepted: int = 0
    rounds: int = 0
    # one pass
    proposal: list[int] = field(default_factory=list)
    feed: int = 0  # tokens fed this pass
    rows_seen: int = 0
    sampling: bool = True
    pass_accepted: int = 0
    scores: list[float] | None = None


def group_size(prompt_tokens: int, params: SamplingParams, rt: LlamaRuntime) -> int:
    """Samples decoded together: bounded by ``n``, the free cells, and ``n_seq_max`` less the
    sequence that keeps rejected cells (see :meth:`LlamaRuntime.park`)."""
    lanes = rt.n_seq_max - 1 if rt.n_seq_max > 1 else 1
    return max(1, min(params.n, lanes, (rt.n_ctx - prompt_tokens) // params.max_tokens))


@dataclass
class _Group:
    """Samples decoded together, and the cells parked out of their way."""

    rt: LlamaRuntime
    size: int  # prompt tokens
    params: SamplingParams
    session: NgramSession | None
    lanes: list[_Lane]
    parked: int = 0

    @property
    def keeper(self) -> int | None:
        """The sequence that keeps rejected cells (``None``: one lane, whose rejected cells are
        always the last ones allocated and may simply be freed)."""
        return self.rt.n_seq_max - 1 if len(self.lanes) > 1 else None

    def make_room(self, needed: int) -> None:
        """Free the parked cells when the next pass would not fit beside them."""
        rt = self.rt
        live = sum(lane.held for lane in self.lanes)
        if self.parked and self.size + live + self.parked + needed > rt.n_ctx:
            keeper = self.keeper
            if keeper is not None:
                rt.remove_from(keeper, 0)
            self.parked = 0

    def release(self, lane: _Lane, pos: int) -> None:
        """Drop the lane's cells from position ``pos`` on (parked when other lanes exist)."""
        keeper = self.keeper
        if keeper is None:
            self.rt.remove_from(lane.sample.seq, self.size + pos)
        else:
            self.parked += self.rt.park(lane.sample.seq, self.size + pos, keeper)


def _pass(group: _Group, live: list[_Lane], given: Sequence[Sequence[int]] | None = None) -> None:
    """One verification pass over the live lanes (see the module docstring)."""
    rt, params, session = group.rt, group.params, group.session
    entries: list[tuple[int, int, int]] = []
    owner: list[_Lane] = []
    plans: list[tuple[_Lane, list[int]]] = []
    drafting = session is not None and session.drafting(len(live))
    for k, lane in enumerate(live):
        s = lane.sample
        room = params.max_tokens - len(s.tokens) - 1
        if given is not None:
            lane.proposal = list(given[k])
            lane.scores = []
        elif session is not None and drafting and room > 0:
            lane.proposal = session.propose(lane.index, room)
        else:
            lane.proposal = []
        feed = ([] if lane.start is not None else [s.tokens[-1]]) + lane.proposal
        lane.feed, lane.rows_seen, lane.sampling, lane.pass_accepted = len(feed), 0, True, 0
        plans.append((lane, feed))
    group.make_room(sum(len(feed) for _, feed in plans))
    for lane, feed in plans:
        base = group.size + lane.held
        for j, token in enumerate(feed):
            entries.append((token, base + j, lane.sample.seq))
            owner.append(lane)
        if lane.start is not None:  # the first row was computed with the prompt
            _row(rt, lane, lane.start, params, session)
            lane.start = None

    rt.decode_rows(entries, lambda i, row: _row(rt, owner[i], row, params, session))
    for lane in live:
        fed_pending = lane.feed - len(lane.proposal)
        valid = lane.held + fed_pending + lane.pass_accepted
        lane.held += lane.feed
        if lane.held > valid:
            group.release(lane, valid)
        lane.held = valid
        if lane.proposal and given is None:
            lane.proposed += len(lane.proposal)
            lane.accepted += lane.pass_accepted
            lane.rounds += 1
            if session is not None:
                session.record(lane.index, len(lane.proposal), lane.pass_accepted)


def _row(
    rt: LlamaRuntime,
    lane: _Lane,
    row: Row,
    params: SamplingParams,
    session: NgramSession | None,
) -> None:
    """Handle the next row of a lane: score the proposal token, then sample and compare."""
    i = lane.rows_seen
    lane.rows_seen += 1
    proposal = lane.proposal
    if lane.scores is not None and i < len(proposal):
        lane.scores.append(token_logprob(row, proposal[i]))
    if not lane.sampling:
        return
    s = lane.sample
    token, logprob = sample_token(
        row, temperature=params.temperature, top_p=params.top_p, rng=s.rng
    )
    before = len(s.tokens)
    s.push(rt, token, logprob, params)
    if session is not None and len(s.tokens) > before:
        session.extend(lane.index, s.tokens[before:])
    matched = i < len(proposal) and token == proposal[i]
    lane.pass_accepted += matched
    if s.finish is not None or not matched:
        lane.sampling = False


def _completions(lanes: list[_Lane], size: int, reused: int) -> list[Completion]:
    return [
        Completion(
            text=lane.sample.text,
            token_ids=tuple(lane.sample.tokens),
            logprobs=tuple(lane.sample.logprobs),
            finish_reason=lane.sample.finish or FinishReason.LENGTH,
            prompt_tokens=size,
            cached_tokens=reused,
            draft_tokens_proposed=lane.proposed,
            draft_tokens_accepted=lane.accepted,
            draft_rounds=lane.rounds,
        )
        for lane in lanes
    ]


def _run(group: _Group) -> None:
    live = [lane for lane in group.lanes if lane.sample.finish is None]
    while live:
        _pass(group, live)
        live = [lane for lane in live if lane.sample.finish is None]


def generate_speculative(
    rt: LlamaRuntime,
    prompt: Sequence[int],
    params: SamplingParams,
    seed: int,
    prompt_index: int,
    session: NgramSession,
) -> list[Completion]:
    """Generate ``params.n`` samples of one prompt with n-gram drafting.

    The samples equal those of :func:`~specs_llamacpp.generation.generate_samples` for the same
    seed wherever the engine computes the same logits for a token whether it is decoded alone
    or among proposal tokens.
    """
    size = len(prompt)
    logits0, reused = evaluate_prompt(rt, prompt)
    group = group_size(size, params, rt)
    rngs = sequence_rngs(seed, prompt_index, params.n)
    completions: list[Completion] = []
    for start in range(0, params.n, group):
        count = min(group, params.n - start)
        if start:
            rt.trim(size)
        rt.fork(count)
        lanes = [
            _Lane(_Sample(seq=j, rng=rngs[start + j]), index=start + j, start=logits0)
            for j in range(count)
        ]
        _run(_Group(rt, size, params, session, lanes))
        completions.extend(_completions(lanes, size, reused))
    rt.fork(1)
    return completions


def verify_proposals(
    rt: LlamaRuntime,
    prompt: Sequence[int],
    proposals: Sequence[Sequence[int]],
    params: SamplingParams,
    seed: int,
    continue_if: ContinueIf,
    session: NgramSession | None,
) -> Verification:
    """Verify ``proposals`` in one batch and, if ``continue_if`` agrees, continue each of them.

    The caller checks that the ``n`` samples fit in one group (:func:`group_size`) and that no
    proposal is longer than ``params.max_tokens``.
    """
    began = time.perf_counter()
    size = len(prompt)
    logits0, reused = evaluate_prompt(rt, prompt)
    rngs = sequence_rngs(seed, 0, params.n)
    rt.fork(params.n)
    lanes = [_Lane(_Sample(seq=j, rng=rngs[j]), index=j, start=logits0) for j in range(params.n)]
    group = _Group(rt, size, params, session, lanes)
    _pass(group, lanes, given=proposals)
    scores = [
        TokenLogprobs(
            token_ids=tuple(p),
            logprobs=tuple(lane.scores or ()),
            prompt_tokens=size,
            cached_tokens=reused,
        )
        for p, lane in zip(proposals, lanes, strict=True)
    ]
    accepted = [lane.pass_accepted for lane in lanes]
    scored = time.perf_counter()
    if not continue_if(scores):
        rt.fork(1)
        return Verification(scores, accepted, None, (began, scored))
    for lane in lanes:
        lane.scores = None
    _run(group)
    rt.fork(1)
    # the continuations evaluated no prompt token: the verification pass did
    return Verification(
        scores,
        accepted,
        _completions(lanes, size, size),
        (began, scored),
        (scored, time.perf_counter()),
    )

"""Token-level speculative decoding shared by the backends: the n-gram drafter and the rule.

Two engine-independent pieces live here (pure Python, no engine and no numpy):

- :class:`NgramTables` / :class:`NgramSession`: an n-gram drafter. It proposes the tokens that
  followed the most recent earlier occurrence of a sequence's last ``min_match..max_match``
  tokens. The table is built from the prompt, from every token generated so far and from texts
  the model scored; with ``shared: true`` one table serves all ``n`` samples of a call and every
  call about the same question (a search's steps, a second "think again" round), so a sample can
  copy what another sample or an earlier step wrote.
- :func:`accept_by_sampling`: the lossless acceptance rule. At each position of a proposal the
  model draws its next token exactly as plain decoding would (greedy: the argmax; sampling: from
  the tempered, nucleus-truncated distribution with the sample's own random stream); the
  proposal token is accepted when the draw equals it, and the first differing draw is emitted
  instead. For a fixed proposal token ``x`` this accepts with probability ``p(x)`` and, on
  rejection, emits a draw from ``p`` with ``x`` removed and renormalised: the rule
  ``min(1, p(x)/q(x))`` for a point-mass proposal ``q = 1{x}``, with its residual. Whatever
  produced the proposal, the emitted tokens follow ``p`` (see ``docs/speculative.md``); with the
  same seed they are even the very tokens plain decoding draws.

The contract of a model that verifies another model's proposals (the SPECS hybrid step) is
:class:`specs_core.protocols.ProposalVerifier`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from specs_core.errors import InvalidInputError

__all__ = [
    "NgramSession",
    "NgramTable",
    "NgramTables",
    "SpeculativeOptions",
    "accept_by_sampling",
]


_PROBE_EVERY = 8  # passes between one-token probes of a sample drafting below min_rate
_RATE_DECAY = 0.7  # weight of the past in a sample's moving acceptance rate


class SpeculativeOptions(BaseModel):
    """Token-level speculative decoding of one model (the ``speculative:`` key of a role).

    Example (YAML)::

        target:
          backend: llamacpp
          model: qwen2.5-coder-1.5b
          speculative: {method: ngram, max_draft: 4, min_match: 2, max_match: 4, shared: true}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["ngram"] = Field("ngram", description="the drafter: n-gram lookup")
    max_draft: int = Field(4, ge=1, le=64, description="most tokens proposed per pass")
    min_match: int = Field(2, ge=1, le=16, description="shortest n-gram that may propose")
    max_match: int = Field(4, ge=1, le=16, description="longest n-gram looked up first")
    shared: bool = Field(
        True,
        description="one table per question shared by all samples and calls (false: a table per "
        "sample built from the prompt and its own tokens)",
    )
    max_table_tokens: int = Field(
        65536, ge=256, description="a shared table holding more tokens is cleared at a call start"
    )
    max_tables: int = Field(8, ge=1, description="questions whose shared tables are kept (LRU)")
    max_batch: int | None = Field(
        None,
        ge=1,
        description="draft only in passes that decode at most this many sequences together "
        "(null: always); on a compute-bound CPU verifying a proposal costs about what decoding "
        "its tokens does, so drafting pays only for small batches",
    )
    min_rate: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="draft a sample only while the share of its proposed tokens that were "
        "accepted (moving average) is at least this; below it one token is probed every "
        f"{_PROBE_EVERY} passes",
    )
    adaptive: bool = Field(
        True,
        description="per sample, lengthen the proposal by 2 after a fully accepted one and "
        "shorten it by 1 after a rejection (between 1 and max_draft)",
    )

    @model_validator(mode="after")
    def _match_range(self) -> SpeculativeOptions:
        if self.min_match > self.max_match:
            raise ValueError(
                f"min_match ({self.min_match}) must not exceed max_match ({self.max_match})"
            )
        return self


class NgramTable:
    """Token documents and an index from each n-gram to the position after its latest occurrence.

    Args:
        min_match: shortest n-gram indexed.
        max_match: longest n-gram indexed.
    """

    def __init__(self, min_match: int, max_match: int) -> None:
        if not 1 <= min_match <= max_match:
            raise InvalidInputError(
                f"need 1 <= min_match <= max_match, got {min_match} and {max_match}"
            )
        self.min_match = min_match
        self.max_match = max_match
        self._docs: list[list[int]] = []
        self._index: dict[tuple[int, ...], tuple[int, int]] = {}
        self.tokens = 0

    def add_document(self, tokens: Sequence[int] = ()) -> int:
        """Start a new document (holding ``tokens``); returns its id."""
        self._docs.append([])
        doc = len(self._docs) - 1
        self.append(doc, tokens)
        return doc

    def document(self, doc: int) -> list[int]:
        """The tokens of a document (do not modify)."""
        return self._docs[doc]

    def append(self, doc: int, tokens: Sequence[int]) -> None:
        """Append tokens to a document and index the n-grams that now have a successor."""
        data = self._docs[doc]
        index = self._index
        lo, hi = self.min_match, self.max_match
        for token in tokens:
            pos = len(data)
            for n in range(lo, min(hi, pos) + 1):
                index[tuple(data[pos - n : pos])] = (doc, pos)
            data.append(token)
        self.tokens += len(tokens)

    def lookup(self, context: Sequence[int], limit: int) -> list[int]:
        """Up to ``limit`` tokens that followed the longest indexed suffix of ``context``."""
        if limit <= 0:
            return []
        for n in range(min(self.max_match, len(context)), self.min_match - 1, -1):
            hit = self._index.get(tuple(context[len(context) - n :]))
            if hit is not None:
                doc, pos = hit
                return self._docs[doc][pos : pos + limit]
        return []


class NgramSession:
    """The drafter of one generation call: ``samples`` sequences continuing one prompt.

    Use :meth:`propose` before each verification pass, :meth:`extend` with every token a
    sequence emits, and :meth:`record` with the outcome of each verified proposal. Not
    thread-safe: backends hold their model lock around a call.
    """

    def __init__(
        self,
        options: SpeculativeOptions,
        prompt: Sequence[int],
        samples: int,
        shared: NgramTable | None,
    ) -> None:
        self.options = options
        tail = list(prompt[-options.max_match :])
        self._contexts = [list(tail) for _ in range(samples)]
        if shared is not None:
            self._tables = [shared] * samples
        else:  # one private table per sample: the prompt and the sample's own tokens
            self._tables = []
            for _ in range(samples):
                table = NgramTable(options.min_match, options.max_match)
                table.add_document(prompt)
                self._tables.append(table)
        self._docs = [table.add_document(tail) for table in self._tables]
        self._lengths = [options.max_draft] * samples
        self._rates = [1.0] * samples
        self._skipped = [0] * samples

    def drafting(self, live: int) -> bool:
        """Whether a pass decoding ``live`` sequences together should carry proposals."""
        return self.options.max_batch is None or live <= self.options.max_batch

    def propose(self, sample: int, limit: int | None = None) -> list[int]:
        """The tokens proposed to continue ``sample`` (at most its current proposal length, which
        is ``max_draft`` unless ``adaptive``, and ``limit``)."""
        cap = self._lengths[sample] if limit is None else min(limit, self._lengths[sample])
        if self._rates[sample] < self.options.min_rate:
            self._skipped[sample] += 1
            if self._skipped[sample] % _PROBE_EVERY:
                return []
            cap = min(cap, 1)
        return self._tables[sample].lookup(self._contexts[sample], cap)

    def record(self, sample: int, proposed: int, accepted: int) -> None:
        """Adapt the proposal length of ``sample`` to how much of its last proposal was accepted."""
        if not proposed:
            return
        rate = self._rates[sample]
        self._rates[sample] = _RATE_DECAY * rate + (1 - _RATE_DECAY) * accepted / proposed
        if not self.options.adaptive:
            return
        if accepted >= proposed:
            self._lengths[sample] = min(self.options.max_draft, self._lengths[sample] + 2)
        else:
            self._lengths[sample] = max(1, self._lengths[sample] - 1)

    def extend(self, sample: int, tokens: Sequence[int]) -> None:
        """Record tokens that ``sample`` emitted (end-of-sequence tokens excluded)."""
        if not tokens:
            return
        self._tables[sample].append(self._docs[sample], tokens)
        context = self._contexts[sample]
        context.extend(tokens)
        del context[: -self.options.max_match]


class NgramTables:
    """The n-gram tables of one model, one per question (least recently used dropped first).

    A shared table is cleared when a call starts and it holds more than ``max_table_tokens``
    tokens, so memory stays bounded however long a search runs.

    Args:
        options: the drafter's options.
    """

    def __init__(self, options: SpeculativeOptions) -> None:
        self.options = options
        self._tables: OrderedDict[str, tuple[NgramTable, int]] = OrderedDict()

    def _table(self, question: str) -> tuple[NgramTable, int]:
        entry = self._tables.get(question)
        if entry is None or entry[0].tokens > self.options.max_table_tokens:
            table = NgramTable(self.options.min_match, self.options.max_match)
            entry = (table, table.add_document())
            self._tables[question] = entry
        self._tables.move_to_end(question)
        while len(self._tables) > self.options.max_tables:
            self._tables.popitem(last=False)
        return entry

    def _index_prompt(self, question: str, prompt: Sequence[int]) -> NgramTable:
        """The question's shared table with ``prompt`` indexed (only what was not yet)."""
        table, doc = self._table(question)
        held = table.document(doc)
        if list(prompt[: len(held)]) == held:
            table.append(doc, prompt[len(held) :])
        else:  # another rendering of the question: index the prompt as its own document
            doc = table.add_document(prompt)
            self._tables[question] = (table, doc)
        return table

    def session(self, question: str, prompt: Sequence[int], samples: int) -> NgramSession:
        """A drafter for ``samples`` continuations of ``prompt`` (the tokens of the rendered
        prompt of ``question``)."""
        if not self.options.shared:
            return NgramSession(self.options, prompt, samples, None)
        return NgramSession(self.options, prompt, samples, self._index_prompt(question, prompt))

    def index_text(self, question: str, prompt: Sequence[int], tokens: Sequence[int]) -> None:
        """Index a continuation the model scored (shared tables only), e.g. a draft's step."""
        if not self.options.shared or not tokens:
            return
        table = self._index_prompt(question, prompt)
        table.add_document([*prompt[-self.options.max_match :], *tokens])

    def clear(self) -> None:
        """Forget every table."""
        self._tables.clear()


def accept_by_sampling(
    proposal: Sequence[int],
    draw: Callable[[int], int],
    emit: Callable[[int], bool],
) -> int:
    """Verify a proposal with the lossless sample-and-compare rule.

    For ``i = 0, 1, ..., len(proposal)``: ``y = draw(i)`` is the model's own next token after the
    prefix followed by ``proposal[:i]`` (drawn exactly as plain decoding draws it);
    ``emit(y)`` appends it to the output and returns ``False`` once the output is finished (end
    of sequence, a stop string, the token limit). The loop goes on while ``y`` equals the
    proposal token; the first different draw (or the draw after the whole proposal) is the last
    token emitted.

    Args:
        proposal: the proposed tokens.
        draw: the model's draw at position ``i`` of the proposal.
        emit: appends a token to the output; ``False`` when the output is finished.

    Returns:
        How many proposal tokens were accepted (emitted as proposed).
    """
    accepted = 0
    for i in range(len(proposal) + 1):
        token = draw(i)
        matched = i < len(proposal) and token == proposal[i]
        alive = emit(token)
        accepted += matched
        if not (alive and matched):
            break
    return accepted

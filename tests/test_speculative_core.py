"""The engine-independent parts of speculative decoding: n-gram tables, the acceptance rule,
the options, the shared-tokenizer check, and the counters in accounting and serialisation."""

from __future__ import annotations

import pytest
from specs_core.accounting import Accountant
from specs_core.backend_kit.ngram import (
    NgramSession,
    NgramTable,
    NgramTables,
    SpeculativeOptions,
    accept_by_sampling,
)
from specs_core.config import validate_options
from specs_core.errors import ConfigError, InvalidInputError
from specs_core.protocols import check_shared_tokenizer
from specs_core.schema import ResultRecord
from specs_core.testing import ToyLanguageModel
from specs_core.types import Completion, FinishReason, SearchResult, StopReason


def test_table_proposes_what_followed_the_longest_matching_suffix() -> None:
    table = NgramTable(min_match=1, max_match=3)
    table.add_document([1, 2, 3, 4, 5, 9, 3, 7])
    assert table.lookup([2, 3], limit=3) == [4, 5, 9]  # the 2-gram (2, 3) beats the 1-gram (3,)
    assert table.lookup([8, 3], limit=2) == [7]  # (3,) alone: its latest occurrence wins
    assert table.lookup([6], limit=4) == []
    assert table.lookup([1, 2], limit=0) == []
    assert table.tokens == 8


def test_table_ignores_suffixes_shorter_than_min_match() -> None:
    table = NgramTable(min_match=2, max_match=4)
    table.add_document([5, 6, 7, 8])
    assert table.lookup([6], limit=2) == []
    assert table.lookup([5, 6], limit=2) == [7, 8]
    with pytest.raises(InvalidInputError, match="min_match"):
        NgramTable(min_match=3, max_match=2)


def test_table_grows_with_appended_tokens_and_other_documents() -> None:
    table = NgramTable(min_match=1, max_match=2)
    doc = table.add_document([1, 2])
    assert table.lookup([2], limit=2) == []  # nothing followed 2 yet
    table.append(doc, [3])
    assert table.lookup([2], limit=2) == [3]
    other = table.add_document([2, 8])
    assert table.lookup([2], limit=2) == [8]
    assert table.document(other) == [2, 8]


def test_shared_session_lets_a_sample_copy_another_samples_tokens() -> None:
    options = SpeculativeOptions(min_match=2, max_match=2, max_draft=3)
    prompt = [100, 101, 102]
    shared = NgramTables(options).session("q", prompt, samples=2)
    shared.extend(0, [1, 2, 3, 4])
    shared.extend(1, [1, 2])
    assert shared.propose(1) == [3, 4]
    private = NgramTables(options.model_copy(update={"shared": False})).session("q", prompt, 2)
    private.extend(0, [1, 2, 3, 4])
    private.extend(1, [1, 2])
    assert private.propose(1) == []  # a per-sequence table only knows the prompt and itself


def test_shared_tables_persist_across_calls_of_a_question_and_index_scored_text() -> None:
    tables = NgramTables(SpeculativeOptions(min_match=2, max_match=2))
    first = tables.session("q", [100, 101], samples=1)
    first.extend(0, [5, 6, 7, 8])
    again = tables.session("q", [100, 101, 9], samples=1)  # the next step extends the prompt
    again.extend(0, [5, 6])
    assert again.propose(0) == [7, 8]
    other = tables.session("another question", [100, 101], samples=1)
    other.extend(0, [5, 6])
    assert other.propose(0) == []
    tables.index_text("another question", [100, 101], [5, 6, 42])  # e.g. a scored draft
    late = tables.session("another question", [100, 101], 1)
    late.extend(0, [5, 6])
    assert late.propose(0) == [42]


def test_shared_tables_are_bounded() -> None:
    options = SpeculativeOptions(min_match=1, max_match=1, max_table_tokens=256, max_tables=2)
    tables = NgramTables(options)
    session = tables.session("q", list(range(300)), samples=1)
    assert session.propose(0) == []  # the prompt's last token never occurred before
    fresh = tables.session("q", [299, 5], samples=1)  # over the bound: cleared, then indexed
    fresh.extend(0, [299])
    assert fresh.propose(0) == [5]
    tables.session("a", [1], 1)
    tables.session("b", [1], 1)
    assert "q" not in tables._tables  # least recently used question dropped


def test_adaptive_length_and_rate_gate() -> None:
    options = SpeculativeOptions(min_match=1, max_match=1, max_draft=4, min_rate=0.5)
    session = NgramSession(options, [1, 2, 3, 4, 5, 6, 1], samples=1, shared=None)
    assert session.propose(0) == [2, 3, 4, 5]
    session.record(0, proposed=4, accepted=1)  # rejected: shorter, rate 0.7 + 0.3 * 0.25
    assert session.propose(0) == [2, 3, 4]
    session.record(0, proposed=3, accepted=0)
    session.record(0, proposed=2, accepted=0)  # rate now below 0.5
    gated = [session.propose(0) for _ in range(8)]
    assert gated[:7] == [[]] * 7 and gated[7] == [2]  # one token probed every 8 passes
    session.record(0, proposed=1, accepted=1)  # accepted again: rate back above 0.5
    session.record(0, proposed=3, accepted=3)
    assert session.propose(0) == [2, 3, 4, 5]


def test_max_batch_gate() -> None:
    session = NgramSession(SpeculativeOptions(max_batch=1), [1, 2], samples=2, shared=None)
    assert session.drafting(1) and not session.drafting(2)
    assert NgramSession(SpeculativeOptions(), [1], 1, None).drafting(64)


def _run(proposal: list[int], draws: list[int], stop_after: int | None = None) -> tuple[int, list]:
    emitted: list[int] = []

    def emit(token: int) -> bool:
        emitted.append(token)
        return stop_after is None or len(emitted) < stop_after

    return accept_by_sampling(proposal, lambda i: draws[i], emit), emitted


def test_acceptance_keeps_the_proposal_while_the_draws_agree() -> None:
    assert _run([5, 6, 7], [5, 6, 9, 4]) == (2, [5, 6, 9])  # first difference emitted instead
    assert _run([5, 6, 7], [5, 6, 7, 8]) == (3, [5, 6, 7, 8])  # all accepted, plus one more
    assert _run([5, 6, 7], [1, 6, 7, 8]) == (0, [1])
    assert _run([], [3]) == (0, [3])  # no proposal: plain decoding of one token
    assert _run([5, 6, 7], [5, 6, 7, 8], stop_after=2) == (2, [5, 6])  # the output ended


def test_options_validate_and_name_bad_keys() -> None:
    with pytest.raises(ConfigError, match="min_match"):
        validate_options({"min_match": 5, "max_match": 2}, SpeculativeOptions, "target.speculative")
    with pytest.raises(ConfigError, match=r"unknown key 'target\.speculative\.depth'"):
        validate_options({"depth": 3}, SpeculativeOptions, "target.speculative")
    with pytest.raises(ConfigError, match="method"):
        validate_options({"method": "eagle"}, SpeculativeOptions, "target.speculative")


class _OtherVocabulary(ToyLanguageModel):
    """A test double: a toy model claiming another tokenizer."""

    @property
    def tokenizer_id(self) -> str:
        return "another-vocabulary"


class _NoVerifier:
    """A test double: a model without proposal verification."""

    name = "plain"


def test_shared_tokenizer_check_names_the_fix() -> None:
    target = ToyLanguageModel("target")
    assert check_shared_tokenizer(ToyLanguageModel("draft"), target, why="x") is target
    with pytest.raises(ConfigError, match=r"share a tokenizer.*hybrid: false"):
        check_shared_tokenizer(_OtherVocabulary("draft"), target, why="hybrid")
    with pytest.raises(ConfigError, match="does not: use the llamacpp or toy backend"):
        check_shared_tokenizer(ToyLanguageModel("draft"), _NoVerifier(), why="hybrid")


def test_accounting_counts_draft_tokens_and_hybrid_steps() -> None:
    acct = Accountant()
    c = Completion(
        "ab",
        (1, 2, 3),
        (-0.1,) * 3,
        FinishReason.STOP,
        prompt_tokens=5,
        draft_tokens_proposed=6,
        draft_tokens_accepted=3,
        draft_rounds=2,
    )
    acct.add_generation("target", [[c, c]])
    acct.count_hybrid_step(proposed=40, accepted=25)
    acct.add_interval("target_generate", 1.0, 3.5)
    with pytest.raises(InvalidInputError, match="ends before it begins"):
        acct.add_interval("target_generate", 2.0, 1.0)
    usage = acct.finish()
    tokens = usage.tokens["target"]
    assert (tokens.draft_proposed, tokens.draft_accepted, tokens.draft_rounds) == (12, 6, 4)
    assert tokens.mean_accepted == 1.5
    assert (tokens.prompt, tokens.generated, tokens.cached, tokens.calls) == (5, 6, 0, 1)
    assert (usage.hybrid_steps, usage.hybrid_proposed, usage.hybrid_accepted) == (1, 40, 25)
    assert usage.latency_s["target_generate"] == pytest.approx(2.5)
    result = SearchResult("q", "specs", "", None, (), (), None, False, StopReason.MAX_STEPS, usage)
    data = ResultRecord.from_result(result).to_json()
    assert data["tokens"]["target"] == {
        "prompt": 5,
        "generated": 6,
        "cached": 0,
        "calls": 1,
        "draft_proposed": 12,
        "draft_accepted": 6,
        "draft_rounds": 4,
    }
    assert data["hybrid"] == {"steps": 1, "proposed": 40, "accepted": 25}

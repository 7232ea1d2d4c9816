"""N-gram speculative decoding in the transformers backend, on tiny random models (no download)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("transformers", reason="the transformers extra is not installed")

from specs_core.backend_kit.ngram import SpeculativeOptions
from specs_core.testing import check_language_model
from specs_core.types import FinishReason, Prompt, SamplingParams

from _tiny_hf import one_torch_thread, tiny_llama, tiny_qwen2, tiny_tokenizer
from specs_transformers import TransformersModel
from specs_transformers.options import TransformersOptions

pytestmark = pytest.mark.transformers

BUILDERS = {"llama": tiny_llama, "qwen2": tiny_qwen2}
#: A prompt that repeats itself, so that the drafter finds matches.
PROMPTS = [Prompt("What is 12 * 4? Repeat: 12 * 4 12 * 4 12 * 4"), Prompt("Let x be")]
DRAFTER = SpeculativeOptions(max_draft=4, min_match=1, max_match=3)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _pair(arch: str, char_level: bool) -> tuple[TransformersModel, TransformersModel]:
    tok = tiny_tokenizer(char_level)
    net = BUILDERS[arch](tok, seed=3)
    plain = TransformersModel.from_objects(net, tok, name="plain")
    spec = TransformersModel.from_objects(net, tok, name="ngram", speculative=DRAFTER)
    return plain, spec


@pytest.mark.parametrize("char_level", [True, False], ids=["chars", "bpe"])
@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_greedy_output_with_the_drafter_equals_greedy_output_without(
    arch: str, char_level: bool
) -> None:
    plain, spec = _pair(arch, char_level)
    params = SamplingParams(n=3, temperature=0.0, max_tokens=60)
    expected = plain.generate(PROMPTS, params)
    got = spec.generate(PROMPTS, params)
    proposed = accepted = 0
    for group_a, group_b in zip(expected, got, strict=True):
        for a, b in zip(group_a, group_b, strict=True):
            assert b.token_ids == a.token_ids and b.text == a.text
            assert b.finish_reason is a.finish_reason
            assert b.logprobs == pytest.approx(a.logprobs, abs=1e-4)
            proposed += b.draft_tokens_proposed
            accepted += b.draft_tokens_accepted
    assert 0 < accepted < proposed


def test_sampling_with_the_drafter_keeps_stops_limits_and_seeds() -> None:
    _, spec = _pair("qwen2", True)
    params = SamplingParams(n=4, temperature=0.9, top_p=0.9, max_tokens=40, stop=(" ",), seed=5)
    first = spec.generate(PROMPTS, params)
    again = spec.generate(PROMPTS, params)
    assert [[c.token_ids for c in g] for g in first] == [[c.token_ids for c in g] for g in again]
    for group in first:
        for c in group:
            assert len(c.token_ids) == len(c.logprobs) <= 40
            if c.finish_reason is FinishReason.STOP:
                assert c.text.endswith(" ") and c.text.count(" ") == 1
            elif c.finish_reason is FinishReason.LENGTH:
                assert len(c.token_ids) == 40
    scored = spec.logprobs([PROMPTS[0]] * 4, [c.text for c in first[0]])
    for c, s in zip(first[0], scored, strict=True):
        assert s.logprobs == pytest.approx(c.logprobs, abs=1e-4)  # untempered, as recorded


def test_the_table_is_shared_across_calls_and_fed_by_scored_text() -> None:
    _, spec = _pair("llama", True)
    greedy = SamplingParams(temperature=0.0, max_tokens=40)
    [[first]] = spec.generate([PROMPTS[1]], greedy)
    [[second]] = spec.generate([PROMPTS[1]], greedy)  # the same question: the table knows it
    assert second.token_ids == first.token_ids
    assert second.draft_tokens_accepted >= len(second.token_ids) - 2 * second.draft_rounds
    assert second.draft_tokens_accepted > first.draft_tokens_accepted
    _, fresh = _pair("llama", True)
    fresh.logprobs([PROMPTS[1]], [first.text])  # scoring the text indexes it
    [[scored_first]] = fresh.generate([PROMPTS[1]], greedy)
    assert scored_first.draft_tokens_accepted > first.draft_tokens_accepted


def test_options_accept_the_speculative_section() -> None:
    options = TransformersOptions.model_validate(
        {"model": "some/dir", "speculative": {"max_draft": 2, "shared": False}}
    )
    assert options.speculative is not None and options.speculative.max_draft == 2
    assert TransformersOptions(model="some/dir").speculative is None


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_a_speculative_model_passes_the_conformance_suite(arch: str) -> None:
    tok = tiny_tokenizer(True)
    seed = {"llama": 10, "qwen2": 11}[arch]  # greedy texts holding a space (partial check)
    model = TransformersModel.from_objects(
        BUILDERS[arch](tok, seed=seed), tok, name=arch, speculative=DRAFTER
    )
    check_language_model(model)

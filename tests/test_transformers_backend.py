"""The transformers backend on tiny random Llama and Qwen2 models (built in memory, no download).

References are computed independently with one plain forward pass over the whole sequence (no
cache, no padding), so the batched, cached and padded paths of the backend are checked against
the model itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("transformers", reason="the transformers extra is not installed")

import torch
from specs_core.errors import ContextOverflowError, InvalidInputError
from specs_core.testing import LANGUAGE_MODEL_CHECKS
from specs_core.types import FinishReason, Prompt, SamplingParams

from _tiny_hf import one_torch_thread, tiny_llama, tiny_qwen2, tiny_tokenizer
from specs_transformers import TransformersModel

pytestmark = pytest.mark.transformers


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


QUESTION = "What is 12 * 4?"
BUILDERS = {"llama": tiny_llama, "qwen2": tiny_qwen2}
#: Seeds whose greedy text holds a space, which the partial-continuation check needs.
CONFORMANCE_SEEDS = {"llama": 10, "qwen2": 11}


def _model(arch: str, *, char_level: bool = True, seed: int = 0, **kw: Any) -> TransformersModel:
    tok = tiny_tokenizer(char_level)
    return TransformersModel.from_objects(BUILDERS[arch](tok, seed=seed), tok, name=arch, **kw)


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def arch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def model(arch: str) -> TransformersModel:
    return _model(arch)


@pytest.fixture(scope="module")
def bpe_model(arch: str) -> TransformersModel:
    """The same architecture with a merging BPE tokenizer (multi-character tokens)."""
    return _model(arch, char_level=False)


def reference_logprobs(m: TransformersModel, prompt_ids: list[int], ids: list[int]) -> list[float]:
    """Untempered logprobs of ``ids`` after ``prompt_ids`` from one uncached forward pass."""
    full = torch.tensor([prompt_ids + ids])
    with torch.no_grad():
        logits = m.loaded.model(full).logits[0].float().log_softmax(-1)
    return [logits[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(ids)]


def reference_greedy(m: TransformersModel, prompt_ids: list[int], steps: int) -> list[int]:
    """Greedy tokens by re-running the whole sequence each step (no cache)."""
    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(m.loaded.model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt_ids) :]


# -- generation -----------------------------------------------------------------------------


def test_n_samples_per_prompt_with_counts(model: TransformersModel) -> None:
    prompts = [Prompt(QUESTION), Prompt("Compute 4 + 5.", partial="We add.", system="Be brief.")]
    params = SamplingParams(n=3, temperature=1.0, max_tokens=7, seed=4)
    groups = model.generate(prompts, params)
    assert [len(g) for g in groups] == [3, 3]
    for prompt, group in zip(prompts, groups, strict=True):
        for c in group:
            assert c.prompt_tokens == len(model.encode_prompt(prompt))
            assert 0 <= c.cached_tokens <= c.prompt_tokens
            assert len(c.token_ids) == len(c.logprobs) <= 7
            assert all(lp <= 0 for lp in c.logprobs)
            assert c.finish_reason in (FinishReason.LENGTH, FinishReason.EOS)


def test_greedy_equals_uncached_reference_for_prompts_of_different_lengths(
    model: TransformersModel,
) -> None:
    prompts = [Prompt("2+2?"), Prompt(QUESTION, partial="Twelve times four is")]
    groups = model.generate(prompts, SamplingParams(n=2, temperature=0.0, max_tokens=10))
    for prompt, group in zip(prompts, groups, strict=True):
        want = reference_greedy(model, model.encode_prompt(prompt), 10)
        eos = [i for i, t in enumerate(want) if t == model.loaded.tokenizer.eos_token_id]
        want = want[: eos[0]] if eos else want
        assert [list(c.token_ids) for c in group] == [want, want]


def test_sampled_logprobs_are_untempered_and_equal_scoring(model: TransformersModel) -> None:
    prompt = Prompt(QUESTION, partial="Step 1:")
    params = SamplingParams(n=4, temperature=0.5, max_tokens=12, seed=7)
    group = model.generate([prompt], params)[0]
    scored = model.logprobs([prompt] * 4, [c.text for c in group])
    prompt_ids = model.encode_prompt(prompt)
    for c, s in zip(group, scored, strict=True):
        assert s.token_ids == c.token_ids  # one character per token: text round-trips
        ref = reference_logprobs(model, prompt_ids, list(c.token_ids))
        assert c.logprobs == pytest.approx(ref, abs=1e-4)
        assert s.logprobs == pytest.approx(ref, abs=1e-4)


def test_same_seed_repeats_and_other_seed_differs(model: TransformersModel) -> None:
    def texts(seed: int) -> list[str]:
        params = SamplingParams(n=3, temperature=1.0, max_tokens=10, seed=seed)
        return [c.text for c in model.generate([Prompt(QUESTION)], params)[0]]

    assert texts(1) == texts(1)
    assert texts(1) != texts(2)


def test_tiny_top_p_is_greedy(model: TransformersModel) -> None:
    greedy = model.generate([Prompt(QUESTION)], SamplingParams(temperature=0.0, max_tokens=8))
    nucleus = model.generate(
        [Prompt(QUESTION)], SamplingParams(n=2, temperature=1.5, top_p=1e-6, max_tokens=8, seed=3)
    )
    assert [c.text for c in nucleus[0]] == [greedy[0][0].text] * 2


def test_stop_string_inside_a_token_cuts_the_text_and_is_kept(bpe_model: TransformersModel) -> None:
    prompt = Prompt(QUESTION)
    full = bpe_model.generate([prompt], SamplingParams(temperature=0.0, max_tokens=24))[0][0]
    assert len(full.text) > 6, full.text
    stop = full.text[3:5]
    expected = full.text[: full.text.find(stop) + len(stop)]
    params = SamplingParams(temperature=0.0, max_tokens=24, stop=("@@", stop))
    cut = bpe_model.generate([prompt], params)[0][0]
    assert cut.finish_reason is FinishReason.STOP
    assert cut.text == expected
    assert cut.token_ids == full.token_ids[: len(cut.token_ids)]
    assert bpe_model.loaded.tokenizer.decode(list(cut.token_ids)).startswith(expected)


def test_stops_are_checked_per_sequence(model: TransformersModel) -> None:
    params = SamplingParams(n=6, temperature=1.0, max_tokens=20, seed=5, stop=("a", "e"))
    group = model.generate([Prompt(QUESTION)], params)[0]
    for c in group:
        hits = [i for i, ch in enumerate(c.text) if ch in "ae"]
        if c.finish_reason is FinishReason.STOP:
            assert hits == [len(c.text) - 1]
        else:
            assert hits == []
    lengths = {len(c.token_ids) for c in group}
    assert len(lengths) > 1, "rows finished at the same step; the batch must not stop together"


def test_end_of_sequence_token_ends_the_text_and_is_left_out(arch: str) -> None:
    m = _model(arch, seed=CONFORMANCE_SEEDS[arch])
    prompt = Prompt(QUESTION)
    greedy = m.generate([prompt], SamplingParams(temperature=0.0, max_tokens=6))[0][0]
    assert len(greedy.token_ids) == 6, greedy
    m.loaded.model.generation_config.eos_token_id = greedy.token_ids[2]
    m = TransformersModel.from_objects(m.loaded.model, m.loaded.tokenizer, name=arch)
    ended = m.generate([prompt], SamplingParams(temperature=0.0, max_tokens=6))[0][0]
    first = greedy.token_ids.index(greedy.token_ids[2])
    assert ended.finish_reason is FinishReason.EOS
    assert ended.token_ids == greedy.token_ids[:first]
    assert ended.text == m.loaded.tokenizer.decode(list(greedy.token_ids[:first]))


def test_length_limit_and_context_end(arch: str) -> None:
    m = _model(arch, n_ctx=64)
    prompt = Prompt(QUESTION)
    room = 64 - len(m.encode_prompt(prompt))
    [[c]] = m.generate([prompt], SamplingParams(temperature=0.0, max_tokens=500))
    assert c.finish_reason in (FinishReason.LENGTH, FinishReason.EOS)
    assert len(c.token_ids) <= room
    with pytest.raises(ContextOverflowError, match="n_ctx"):
        m.generate([Prompt("x" * 80)], SamplingParams(max_tokens=4))
    with pytest.raises(ContextOverflowError):
        m.logprobs([prompt], ["y" * room])


# -- scoring and the prefix cache -----------------------------------------------------------


def test_scoring_equals_uncached_reference(model: TransformersModel) -> None:
    prompts = [Prompt(QUESTION), Prompt(QUESTION), Prompt("Another one.", partial="So")]
    texts = [" 48.", "Twelve times four\n\nis 48.", " we add"]
    for prompt, text, got in zip(prompts, texts, model.logprobs(prompts, texts), strict=True):
        ids = model.encode_continuation(text)
        assert got.token_ids == tuple(ids)
        assert got.logprobs == pytest.approx(
            reference_logprobs(model, model.encode_prompt(prompt), ids), abs=1e-4
        )


def test_reused_prefix_gives_the_same_numbers_as_scoring_from_scratch(arch: str) -> None:
    cached = _model(arch, prefix_cache_size=4)
    fresh = _model(arch, prefix_cache_size=0)
    base = Prompt(QUESTION, partial="Step 1: twelve.\n\n")
    longer = Prompt(QUESTION, partial="Step 1: twelve.\n\nStep 2: four.\n\n")
    text = "Step 3: 48."
    first = cached.logprobs([base], [text])[0]
    again = cached.logprobs([base], [text])[0]
    extended = cached.logprobs([longer], [text])[0]
    assert first.cached_tokens < first.prompt_tokens
    assert again.cached_tokens == again.prompt_tokens  # served whole from the cache
    assert extended.cached_tokens >= len(cached.encode_prompt(base)) - 1
    for prompt, got in ((base, first), (base, again), (longer, extended)):
        [scratch] = fresh.logprobs([prompt], [text])
        assert scratch.cached_tokens == 0
        assert got.token_ids == scratch.token_ids
        assert got.logprobs == pytest.approx(scratch.logprobs, abs=1e-4)


def test_generation_reuses_the_prefix_of_an_earlier_call(arch: str) -> None:
    m = _model(arch)
    first = Prompt(QUESTION, partial="Step 1: twelve.\n\n")
    second = Prompt(QUESTION, partial="Step 1: twelve.\n\nStep 2:")
    params = SamplingParams(n=2, temperature=0.0, max_tokens=5)
    [[a, _]] = m.generate([first], params)
    [[b, _]] = m.generate([second], params)
    assert a.cached_tokens == 0
    assert b.cached_tokens >= a.prompt_tokens - 1
    want = reference_greedy(m, m.encode_prompt(second), 5)
    assert list(b.token_ids) == want[: len(b.token_ids)]


def test_many_continuations_of_mixed_lengths_score_as_alone(arch: str) -> None:
    m = _model(arch, score_batch_size=3)
    prompt = Prompt(QUESTION)
    texts = ["a", "bc def", "", "Twelve times four is 48.\n\n", "x" * 9, "48"]
    together = m.logprobs([prompt] * len(texts), texts)
    assert together[2].token_ids == () and together[2].logprobs == ()
    for text, got in zip(texts, together, strict=True):
        [alone] = m.logprobs([prompt], [text])
        assert got.token_ids == alone.token_ids
        assert got.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


def test_mismatched_lengths_are_rejected(model: TransformersModel) -> None:
    with pytest.raises(InvalidInputError, match="one continuation per prompt"):
        model.logprobs([Prompt(QUESTION)], ["a", "b"])
    assert model.logprobs([], []) == []
    assert model.generate([], SamplingParams()) == []


# -- prompts and lifetime -------------------------------------------------------------------


def test_render_applies_the_chat_template_and_continues_the_partial(
    model: TransformersModel,
) -> None:
    tok = model.loaded.tokenizer
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": QUESTION}]
    head = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert model.render(Prompt(QUESTION, partial="Step 1:", system="S")) == head + "Step 1:"
    assert model.render(Prompt(QUESTION)).endswith("<|im_start|>assistant\n")
    assert "<|im_end|>" not in model.render(Prompt(QUESTION, partial="x")).split("assistant")[-1]


def test_concurrent_calls_are_serialised(model: TransformersModel) -> None:
    params = SamplingParams(n=2, temperature=1.0, max_tokens=8, seed=21)
    want = model.generate([Prompt(QUESTION)], params)
    got: list[Any] = []

    def work() -> None:
        got.append(model.generate([Prompt(QUESTION)], params))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [[c.text for c in g[0]] for g in got] == [[c.text for c in want[0]]] * 3


def test_closed_in_memory_model_says_how_to_rebuild(arch: str) -> None:
    m = _model(arch)
    m.close()
    m.close()
    with pytest.raises(InvalidInputError, match="from_objects"):
        m.generate([Prompt(QUESTION)], SamplingParams(max_tokens=2))


# -- the core conformance suite -------------------------------------------------------------


@pytest.fixture(scope="module")
def conformance_model(arch: str) -> TransformersModel:
    return _model(arch, seed=CONFORMANCE_SEEDS[arch])


@pytest.mark.parametrize("check", sorted(LANGUAGE_MODEL_CHECKS))
def test_conformance(conformance_model: TransformersModel, check: str) -> None:
    LANGUAGE_MODEL_CHECKS[check](conformance_model, 1e-4)

"""The toy language model: true probabilities, tokenization, sampling parameters, accounting."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from specs_core.errors import ContextOverflowError, InvalidInputError
from specs_core.testing import STEP_DELIMITER, ToyLanguageModel, ToyTokenizer, toy_answer
from specs_core.testing.toy import EOS_ID
from specs_core.text import extract_boxed, split_steps
from specs_core.types import FinishReason, Prompt, SamplingParams

Q = "What is 2 + 3?"
QUESTIONS = (Q, "Tom has 7 apples and buys 8 more. How many now?", "Find x.", "Compute 4 + 5 + 6.")


def greedy(max_tokens: int = 64, stop: tuple[str, ...] = ()) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, stop=stop)


@pytest.fixture
def target() -> ToyLanguageModel:
    return ToyLanguageModel("target")


@pytest.fixture
def draft() -> ToyLanguageModel:
    return ToyLanguageModel("draft")


# -- distribution -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["target", "draft", "xyz"])
@pytest.mark.parametrize(
    ("question", "partial", "continuation"),
    [
        (Q, "", ""),
        (Q, "First add 2 and 3\n\n", ""),
        (Q, "", "So the sum is 5 ."),
        ("Ünïcode question ✓", "Let's think: 2+3=5", " then \\boxed{5}"),
    ],
)
def test_next_token_distribution_sums_to_one(
    variant: str, question: str, partial: str, continuation: str
) -> None:
    model = ToyLanguageModel(variant)
    dist = model.next_token_logprobs(Prompt(question, partial), continuation)
    assert set(dist) == set(model.tokenizer.output_ids)
    assert math.isclose(sum(math.exp(lp) for lp in dist.values()), 1.0, abs_tol=1e-12)
    assert all(math.isfinite(lp) and lp < 0 for lp in dist.values())


def test_sampling_frequencies_follow_the_distribution(target: ToyLanguageModel) -> None:
    prompt = Prompt(Q, "First add 2")
    probs = {t: math.exp(lp) for t, lp in target.next_token_logprobs(prompt).items()}
    for temperature in (1.0, 0.5):
        params = SamplingParams(n=4000, temperature=temperature, max_tokens=1, seed=1)
        [group] = target.generate([prompt], params)
        counts = Counter(c.token_ids[0] if c.token_ids else EOS_ID for c in group)
        tempered = {t: p ** (1 / temperature) for t, p in probs.items()}
        z = sum(tempered.values())
        tv = 0.5 * sum(abs(counts[t] / 4000 - w / z) for t, w in tempered.items())
        assert tv < 0.05, (temperature, tv)


def test_greedy_takes_the_argmax_at_every_position(target: ToyLanguageModel) -> None:
    [[c]] = target.generate([Prompt(Q)], greedy())
    ids = list(c.token_ids) + ([EOS_ID] if c.finish_reason is FinishReason.EOS else [])
    for k, token in enumerate(ids):
        dist = target.next_token_logprobs(Prompt(Q), target.tokenizer.decode(ids[:k]))
        assert token == max(dist, key=lambda t: dist[t])


def test_draft_is_a_perturbed_target(target: ToyLanguageModel, draft: ToyLanguageModel) -> None:
    same = ToyLanguageModel("draft", mismatch=0.0)
    prompt = Prompt(Q, "First add")
    t, d, s = (m.next_token_logprobs(prompt) for m in (target, draft, same))
    assert s == t
    assert d != t
    tv = 0.5 * sum(abs(math.exp(t[k]) - math.exp(d[k])) for k in t)
    assert 0.05 < tv < 0.9  # related, not identical, not unrelated


def test_log_ratios_favour_the_model_that_sampled(
    target: ToyLanguageModel, draft: ToyLanguageModel
) -> None:
    prompt = Prompt(Q)
    params = SamplingParams(n=24, temperature=1.0, max_tokens=12, stop=(STEP_DELIMITER,), seed=4)
    means = {}
    for sampler in (target, draft):
        texts = [c.text for c in sampler.generate([prompt], params)[0]]
        on_target = target.logprobs([prompt] * len(texts), texts)
        on_draft = draft.logprobs([prompt] * len(texts), texts)
        ratios = [t.mean - d.mean for t, d in zip(on_target, on_draft, strict=True)]
        assert max(ratios) - min(ratios) > 0.5  # they vary from step to step
        means[sampler.variant] = sum(ratios) / len(ratios)
    assert means["draft"] < 0 < means["target"]  # E_d[log t - log d] = -KL(d || t)


# -- tokenizer ----------------------------------------------------------------------------------


def test_every_pair_of_word_tokens_round_trips() -> None:
    tok = ToyTokenizer()
    words = [t for t in tok.output_ids if tok.piece(t)]
    for a, b in itertools.product(words, repeat=2):
        assert tok.encode(tok.piece(a) + tok.piece(b)) == [a, b]


@pytest.mark.parametrize("text", ["", "héllo wörld ✓ 🙂", "  \\boxed{12}\n\n\nx", "The answer"])
def test_any_text_round_trips(text: str) -> None:
    tok = ToyTokenizer()
    assert tok.decode(tok.encode(text)) == text


def test_generated_text_retokenizes_into_its_tokens(draft: ToyLanguageModel) -> None:
    params = SamplingParams(n=20, temperature=1.5, max_tokens=60, seed=8)
    for group in draft.generate([Prompt(q) for q in QUESTIONS], params):
        for c in group:
            assert tuple(draft.tokenizer.encode(c.text)) == c.token_ids


def test_foreign_text_scores_finite(target: ToyLanguageModel) -> None:
    [s] = target.logprobs([Prompt(Q)], ["Let's compute: 2+3 = 5 ✓\n\nThe answer is $\\boxed{5}$."])
    assert len(s.token_ids) == len(s.logprobs) > 20
    assert all(math.isfinite(lp) and lp < 0 for lp in s.logprobs)


# -- generation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 0.3, 1.0, 2.0])
@pytest.mark.parametrize("top_p", [1.0, 0.5])
def test_recorded_logprobs_are_untempered_and_equal_scoring(
    draft: ToyLanguageModel, temperature: float, top_p: float
) -> None:
    params = SamplingParams(n=3, temperature=temperature, top_p=top_p, max_tokens=40, seed=2)
    prompts = [Prompt(Q), Prompt(Q, "First add 2\n\n")]
    for prompt, group in zip(prompts, draft.generate(prompts, params), strict=True):
        for c in group:
            [s] = draft.logprobs([prompt], [c.text])
            assert s.token_ids == c.token_ids
            assert s.logprobs == c.logprobs


def test_seeds(target: ToyLanguageModel) -> None:
    def texts(seed: int | None) -> list[str]:
        params = SamplingParams(n=6, temperature=1.0, max_tokens=10, seed=seed)
        return [c.text for c in target.generate([Prompt(Q)], params)[0]]

    assert texts(1) == texts(1)
    assert texts(1) != texts(2)
    assert len(set(texts(1))) > 1  # the n samples are distinct draws
    assert texts(None) != texts(None)


def test_batch_equals_one_by_one_when_seeded(target: ToyLanguageModel) -> None:
    params = SamplingParams(n=3, temperature=0.9, max_tokens=20, seed=5)
    prompts = [Prompt(q) for q in QUESTIONS]
    batch = target.generate(prompts, params)
    for prompt, group in zip(prompts, batch, strict=True):
        assert [c.text for c in target.generate([prompt], params)[0]] == [c.text for c in group]


def test_top_p_keeps_only_the_nucleus(target: ToyLanguageModel) -> None:
    prompt = Prompt(Q, "First")
    dist = target.next_token_logprobs(prompt)
    [group] = target.generate([prompt], SamplingParams(n=300, top_p=0.3, max_tokens=1, seed=0))
    ranked = sorted(dist.values(), reverse=True)
    for c in group:
        token = c.token_ids[0] if c.token_ids else EOS_ID
        before = sum(math.exp(lp) for lp in ranked if lp > dist[token])
        assert before < 0.3
    [[tiny]] = target.generate([prompt], SamplingParams(top_p=1e-9, max_tokens=30, seed=3))
    assert tiny.text == target.generate([prompt], greedy(30))[0][0].text


def test_max_tokens_gives_length(target: ToyLanguageModel) -> None:
    [group] = target.generate([Prompt(Q)], SamplingParams(n=5, max_tokens=4, seed=1))
    for c in group:
        assert c.finish_reason is FinishReason.LENGTH
        assert c.completion_tokens == len(c.logprobs) == 4


def test_stop_string_inside_a_token_cuts_the_text_and_keeps_the_token(
    target: ToyLanguageModel,
) -> None:
    [[full]] = target.generate([Prompt(Q)], greedy())
    word = next(t for t in full.token_ids if len(target.tokenizer.piece(t)) >= 4)
    piece = target.tokenizer.piece(word)
    stop = piece[1:3]
    [[cut]] = target.generate([Prompt(Q)], greedy(stop=(stop, "\n\n")))
    expected_end = min(full.text.find(s) + len(s) for s in (stop, "\n\n") if s in full.text)
    assert cut.finish_reason is FinishReason.STOP
    assert cut.text == full.text[:expected_end]
    assert target.tokenizer.decode(cut.token_ids).startswith(cut.text)


def test_stop_in_the_partial_does_not_stop(target: ToyLanguageModel) -> None:
    [[c]] = target.generate([Prompt(Q, "First add 2\n\n")], greedy(stop=("\n\n",)))
    assert c.finish_reason is FinishReason.STOP
    assert c.text.endswith("\n\n") and c.text.count("\n\n") == 1 and len(c.text) > 2


def test_solutions_are_step_structured_and_end_with_a_boxed_answer(
    target: ToyLanguageModel, draft: ToyLanguageModel
) -> None:
    params = SamplingParams(n=25, temperature=1.0, max_tokens=400, seed=11)
    right = {}
    for model in (target, draft):
        steps: Counter[int] = Counter()
        correct = 0
        for question, group in zip(
            QUESTIONS, model.generate([Prompt(q) for q in QUESTIONS], params), strict=True
        ):
            for c in group:
                assert c.finish_reason is FinishReason.EOS
                assert EOS_ID not in c.token_ids
                parts = split_steps(c.text)
                steps[len(parts)] += 1
                assert extract_boxed(parts[-1]) is not None
                assert all(extract_boxed(p) is None for p in parts[:-1])
                correct += extract_boxed(c.text) == str(toy_answer(question))
        assert sum(n for k, n in steps.items() if 2 <= k <= 6) >= 0.9 * 100
        right[model.variant] = correct
    assert right["target"] > right["draft"] > 0


def test_partial_is_continued(target: ToyLanguageModel) -> None:
    [[full]] = target.generate([Prompt(Q)], greedy())
    cut = full.text.index(STEP_DELIMITER) + 2
    [[rest]] = target.generate([Prompt(Q, full.text[:cut])], greedy())
    assert full.text[:cut] + rest.text == full.text
    a, b = full.text[:cut], full.text[cut:]
    [whole] = target.logprobs([Prompt(Q)], [full.text])
    [first] = target.logprobs([Prompt(Q)], [a])
    [second] = target.logprobs([Prompt(Q, a)], [b])
    assert whole.logprobs == first.logprobs + second.logprobs


# -- accounting, latency, threads, errors -------------------------------------------------------


def test_token_counts_and_prefix_cache(target: ToyLanguageModel) -> None:
    prompt = Prompt(Q, "First")
    [g1, g2] = target.generate([prompt, prompt], SamplingParams(n=2, max_tokens=3, seed=0))
    n_prompt = len(target.render(prompt))
    assert all(c.prompt_tokens == n_prompt for c in (*g1, *g2))
    assert g1[0].cached_tokens == 0 and g2[0].cached_tokens == n_prompt
    [s] = target.logprobs([Prompt(Q, "Then")], ["x"])
    assert 0 < s.cached_tokens < s.prompt_tokens  # shares the question, not the partial
    target.close()
    [s] = target.logprobs([prompt], ["x"])
    assert s.cached_tokens == 0


def test_simulated_latency() -> None:
    slow = ToyLanguageModel("target", ms_per_token=2.0, ms_per_prompt_token=1.0)
    start = time.perf_counter()
    [[c]] = slow.generate([Prompt(Q)], SamplingParams(max_tokens=10, seed=0))
    assert time.perf_counter() - start >= (2.0 * c.completion_tokens + c.prompt_tokens) / 1000
    start = time.perf_counter()
    [s] = slow.logprobs([Prompt(Q)], [c.text])
    assert time.perf_counter() - start >= len(s.token_ids) / 1000


def test_thread_safe(draft: ToyLanguageModel) -> None:
    params = SamplingParams(n=4, temperature=1.0, max_tokens=30, seed=9)

    def texts(question: str) -> list[tuple[str, tuple[float, ...]]]:
        return [(c.text, c.logprobs) for c in draft.generate([Prompt(question)], params)[0]]

    expected = {q: texts(q) for q in QUESTIONS}
    results: dict[str, object] = {}

    def work(question: str) -> None:
        results[question] = texts(question)
        draft.logprobs([Prompt(question)] * 3, ["a", "b", "c"])

    threads = [threading.Thread(target=work, args=(q,)) for q in QUESTIONS * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_context_window() -> None:
    small = ToyLanguageModel("target", n_ctx=32)
    with pytest.raises(ContextOverflowError, match="n_ctx"):
        small.generate([Prompt("x" * 40)], greedy())
    [[c]] = small.generate([Prompt("What is 1?")], greedy(100))
    assert c.finish_reason is FinishReason.LENGTH
    assert c.prompt_tokens + c.completion_tokens == 32


def test_invalid_inputs(target: ToyLanguageModel) -> None:
    with pytest.raises(InvalidInputError, match="one continuation per prompt"):
        target.logprobs([Prompt(Q)], ["a", "b"])
    with pytest.raises(InvalidInputError, match="expected a Prompt"):
        target.generate([Q], greedy())  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="variant"):
        ToyLanguageModel("")
    with pytest.raises(InvalidInputError, match=">= 0"):
        ToyLanguageModel("draft", mismatch=-1)


def test_capabilities_and_name(target: ToyLanguageModel) -> None:
    caps = target.capabilities
    assert all(getattr(caps, f) for f in caps.__dataclass_fields__)
    assert target.name == "toy-target"
    assert ToyLanguageModel("draft", name="d").name == "d"


def test_toy_answer() -> None:
    assert toy_answer("What is 2 + 3?") == 5
    assert toy_answer("Add 15 and 10.") == 4  # 25 mod 21
    assert toy_answer("Find x.") == toy_answer("Find x.")
    assert 0 <= toy_answer("no numbers here") < 21


def test_outputs_are_the_same_in_every_process() -> None:
    code = (
        "from specs_core.testing import ToyLanguageModel\n"
        "from specs_core.types import Prompt, SamplingParams\n"
        "m = ToyLanguageModel('draft')\n"
        "p = SamplingParams(n=2, temperature=1.0, max_tokens=40, seed=3)\n"
        "print([c.text for c in m.generate([Prompt('What is 2 + 3?')], p)[0]])\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1 and "\\\\boxed" in outputs.pop()

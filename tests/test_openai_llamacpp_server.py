"""The ``openai`` backend against the REAL ``llama_cpp.server`` (llama-cpp-python 0.3.36).

That server generates fine but has quirks the backend must handle: it ignores ``n``, refuses
lists of prompts, reports no token ids, trims stop strings without saying which matched, and its
``echo`` prompt log-probabilities are shifted by one token (or, when the prompt starts with the
BOS token, reported with offsets that cannot be matched with the prompt). The backend
recognises it from ``/v1/models`` and declares scoring unsupported; ``echo_logprobs: detect``
measures the defect.
Its generation log-probabilities are checked against exact scores computed independently by the
protocol test double's low-level llama.cpp scoring of the same model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from specs_core.errors import CapabilityError
from specs_core.types import FinishReason, Prompt, SamplingParams

from servers.launch import ServerProcess, start_fake_sglang, start_llama_cpp_server
from specs_openai import OpenAIModel, OpenAIOptions
from specs_sglang import SGLangModel, SGLangOptions

pytestmark = [pytest.mark.server, pytest.mark.llamacpp, pytest.mark.slow]

PROMPTS = [Prompt("What is 2 + 3?"), Prompt("Name a color.")]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_llama_cpp_server(
        tmp_path_factory.mktemp("llama-cpp-server"), "--n_ctx", "1024", "--logits_all", "true"
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def model(llama_server: ServerProcess) -> Iterator[OpenAIModel]:
    m = OpenAIModel(OpenAIOptions(url=llama_server.url, timeout_s=300, chat_template="smollm2"))
    yield m
    m.close()


def test_the_server_is_recognised_and_cannot_score(model: OpenAIModel) -> None:
    assert model.profile.name == "llama-cpp-python"
    assert not model.capabilities.scoring
    with pytest.raises(CapabilityError, match="declared broken"):
        model.logprobs([PROMPTS[0]], ["First, add 2 and 3."])


def test_generation_with_n_stop_and_logprobs(model: OpenAIModel) -> None:
    params = SamplingParams(n=2, temperature=0.8, max_tokens=10, stop=("\n\n", "."), seed=4)
    rows = model.generate(PROMPTS, params)
    assert [len(row) for row in rows] == [2, 2]
    for row in rows:
        for c in row:
            assert c.finish_reason in (FinishReason.STOP, FinishReason.LENGTH, FinishReason.EOS)
            if c.finish_reason is FinishReason.STOP:
                assert c.text.endswith((".", "\n\n"))
            assert 0 < len(c.logprobs) <= 10
            assert all(math.isfinite(v) and v <= 0 for v in c.logprobs)
            assert c.token_ids  # from the server's /extras/tokenize
    assert not model.capabilities.seeded  # it reuses its KV cache across requests


def test_generation_logprobs_match_exact_scores(
    model: OpenAIModel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    reference_server = start_fake_sglang(tmp_path_factory.mktemp("reference"))
    reference = SGLangModel(SGLangOptions(url=reference_server.url, timeout_s=300))
    try:
        [[c]] = model.generate([PROMPTS[0]], SamplingParams(temperature=0.0, max_tokens=8))
        [exact] = reference.logprobs([PROMPTS[0]], [c.text])
        assert len(exact.logprobs) == len(c.logprobs)
        gap = max(abs(a - b) for a, b in zip(c.logprobs, exact.logprobs, strict=True))
        assert gap < 0.05, f"generation logprobs {c.logprobs} vs exact {exact.logprobs}"
    finally:
        reference.close()
        reference_server.stop()


@pytest.mark.parametrize(
    ("template", "verdict"),
    [
        ("raw", r"are wrong \(off by [0-9.]+ nats per token"),  # prompt without BOS: shifted by one
        ("smollm2", r"are misaligned \(0 echo tokens"),  # starts with BOS <|im_start|>: dropped
    ],
)
def test_echo_detection_finds_the_defect(
    llama_server: ServerProcess, template: str, verdict: str
) -> None:
    detecting = OpenAIModel(
        OpenAIOptions(
            url=llama_server.url, timeout_s=300, chat_template=template, echo_logprobs="detect"
        )
    )
    try:
        with pytest.raises(CapabilityError, match=verdict):
            detecting.logprobs([PROMPTS[0]], ["First, add 2 and 3."])
        assert not detecting.capabilities.scoring
    finally:
        detecting.close()

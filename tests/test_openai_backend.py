"""The ``openai`` backend against the live protocol test double's ``/v1/completions``.

The test double (``tests/servers/fake_sglang_server.py``, real SmolLM2 inference) answers like
SGLang's OpenAI endpoint: lists of prompts, ``n``, ``seed``, ``echo`` with correct prompt
log-probabilities, ``matched_stop``, and temperature-scaled generation log-probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from specs_core.errors import CapabilityError, InvalidInputError
from specs_core.testing import LANGUAGE_MODEL_CHECKS
from specs_core.types import FinishReason, Prompt, SamplingParams

from servers.launch import ServerProcess, start_fake_sglang
from specs_openai import OpenAIModel, OpenAIOptions

pytestmark = [pytest.mark.server, pytest.mark.llamacpp, pytest.mark.slow]

PROMPTS = [Prompt("What is 2 + 3?"), Prompt("Name a color.")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_fake_sglang(tmp_path_factory.mktemp("openai"))
    yield srv
    srv.stop()


def _model(srv: ServerProcess, **options: Any) -> OpenAIModel:
    return OpenAIModel(OpenAIOptions(url=srv.url, timeout_s=120, **options))


@pytest.fixture(scope="module")
def model(server: ServerProcess) -> Iterator[OpenAIModel]:
    m = _model(server, tempered_logprobs=True, rescore_generation="always")
    yield m
    m.close()


@pytest.mark.parametrize("check", sorted(LANGUAGE_MODEL_CHECKS))
def test_conformance(model: OpenAIModel, check: str) -> None:
    LANGUAGE_MODEL_CHECKS[check](model, 1e-4)


def test_the_server_family_is_recognised(model: OpenAIModel) -> None:
    assert model.profile.name == "sglang"
    assert model.capabilities.scoring
    assert model.name.startswith("openai@127.0.0.1:")


def test_echo_detection_trusts_a_correct_server(server: ServerProcess) -> None:
    detecting = _model(server, echo_logprobs="detect")
    try:
        [scored] = detecting.logprobs([PROMPTS[0]], ["First, add 2 and 3."])
        assert scored.logprobs and detecting.capabilities.scoring
    finally:
        detecting.close()


def test_one_request_per_sample_gives_the_batched_results(
    server: ServerProcess, model: OpenAIModel
) -> None:
    single = _model(server, batch_prompts=False, native_n=False)
    try:
        params = SamplingParams(n=2, temperature=0.0, max_tokens=6)
        server.reset()
        apart = single.generate(PROMPTS, params)
        assert server.stats()["requests"]["/v1/completions"] == 4  # 2 prompts x 2 samples
        together = model.generate(PROMPTS, params)
        for key in ("text", "token_ids"):
            assert [[getattr(c, key) for c in row] for row in apart] == [
                [getattr(c, key) for c in row] for row in together
            ]
    finally:
        single.close()


def test_token_ids_reported_by_the_server_skip_the_tokenizer(
    server: ServerProcess, model: OpenAIModel
) -> None:
    with_ids = _model(server, tokens_as_ids=True, token_prompts=False)
    try:
        params = SamplingParams(n=1, temperature=0.0, max_tokens=6, stop=("\n\n",))
        server.reset()
        [[c]] = with_ids.generate(PROMPTS[:1], params)
        requests = server.stats()["requests"]
        assert "/v1/tokenize" not in requests
        [[reference]] = model.generate(PROMPTS[:1], params)
        assert c.token_ids == reference.token_ids and len(c.token_ids) == len(c.logprobs)
    finally:
        with_ids.close()


def test_tempered_server_logprobs_need_rescoring(server: ServerProcess, model: OpenAIModel) -> None:
    naive = _model(server)  # does not know the server tempers its logprobs
    try:
        params = SamplingParams(n=1, temperature=0.5, max_tokens=6, seed=3)
        [[raw]] = naive.generate(PROMPTS[:1], params)
        [[fixed]] = model.generate(PROMPTS[:1], params)
        [scored] = model.logprobs(PROMPTS[:1], [fixed.text])
        assert raw.text == fixed.text
        assert fixed.logprobs == pytest.approx(scored.logprobs, abs=1e-6)
        assert max(abs(a - b) for a, b in zip(raw.logprobs, fixed.logprobs, strict=True)) > 0.05
    finally:
        naive.close()


def test_eos_and_stop_finish_reasons(model: OpenAIModel) -> None:
    [[stopped]] = model.generate(
        [Prompt("What is 2 + 3?")], SamplingParams(temperature=0.0, max_tokens=24, stop=(" ",))
    )
    assert stopped.finish_reason is FinishReason.STOP and stopped.text.endswith(" ")
    assert stopped.text.count(" ") == 1
    [[ended]] = model.generate([Prompt("Say OK.")], SamplingParams(temperature=0.0, max_tokens=64))
    assert ended.finish_reason in (FinishReason.EOS, FinishReason.LENGTH)


def test_declared_broken_echo_refuses_to_score(server: ServerProcess) -> None:
    broken = _model(server, echo_logprobs="broken")
    try:
        assert not broken.capabilities.scoring
        with pytest.raises(CapabilityError, match="declared broken"):
            broken.logprobs([PROMPTS[0]], ["x"])
    finally:
        broken.close()


def test_an_unknown_server_family_is_refused(server: ServerProcess) -> None:
    with pytest.raises(InvalidInputError, match="server 'tgi' is unknown"):
        _model(server, server="tgi")

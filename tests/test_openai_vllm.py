"""The ``openai`` backend against the protocol test double speaking vLLM's completions dialect.

``fake_sglang_server.py --flavor vllm`` answers ``/v1/completions`` as vLLM documents it
(vllm/entrypoints/openai/protocol.py): ``owned_by: vllm``, ``include_stop_str_in_output``,
``stop_reason``, ``prompt_logprobs``, and vLLM's refusal of ``max_tokens: 0``; real SmolLM2
inference behind it. The expected log-probabilities are recomputed here from the same weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from specs_core.errors import CapabilityError
from specs_core.testing import LANGUAGE_MODEL_CHECKS
from specs_core.types import FinishReason, Prompt, SamplingParams

from servers.launch import ServerProcess, smollm2_path, start_fake_sglang
from servers.llama_inference import LlamaInference
from specs_openai import OpenAIModel, OpenAIOptions

pytestmark = [pytest.mark.server, pytest.mark.llamacpp, pytest.mark.slow]

QUESTION = Prompt("What is 2 + 3?")
STEP = "First, add 2 and 3.\n\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_fake_sglang(tmp_path_factory.mktemp("vllm"), "--flavor", "vllm")
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


def test_the_double_speaks_vllms_fields(server: ServerProcess) -> None:
    body = {"prompt": "Count: 1, 2,", "max_tokens": 12, "temperature": 0, "stop": [","]}
    plain = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60).json()
    kept = httpx.post(
        f"{server.url}/v1/completions",
        json={**body, "include_stop_str_in_output": True, "prompt_logprobs": 1},
        timeout=60,
    ).json()
    [a], [b] = plain["choices"], kept["choices"]
    assert a["stop_reason"] == b["stop_reason"] == ","
    assert b["text"] == a["text"] + ","
    assert a["prompt_logprobs"] is None and b["prompt_logprobs"][0] is None
    assert all(isinstance(e, dict) and e for e in b["prompt_logprobs"][1:])
    zero = httpx.post(f"{server.url}/v1/completions", json={**body, "max_tokens": 0}, timeout=60)
    assert zero.status_code == 400 and "at least 1" in zero.json()["message"]


def test_the_backend_keeps_the_stop_string_through_include_stop_str(model: OpenAIModel) -> None:
    assert model.profile.name == "vllm"
    params = SamplingParams(n=2, temperature=0.0, max_tokens=64, stop=("\n\n",), seed=1)
    [[first, _]] = model.generate([QUESTION], params)
    if first.finish_reason is FinishReason.STOP:
        assert first.text.endswith("\n\n")


def test_scoring_reads_prompt_logprobs_without_any_echo(server: ServerProcess) -> None:
    # echo declared broken: only the prompt_logprobs path can score
    native = _model(server, echo_logprobs="broken")
    try:
        [scored] = native.logprobs([QUESTION], [STEP])
        assert native.capabilities.scoring and native.profile.prompt_logprobs
    finally:
        native.close()
    engine = LlamaInference(str(smollm2_path()))
    prompt_ids = list(native_prompt_ids(server, QUESTION))
    cont_ids = list(scored.token_ids)
    values, _, _ = engine.input_logprobs([*prompt_ids, *cont_ids], len(prompt_ids))
    assert scored.logprobs == pytest.approx(values, abs=1e-4)
    assert scored.prompt_tokens == len(prompt_ids)


def native_prompt_ids(server: ServerProcess, prompt: Prompt) -> list[int]:
    m = _model(server)
    try:
        transport, render, profile = m._connect()
        [ids] = m._tokenize(transport, profile, [render(prompt)], special=True)
        return list(ids)
    finally:
        m.close()


def test_echo_scoring_on_vllm_asks_for_one_token_and_agrees(server: ServerProcess) -> None:
    native = _model(server)
    echo = _model(server, prompt_logprobs=False)  # echo with max_tokens 1: vLLM refuses 0
    try:
        a = native.logprobs([QUESTION], [STEP])[0]
        b = echo.logprobs([QUESTION], [STEP])[0]
    finally:
        native.close()
        echo.close()
    assert a.token_ids == b.token_ids
    assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_a_server_without_prompt_logprobs_falls_back_to_echo(server: ServerProcess) -> None:
    broken = _model(server, prompt_logprobs=False, echo_logprobs="broken")
    try:
        with pytest.raises(CapabilityError, match="echo"):
            broken.logprobs([QUESTION], [STEP])
    finally:
        broken.close()

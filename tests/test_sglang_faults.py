"""Faults against the live SGLang protocol test double: retries, timeouts, bad answers, crashes.

Faults are injected on the server (``POST /admin/faults``); the server really delays, answers
503, sends broken bodies or dies. The module's server has no tokenize endpoint, like older
SGLang releases, so scoring here also runs the backend's prefill fallback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from specs_core import Specs
from specs_core.errors import BackendError, ProtocolError
from specs_core.types import Prompt, SamplingParams, StepRecord

from servers.launch import ServerProcess, start_fake_sglang
from specs_sglang import HttpStatusError, SGLangModel, SGLangOptions

pytestmark = [pytest.mark.server, pytest.mark.llamacpp, pytest.mark.slow]

QUICK = SamplingParams(n=1, temperature=0.0, max_tokens=4)
PROMPT = Prompt("What is 2 + 3?")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_fake_sglang(tmp_path_factory.mktemp("faults"), "--no-tokenize")
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def clean(server: ServerProcess) -> Iterator[None]:
    server.reset()
    yield
    server.reset()


def _model(url: str, **options: Any) -> SGLangModel:
    defaults: dict[str, Any] = {
        "url": url,
        "max_retries": 3,
        "backoff_s": 0.05,
        "timeout_s": 60,
        "rescore_generation": "when_tempered",  # greedy here: one /generate per call
    }
    return SGLangModel(SGLangOptions(**{**defaults, **options}))


def test_5xx_then_recovery_succeeds_within_the_retry_budget(server: ServerProcess) -> None:
    model = _model(server.url)
    model.generate([PROMPT], QUICK)  # connect first, so only /generate meets the faults
    server.reset()
    server.faults(fail_next=2, fail_status=503)
    [[completion]] = model.generate([PROMPT], QUICK)
    assert completion.completion_tokens == 4
    stats = server.stats()
    assert stats["failed"] == 2
    assert stats["requests"]["/generate"] == 3  # 2 failures, then the success
    model.close()


def test_5xx_past_the_retry_budget_is_a_clear_error(server: ServerProcess) -> None:
    model = _model(server.url, max_retries=2)
    model.generate([PROMPT], QUICK)
    server.faults(fail_next=10, fail_status=500)
    with pytest.raises(BackendError) as caught:
        model.generate([PROMPT], QUICK)
    message = str(caught.value)
    assert f"{server.url}/generate" in message
    assert "3 attempt(s)" in message and "HTTP 500" in message
    assert server.stats()["failed"] == 3
    model.close()


def test_a_slow_server_meets_the_timeout_and_gets_no_copy_of_the_work(
    server: ServerProcess,
) -> None:
    model = _model(server.url, timeout_s=0.5, max_retries=3)
    model.generate([PROMPT], QUICK)
    server.reset()
    server.faults(delay_s=5.0)
    started = time.perf_counter()
    with pytest.raises(BackendError, match=r"timed out after 0\.5 s.*abandoned, not retried"):
        model.generate([PROMPT], QUICK)
    assert time.perf_counter() - started < 2.0  # one 0.5 s attempt, not the 5 s delay
    assert server.stats()["requests"]["/generate"] == 1  # the server still works on it: no retry
    model.close()


def test_a_trickling_answer_meets_the_deadline_of_the_whole_request(server: ServerProcess) -> None:
    model = _model(server.url, timeout_s=1.0, max_retries=3)
    model.generate([PROMPT], QUICK)
    server.reset()
    server.faults(trickle_next=5, trickle_every_s=0.1)  # a byte every 0.1 s: no read times out
    started = time.perf_counter()
    with pytest.raises(BackendError, match=r"timed out after 1 s"):
        model.generate([PROMPT], QUICK)
    assert time.perf_counter() - started < 3.0  # it trickles for a minute
    assert server.stats()["requests"]["/generate"] == 1
    model.close()


def test_an_oversized_answer_is_refused(server: ServerProcess) -> None:
    model = _model(server.url, max_response_mb=1.0)
    model.generate([PROMPT], QUICK)
    server.faults(huge_next=1, huge_mb=3.0)
    with pytest.raises(ProtocolError, match=r"larger than 1 MiB"):
        model.generate([PROMPT], QUICK)
    [[completion]] = model.generate([PROMPT], QUICK)  # the pool still works
    assert completion.completion_tokens == 4
    model.close()


def test_a_body_that_is_not_json_is_a_protocol_error_and_not_retried(
    server: ServerProcess,
) -> None:
    model = _model(server.url)
    model.generate([PROMPT], QUICK)
    server.reset()
    server.faults(malformed_next=1, malformed_kind="json")
    with pytest.raises(ProtocolError, match="not JSON"):
        model.generate([PROMPT], QUICK)
    assert server.stats()["requests"]["/generate"] == 1
    model.close()


def test_a_nan_log_probability_is_a_protocol_error(server: ServerProcess) -> None:
    model = _model(server.url)
    model.generate([PROMPT], QUICK)
    server.faults(malformed_next=1, malformed_kind="nan")
    with pytest.raises(ProtocolError, match="answered NaN where a number belongs"):
        model.generate([PROMPT], QUICK)
    model.close()


def test_json_of_the_wrong_shape_names_what_is_missing(server: ServerProcess) -> None:
    model = _model(server.url)
    model.generate([PROMPT], QUICK)
    server.faults(malformed_next=1, malformed_kind="schema")
    with pytest.raises(ProtocolError, match=r"expected 1 results .* got dict"):
        model.generate([PROMPT], QUICK)
    server.faults(malformed_next=1, malformed_kind="schema")
    fresh = _model(server.url)
    with pytest.raises(ProtocolError, match="lacks the field 'model_path'"):
        fresh.generate([PROMPT], QUICK)
    model.close()
    fresh.close()


def test_a_4xx_answer_is_not_retried(server: ServerProcess) -> None:
    model = _model(server.url)
    model.generate([PROMPT], QUICK)
    server.reset()
    too_long = Prompt("word " * 3000)
    with pytest.raises(HttpStatusError) as caught:
        model.generate([too_long], QUICK)
    assert caught.value.status == 400 and "context window" in caught.value.body
    assert server.stats()["requests"]["/generate"] == 1
    model.close()


def test_scoring_falls_back_to_prefill_without_a_tokenize_endpoint(server: ServerProcess) -> None:
    model = _model(server.url)
    [scored] = model.logprobs([PROMPT], ["First, add 2 and 3."])
    assert len(scored.token_ids) == len(scored.logprobs) > 3
    requests = server.stats()["requests"]
    assert requests.get("/v1/tokenize") == 1 and requests.get("/tokenize") == 1  # probed, 404
    [again] = model.logprobs([PROMPT], ["First, add 2 and 3."])
    assert again.logprobs == scored.logprobs
    assert server.stats()["requests"].get("/v1/tokenize") == 1  # probed once
    model.close()


def test_a_server_dying_mid_request_fails_after_the_retry_budget(tmp_path: Path) -> None:
    doomed = start_fake_sglang(tmp_path)
    try:
        model = _model(doomed.url, max_retries=2)
        model.generate([PROMPT], QUICK)
        doomed.faults(die_next=True)
        with pytest.raises(BackendError, match=r"3 attempt\(s\)"):
            model.generate([PROMPT], QUICK)
        assert not doomed.alive()
        model.close()
    finally:
        doomed.stop()


def test_a_server_killed_mid_search_fails_the_search(tmp_path: Path) -> None:
    doomed = start_fake_sglang(tmp_path)
    remote = {"backend": "sglang", "url": doomed.url, "max_retries": 2, "backoff_s": 0.05}
    config = {
        "draft": {**remote, "name": "draft"},
        "target": {**remote, "name": "target"},
        "reward": {"name": "judge", "model": "target"},
        "policy": {
            "name": "specs",
            "n": 2,
            "max_steps": 6,
            "max_step_tokens": 8,
            "temperature": 0.7,
            "tau_sw": 0.0,
        },
    }
    steps: list[StepRecord] = []

    def kill_after_first_step(step: StepRecord) -> None:
        steps.append(step)
        doomed.kill()

    try:
        with Specs.from_config(config) as specs, pytest.raises(BackendError) as caught:
            specs.solve(
                "Tom has 7 apples and buys 8 more. How many apples does he have?",
                on_step=kill_after_first_step,
            )
        assert doomed.url in str(caught.value) and "3 attempt(s)" in str(caught.value)
        assert len(steps) == 1 and not doomed.alive()
    finally:
        doomed.stop()

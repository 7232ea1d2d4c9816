"""Several base URLs and the concurrency limit, against two live protocol test double processes."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from specs_core.types import Prompt, SamplingParams

from servers.launch import ServerProcess, free_port, start_fake_sglang
from specs_sglang import SGLangModel, SGLangOptions

pytestmark = [pytest.mark.server, pytest.mark.llamacpp, pytest.mark.slow]

ONE_TOKEN = SamplingParams(temperature=0.0, max_tokens=1)
PROMPT = Prompt("What is 2 + 3?")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ...]]:
    logs = tmp_path_factory.mktemp("routing")
    a, b = start_fake_sglang(logs), start_fake_sglang(logs)
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(autouse=True)
def clean(pair: tuple[ServerProcess, ...]) -> None:
    for server in pair:
        server.reset()


def _model(**options: Any) -> SGLangModel:
    return SGLangModel(SGLangOptions(rescore_generation="when_tempered", backoff_s=0.05, **options))


def test_requests_go_round_robin_over_replicas(pair: tuple[ServerProcess, ...]) -> None:
    a, b = pair
    model = _model(urls=(a.url, b.url))
    try:
        results = [model.generate([PROMPT], ONE_TOKEN)[0][0].text for _ in range(4)]
        assert len(set(results)) == 1  # the replicas serve the same model
        served = [s.stats()["requests"] for s in pair]
        assert [r.get("/generate") for r in served] == [2, 2]
        assert sum(r.get("/get_model_info", 0) for r in served) == 1
    finally:
        model.close()


def test_a_dead_replica_is_skipped_by_the_retry(pair: tuple[ServerProcess, ...]) -> None:
    a, _ = pair
    dead = f"http://127.0.0.1:{free_port()}"
    model = _model(urls=(dead, a.url), max_retries=1)
    try:
        for _ in range(3):
            [[c]] = model.generate([PROMPT], ONE_TOKEN)
            assert c.completion_tokens == 1
        assert a.stats()["requests"]["/generate"] == 3
    finally:
        model.close()


@pytest.mark.parametrize("limit", [1, 3])
def test_the_concurrency_limit_bounds_requests_in_flight(
    pair: tuple[ServerProcess, ...], limit: int
) -> None:
    a, _ = pair
    model = _model(url=a.url, max_concurrency=limit)
    try:
        model.generate([PROMPT], ONE_TOKEN)  # connect before the clock matters
        a.reset()
        a.faults(delay_s=0.5)
        with ThreadPoolExecutor(max_workers=3) as pool:
            done = list(pool.map(lambda _: model.generate([PROMPT], ONE_TOKEN), range(3)))
        assert len(done) == 3
        assert a.stats()["max_in_flight"] == limit
    finally:
        model.close()

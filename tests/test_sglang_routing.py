"""Several base URLs (affinity, failover, a replica killed mid-run) and the concurrency limit,
against live protocol test double processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from specs_core import Specs
from specs_core.backend_kit.http import route_by
from specs_core.eval.results import ResultsLog
from specs_core.eval.runner import run_bench
from specs_core.eval.sweep import bench_spec
from specs_core.resolution import resolve_config
from specs_core.types import Prompt, SamplingParams

from eval_support import toy_problems, write_toy_dataset
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


def test_single_prompt_requests_give_the_batched_answers(pair: tuple[ServerProcess, ...]) -> None:
    a, _ = pair
    params = SamplingParams(n=2, temperature=0.7, max_tokens=6, seed=3)
    prompts = [PROMPT, Prompt("Name a color.")]
    batched, single = _model(url=a.url), _model(url=a.url, single_prompt=True)
    try:
        want = [[c.text for c in group] for group in batched.generate(prompts, params)]
        a.reset()
        got = [[c.text for c in group] for group in single.generate(prompts, params)]
        assert got == want
        assert a.stats()["requests"]["/generate"] >= 4  # one request per prompt and seed
        scored = single.logprobs(prompts, ["Five.", "Blue."])
        expected = batched.logprobs(prompts, ["Five.", "Blue."])
        for got_one, want_one in zip(scored, expected, strict=True):
            assert got_one.logprobs == pytest.approx(want_one.logprobs, abs=1e-5)
    finally:
        batched.close()
        single.close()


def test_a_searchs_requests_stick_to_one_replica(pair: tuple[ServerProcess, ...]) -> None:
    a, b = pair
    model = _model(urls=(a.url, b.url))
    questions = [f"Problem {i}: what is {i} + {i + 1}?" for i in range(12)]
    try:
        for q in questions:
            with route_by(q):  # what Specs.solve does for each problem
                for _ in range(3):
                    model.generate([Prompt(q)], ONE_TOKEN)
        served = [s.stats()["questions"] for s in pair]
        for q in questions:
            counts = [s.get(q, 0) for s in served]
            assert sorted(counts) == [0, 3], (q, counts)  # all three on one replica
            predicted = model._connect()[0].replica_for(q)  # type: ignore[attr-defined]
            assert counts[[a.url, b.url].index(predicted)] == 3
        assert all(served)  # the problems are spread over both
    finally:
        model.close()


def test_a_down_replica_hands_its_problems_over_and_gets_them_back(
    pair: tuple[ServerProcess, ...],
) -> None:
    a, _ = pair
    dead = f"http://127.0.0.1:{free_port()}"
    model = _model(urls=(dead, a.url), max_retries=1, replica_down_s=0.5)
    try:
        pool = model._connect()[0]  # type: ignore[attr-defined]
        time.sleep(0.6)  # connecting may have found the dead one already: let it be tried again
        mine = next(q for q in (f"question {i}" for i in range(100)) if pool.replica_for(q) == dead)
        with route_by(mine):
            model.generate([PROMPT], ONE_TOKEN)  # fails over to the live replica
        assert pool.replica_for(mine) == a.url  # skipped while it is down
        time.sleep(0.6)
        assert pool.replica_for(mine) == dead  # probed again after replica_down_s
    finally:
        model.close()


@pytest.fixture()
def doomed_pair(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    a, b = start_fake_sglang(tmp_path), start_fake_sglang(tmp_path)
    yield a, b
    a.stop()
    b.stop()


def test_a_replica_killed_mid_bench_loses_no_row(
    doomed_pair: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    a, b = doomed_pair
    config = {
        "target": {
            "backend": "sglang",
            "urls": [a.url, b.url],
            "max_retries": 2,
            "backoff_s": 0.05,
            "rescore_generation": "when_tempered",
        },
        "policy": {"name": "greedy", "max_solution_tokens": 16},
    }
    every = toy_problems(write_toy_dataset(tmp_path / "toy.jsonl", size=30))
    resolved = resolve_config(config, None, [])
    out = tmp_path / "run"
    with Specs(resolved) as specs:
        pool = specs.model("target")._connect()[0]  # type: ignore[attr-defined]
        on_a = [p for p in every if pool.replica_for(p.question) == a.url]
        on_b = [p for p in every if pool.replica_for(p.question) == b.url]
        assert len(on_a) >= 4 and len(on_b) >= 4
        problems = on_b[:4] + on_a[:4]  # a's problems come after the kill
        spec = bench_spec(resolved, "toy", problems, limit=None, sample_seed=0)

        def kill_after_two_rows() -> None:
            while (
                not (out / "results.jsonl").exists()
                or len((out / "results.jsonl").read_text().splitlines()) < 2
            ):
                time.sleep(0.05)
            a.kill()

        killer = threading.Thread(target=kill_after_two_rows)
        killer.start()
        summary = run_bench(specs, spec, out, progress=False, concurrency=2, warmup=False)
        killer.join(30)
    rows = ResultsLog(out / "results.jsonl").load()
    assert not a.alive() and summary["complete"]
    assert sorted(r["id"] for r in rows) == sorted(p.id for p in problems)
    assert all(r["error"] is None for r in rows)
    served_by_b = set(b.stats()["questions"])
    assert served_by_b >= {p.question for p in problems}  # a's failed over to b

"""``specs serve`` as a real process on 127.0.0.1, called with the real ``openai`` client and
LangChain's ``ChatOpenAI`` (toy backend: deterministic, so answers can be checked exactly)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serve_support import TOY_CONFIG, SpecsServer, start_specs_serve

openai = pytest.importorskip("openai")
pytestmark = [pytest.mark.server]

KEY = "sk-test-7f3a91c2"
PAIRS = ((2, 3), (4, 5), (7, 1), (6, 6), (9, 2), (3, 8), (5, 5), (1, 1))
QUESTIONS = [f"What is {a} + {b}?" for a, b in PAIRS]
# the toy models sleep this long per token: a search takes seconds and a step about one
SLOW = ("--set", "target.ms_per_token=50", "--set", "draft.ms_per_token=50")


def expected(question: str, policy: str | None = None, **options: object) -> str:
    """The answer text an in-process search gives for ``question`` (same config, same seed)."""
    from specs_core import Specs

    with Specs.from_config(TOY_CONFIG) as specs:
        return specs.solve(question, policy=policy, options=options or None).text


@pytest.fixture(scope="module")
def server() -> Iterator[SpecsServer]:
    """A server that requires the key ``KEY``."""
    running = start_specs_serve("--max-running", "4", env={"SPECS_API_KEY": KEY})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: SpecsServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture()
def slow_server() -> Iterator[SpecsServer]:
    """One search at a time, one request waiting, toy models that take seconds a search."""
    running = start_specs_serve("--max-running", "1", "--max-waiting", "1", *SLOW)
    yield running
    running.stop()


def test_models_lists_the_config_and_its_policies(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "toy"  # the config file's name: its own policy and options
    assert {"specs", "beam_search", "best_of_n", "majority", "greedy"} <= set(ids)


def test_chat_completion_is_the_search_answer(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="toy", messages=[{"role": "user", "content": QUESTIONS[0]}]
    )
    assert reply.choices[0].message.content == expected(QUESTIONS[0])
    assert reply.choices[0].finish_reason == "stop"
    extension = reply.model_extra["specs"]
    assert extension["policy"] == "specs" and extension["answer"] == "5"
    generated = sum(t["generated"] for t in extension["tokens"].values())
    assert reply.usage.completion_tokens == generated > 0
    assert extension["latency_s"]["total"] > 0


def test_the_model_name_picks_the_policy_and_extra_body_sets_options(
    client: openai.OpenAI,
) -> None:
    reply = client.chat.completions.create(
        model="beam_search",
        messages=[{"role": "user", "content": QUESTIONS[1]}],
        extra_body={"specs": {"n": 2}},
    )
    assert reply.model_extra["specs"]["policy"] == "beam_search"
    assert reply.choices[0].message.content == expected(QUESTIONS[1], "beam_search", n=2)


def test_text_completion(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="greedy", prompt=QUESTIONS[2])
    assert reply.choices[0].text == expected(QUESTIONS[2], "greedy")


def test_streaming_sends_one_chunk_per_step_then_usage(client: openai.OpenAI) -> None:
    linear = {"on_finished": "stop"}  # the committed steps are the answer
    chunks = list(
        client.chat.completions.create(
            model="specs",
            messages=[{"role": "user", "content": QUESTIONS[3]}],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"specs": linear},
        )
    )
    steps = [c for c in chunks if c.choices and c.choices[0].finish_reason is None]
    assert len(steps) >= 2
    assert all(c.model_extra["specs"]["source"] in ("draft", "target") for c in steps)
    assert [c.model_extra["specs"]["step"] for c in steps] == list(range(len(steps)))
    assert all(c.choices[0].delta.content == c.model_extra["specs"]["text"] for c in steps)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected(QUESTIONS[3], "specs", **linear)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("policy", "options"),
    [("specs", {}), ("beam_search", {"n": 4, "beam_width": 2, "on_finished": "stop"})],
)
def test_a_search_that_chooses_its_answer_at_the_end_streams_steps_as_reasoning(
    client: openai.OpenAI, policy: str, options: dict[str, object]
) -> None:
    chunks = list(
        client.chat.completions.create(
            model=policy,
            messages=[{"role": "user", "content": QUESTIONS[4]}],
            stream=True,
            extra_body={"specs": options},
        )
    )
    steps, last = chunks[:-1], chunks[-1]
    assert steps and all(not (c.choices[0].delta.content or "") for c in steps)
    reasoning = [c.choices[0].delta.model_extra["reasoning_content"] for c in steps]
    assert reasoning == [c.model_extra["specs"]["text"] for c in steps]
    assert last.choices[0].delta.content == expected(QUESTIONS[4], policy, **options)


def test_eight_concurrent_requests_get_their_own_answers(server: SpecsServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120)

    def ask(question: str) -> str | None:
        reply = client.chat.completions.create(
            model="specs", messages=[{"role": "user", "content": question}]
        )
        return reply.choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, QUESTIONS))
    assert answers == [expected(q, "specs") for q in QUESTIONS]


def test_stop_strings_end_the_answer_and_the_search(client: openai.OpenAI) -> None:
    linear = {"on_finished": "stop"}
    full = expected(QUESTIONS[0], None, **linear)
    stop = full.split("\n\n")[1][:6]  # the start of the second step
    assert stop not in full.split("\n\n")[0]
    for stream in (False, True):
        kwargs = {
            "model": "toy",
            "messages": [{"role": "user", "content": QUESTIONS[0]}],
            "stop": [stop],
            "extra_body": {"specs": linear},
        }
        if stream:
            chunks = list(client.chat.completions.create(**kwargs, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            finish = chunks[-1].choices[0].finish_reason
            extension = chunks[-1].model_extra["specs"]
        else:
            reply = client.chat.completions.create(**kwargs)
            text, finish = reply.choices[0].message.content, reply.choices[0].finish_reason
            extension = reply.model_extra["specs"]
        assert text == full[: full.index(stop)]
        assert finish == "stop"
        assert extension["stop_reason"] == "stopped" and extension["steps"] == 2


def test_a_stop_string_cuts_an_answer_chosen_at_the_end(client: openai.OpenAI) -> None:
    full = expected(QUESTIONS[0])
    stop = full.split("\n\n")[1][:6]
    reply = client.chat.completions.create(
        model="toy", messages=[{"role": "user", "content": QUESTIONS[0]}], stop=stop
    )
    assert reply.choices[0].message.content == full[: full.index(stop)]
    assert reply.choices[0].finish_reason == "stop"


def test_max_tokens_bounds_what_the_search_generates(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="toy", messages=[{"role": "user", "content": QUESTIONS[0]}], max_tokens=60
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.model_extra["specs"]["stop_reason"] == "token_limit"
    assert 60 <= reply.usage.completion_tokens < 60 + 80  # stops within one model call


@pytest.mark.parametrize(
    ("change", "status", "names"),
    [
        ({"model": "no-such-policy"}, 404, "no-such-policy"),
        ({"extra_body": {"specs": {"tau_sw": "high"}}}, 400, "tau_sw"),
        ({"extra_body": {"specs": {"no_such_option": 1}}}, 400, "no_such_option"),
        ({"n": 2}, 400, "n: only 1 is supported"),
        ({"temperature": 3.5}, 400, "temperature"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools"),
        ({"logprobs": True}, 400, "logprobs"),
        ({"messages": [{"role": "system", "content": "Be brief."}]}, 400, "no user message"),
        ({"messages": [{"role": "user", "content": "  "}]}, 400, "empty"),
        ({"extra_body": {"frobnicate": 1}}, 400, "frobnicate"),
    ],
)
def test_bad_requests_get_a_clear_error(
    client: openai.OpenAI, change: dict[str, object], status: int, names: str
) -> None:
    request: dict[str, object] = {
        "model": "toy",
        "messages": [{"role": "user", "content": QUESTIONS[0]}],
        **change,
    }
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**request)  # type: ignore[call-overload]
    assert caught.value.status_code == status
    assert names in caught.value.message


def test_a_model_can_be_retrieved_and_errors_name_the_field(client: openai.OpenAI) -> None:
    assert client.models.retrieve("beam_search").id == "beam_search"
    with pytest.raises(openai.NotFoundError, match="offers toy"):
        client.models.retrieve("no-such-policy")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="toy", messages=[{"role": "user", "content": "1+1?"}], extra_body={"seed_x": 1}
        )
    assert caught.value.param == "seed_x" and "`specs` field" in caught.value.message


def test_the_api_key_is_required_and_never_logged(server: SpecsServer) -> None:
    anonymous = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
    answer = httpx.post(f"{server.base_url}/chat/completions", json={}, timeout=10)
    assert answer.status_code == 401 and "SPECS_API_KEY" in answer.json()["error"]["message"]
    assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    assert KEY not in server.log()


def test_metrics_count_requests_and_steps(server: SpecsServer, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="greedy", messages=[{"role": "user", "content": "1+1?"}])
    text = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    ).text
    assert "# TYPE specs_request_latency_seconds histogram" in text
    counted = 'specs_requests_total{endpoint="/v1/chat/completions",model="greedy",status="200"}'
    assert counted in text
    assert server.metric('specs_steps_total{source="target"}', KEY) > 0
    assert server.metric("specs_request_latency_seconds_count", KEY) >= 1
    assert "specs_queue_depth 0" in text


def test_a_full_queue_answers_429_with_retry_after(slow_server: SpecsServer) -> None:
    client = openai.OpenAI(base_url=slow_server.base_url, api_key="-", max_retries=0, timeout=120)

    def ask(i: int) -> object:
        try:
            return client.chat.completions.create(
                model="toy", messages=[{"role": "user", "content": QUESTIONS[i]}]
            )
        except openai.RateLimitError as e:
            return e

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(ask, 0)
        time.sleep(1.0)  # the first runs
        second = pool.submit(ask, 1)
        time.sleep(0.5)  # the second waits
        third = pool.submit(ask, 2).result()
        assert isinstance(third, openai.RateLimitError)
        assert int(third.response.headers["Retry-After"]) >= 1
        assert "busy" in third.message
        assert not isinstance(first.result(), Exception)
        assert not isinstance(second.result(), Exception)


def test_a_client_that_disconnects_mid_stream_frees_the_model(slow_server: SpecsServer) -> None:
    body = {
        "model": "toy",
        "messages": [{"role": "user", "content": QUESTIONS[0]}],
        "stream": True,
    }
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", f"{slow_server.base_url}/chat/completions", json=body) as answer,
    ):
        for line in answer.iter_lines():
            if line.startswith("data: "):
                assert "choices" in json.loads(line[6:])
                break  # one step read: hang up
    hung_up = time.monotonic()
    while slow_server.metric("specs_searches_running") and time.monotonic() < hung_up + 30:
        time.sleep(0.1)
    # the whole search takes ~10 s more; cancelled, it ends with its model call in flight
    assert slow_server.metric("specs_searches_running") == 0
    assert time.monotonic() - hung_up < 4
    assert slow_server.metric('specs_steps_total{source="target"}') <= 2
    cancelled = 'specs_requests_total{endpoint="/v1/chat/completions",model="toy",status="499"}'
    assert slow_server.metric(cancelled) == 1
    client = openai.OpenAI(base_url=slow_server.base_url, api_key="-", max_retries=0)
    reply = client.completions.create(model="toy", prompt=QUESTIONS[1], max_tokens=40)
    assert reply.choices[0].finish_reason == "length"


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(slow_server: SpecsServer) -> None:
    client = openai.OpenAI(base_url=slow_server.base_url, api_key="-", max_retries=0, timeout=60)
    result: dict[str, object] = {}

    def ask() -> None:
        reply = client.chat.completions.create(
            model="toy", messages=[{"role": "user", "content": QUESTIONS[0]}]
        )
        result["text"] = reply.choices[0].message.content

    asking = threading.Thread(target=ask)
    asking.start()
    time.sleep(1.5)
    slow_server.process.send_signal(signal.SIGTERM)
    asking.join(60)
    assert slow_server.process.wait(timeout=60) == 0
    assert result["text"] == expected(QUESTIONS[0])


def test_langchain_chat_openai_against_specs_serve(server: SpecsServer) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    chat = langchain_openai.ChatOpenAI(
        base_url=server.base_url, api_key=KEY, model="specs", max_retries=0, stream_usage=True
    )
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | chat | StrOutputParser()
    assert chain.invoke({"question": QUESTIONS[5]}) == expected(QUESTIONS[5], "specs")
    chunks = list(chat.stream(QUESTIONS[6]))
    joined = chunks[0]
    for chunk in chunks[1:]:
        joined += chunk
    assert joined.content == expected(QUESTIONS[6], "specs")
    assert joined.usage_metadata is not None and joined.usage_metadata["output_tokens"] > 0


def test_engines_that_serialise_calls_serve_one_search_at_a_time() -> None:
    from specs_core import Specs

    from specs_serve.cli import default_max_running

    with Specs.from_config(TOY_CONFIG) as specs:
        assert default_max_running(specs) == 4  # the toy models interleave reproducibly
    smollm2 = TOY_CONFIG.parent / "smollm2.yaml"
    with Specs.from_config(smollm2) as specs:  # llama.cpp: built, not loaded
        assert default_max_running(specs) == 1

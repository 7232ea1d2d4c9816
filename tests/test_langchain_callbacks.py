"""Callbacks: the run's start/end/error and one custom event per committed step, received by real
LangChain callback handlers and by astream_events."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from specs_core.errors import BackendError
from specs_core.plugins import build_registry

from langchain_support import AsyncRecorder, GatedPlugin, GatedPolicy, Recorder, toy_config
from specs_langchain import RESULT_EVENT, STEP_EVENT, SpecsRunnable

QUESTION = "What is 3 + 8?"

STEP_KEYS = {
    "index",
    "beam",
    "source",
    "text",
    "reward",
    "drafted",
    "accepted",
    "decision",
    "switched_to_draft",
    "candidates",
}
CANDIDATE_KEYS = {
    "text",
    "source",
    "finished",
    "draft_logprob",
    "target_logprob",
    "reward",
    "score",
    "accepted",
    "draft_prefix_tokens",
    "duplicate",
    "tokens",
}


@pytest.fixture(scope="module")
def runnable():
    """SPECS that drafts every step after the target's first and rejects every draft
    (tau_sw below any reward, tau_acc above any score), so each step has scored drafts."""
    with SpecsRunnable.from_config(toy_config(tau_sw=-1.0, tau_acc=1e9)) as r:
        yield r


def test_invoke_in_a_chain_reports_start_steps_result_end(runnable):
    expected = runnable.model_copy(update={"output": "result"}).invoke(QUESTION)
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | runnable
    chain = chain | StrOutputParser()
    recorder = Recorder()
    answer = chain.invoke({"question": QUESTION}, config={"callbacks": [recorder]})

    (start,) = recorder.of("start", "SpecsRunnable")
    (end,) = recorder.of("end", "SpecsRunnable")
    assert end["outputs"] == answer
    steps = recorder.of(STEP_EVENT)
    (result,) = recorder.of(RESULT_EVENT)
    # every event belongs to the SpecsRunnable run, in order: start, steps, result, end
    assert {e["run_id"] for e in [*steps, result, end]} == {start["run_id"]}
    kinds = [k for k, d in recorder.events if d.get("run_id") == start["run_id"]]
    assert kinds == ["start", *[STEP_EVENT] * len(steps), RESULT_EVENT, "end"]

    payloads = [s["data"] for s in steps]
    assert [p["decision"] for p in payloads] == [s.decision for s in expected.steps]
    assert len(payloads) >= 2
    assert [p["decision"] for p in payloads] == ["target"] + ["draft_rejected"] * (
        len(payloads) - 1
    )
    assert all(set(p) == STEP_KEYS for p in payloads)
    for rejected in payloads[1:]:
        assert rejected["drafted"] is True and rejected["accepted"] is False
        assert rejected["source"] == "target"  # the target rewrote the step
        drafts = [c for c in rejected["candidates"] if c["source"] == "draft"]
        assert len(drafts) == 4
        for c in drafts:
            assert set(c) == CANDIDATE_KEYS and c["accepted"] is False
            assert None not in (c["draft_logprob"], c["target_logprob"], c["reward"], c["score"])
            assert c["tokens"] > 0
            assert c["score"] == pytest.approx(
                c["target_logprob"] - c["draft_logprob"] + 10.0 * c["reward"]
            )
        assert any(c["source"] == "target" and c["accepted"] for c in rejected["candidates"])

    summary = result["data"]
    assert summary["answer"] == answer == expected.answer
    assert summary["rejected_draft_steps"] == len(payloads) - 1
    assert set(summary["tokens"]) == {"toy-draft", "toy-target"}
    assert summary["latency_s"]["total"] > 0
    assert "steps" not in summary


def test_stream_reports_the_same_events_and_output(runnable):
    recorder = Recorder()
    chunks = list(runnable.stream(QUESTION, config={"callbacks": [recorder]}))
    steps = recorder.of(STEP_EVENT)
    assert [s["data"]["text"] for s in steps] == [str(c) for c in chunks[:-1]]
    (end,) = recorder.of("end", "SpecsRunnable")
    assert end["outputs"] == chunks[-1]  # the folded stream is the final output
    assert chunks[-1] == runnable.invoke(QUESTION)


def test_async_handler_receives_step_events(runnable):
    handler = AsyncRecorder()

    async def run() -> list:
        return [c async for c in runnable.astream(QUESTION, config={"callbacks": [handler]})]

    chunks = asyncio.run(run())
    kinds = [k for k, _ in handler.events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    steps = [d for k, d in handler.events if k == STEP_EVENT]
    assert [d["text"] for d in steps] == [str(c) for c in chunks[:-1]]
    assert handler.events[-1] == ("end", chunks[-1])


def test_astream_events_shows_the_search(runnable):
    async def run() -> list:
        return [e async for e in runnable.astream_events(QUESTION, version="v2")]

    events = asyncio.run(run())
    custom = [e for e in events if e["event"] == "on_custom_event"]
    steps = len(custom) - 1
    assert steps >= 2
    assert [e["name"] for e in custom] == [STEP_EVENT] * steps + [RESULT_EVENT]
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream"]
    assert [str(c) for c in streamed[:-1]] == [e["data"]["text"] for e in custom[:-1]]
    (end,) = [e for e in events if e["event"] == "on_chain_end"]
    assert end["data"]["output"] == custom[-1]["data"]["answer"]


def test_a_failing_search_reports_on_chain_error():
    GatedPolicy.reset()
    registry = build_registry(extra_plugins=[GatedPlugin])
    config = {"target": {"backend": "toy"}, "policy": {"name": "gated", "fail_at": 1}}
    recorder = Recorder()
    with SpecsRunnable.from_config(config, registry=registry) as failing:
        GatedPolicy.permits.release()
        with pytest.raises(BackendError):
            failing.invoke(QUESTION, config={"callbacks": [recorder]})
    kinds = [k for k, _ in recorder.events]
    assert kinds == ["start", STEP_EVENT, "error"]
    assert isinstance(recorder.of("error")[0]["error"], BackendError)

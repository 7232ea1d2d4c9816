"""SpecsRunnable in real LCEL chains on the toy backend: inputs, outputs, stream/invoke and async
parity, and clear errors for bad input."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import RunnableLambda
from specs_core import Specs
from specs_core.errors import BackendError, InvalidInputError
from specs_core.plugins import build_registry

from langchain_support import (
    QUESTION,
    QUESTIONS,
    GatedPlugin,
    GatedPolicy,
    comparable,
    toy_config,
)
from specs_langchain import SpecsOutput, SpecsRunnable, StepChunk


@pytest.fixture(scope="module")
def runnable():
    with SpecsRunnable.from_config(toy_config()) as r:
        yield r


# -- outputs --------------------------------------------------------------------------------


def test_answer_matches_the_facade(runnable):
    expected = Specs.from_config(toy_config()).solve(QUESTION)
    assert expected.answer is not None
    assert runnable.invoke(QUESTION) == expected.answer
    assert runnable.with_config(tags=["x"]).invoke(QUESTION) == expected.answer


def test_result_and_solution_outputs(runnable):
    result = runnable.model_copy(update={"output": "result"}).invoke(QUESTION)
    solution = runnable.model_copy(update={"output": "solution"}).invoke(QUESTION)
    assert isinstance(result, SpecsOutput)
    assert solution == result.text
    assert result.answer == runnable.invoke(QUESTION)
    assert result.policy == "specs"
    assert set(result.latency_s) >= {"draft_generate", "target_generate", "reward", "total"}
    assert set(result.tokens) == {"toy-draft", "toy-target"}
    assert result.tokens["toy-target"].generated > 0
    assert [s.index for s in result.steps] == list(range(len(result.steps)))
    assert result.draft_steps + result.target_steps == len(result.steps)
    assert "".join(result.solution_steps) == result.text


def test_yaml_config(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(
        "draft: {backend: toy, variant: draft}\ntarget: {backend: toy, variant: target}\n"
        "reward: {name: toy}\npolicy: {name: specs, n: 4}\n",
        encoding="utf-8",
    )
    with (
        SpecsRunnable.from_config(path) as from_yaml,
        SpecsRunnable.from_config(toy_config()) as from_dict,
    ):
        assert from_yaml.invoke(QUESTION) == from_dict.invoke(QUESTION)


# -- inputs ---------------------------------------------------------------------------------


def test_every_input_form_asks_the_same_question(runnable):
    expected = runnable.invoke(QUESTION)
    chat = ChatPromptTemplate.from_messages([("human", "{question}")])
    text = PromptTemplate.from_template("{question}")
    forms = [
        {"question": QUESTION, "other": "left for other steps"},
        chat.invoke({"question": QUESTION}),
        text.invoke({"question": QUESTION}),
        [HumanMessage("an earlier turn"), AIMessage("a reply"), HumanMessage(QUESTION)],
        [("human", QUESTION)],
        HumanMessage(QUESTION),
    ]
    assert [runnable.invoke(form) for form in forms] == [expected] * len(forms)


def test_system_message_becomes_the_system_prompt(runnable):
    system = "Answer tersely."
    expected = runnable.specs.solve(QUESTION, options={"n": 4, "system_prompt": system})
    default = runnable.model_copy(update={"output": "solution"}).invoke(QUESTION)
    prompt = ChatPromptTemplate.from_messages([("system", system), ("human", "{question}")])
    chain = prompt | runnable.model_copy(update={"output": "solution"})
    assert chain.invoke({"question": QUESTION}) == expected.text
    assert (
        runnable.model_copy(update={"output": "solution"}).invoke(
            {"question": QUESTION, "system": system}
        )
        == expected.text
    )
    assert expected.text != default  # the system prompt reached the model


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "question is empty"),
        ("   \n", "question is empty"),
        ({"question": ""}, "question is empty"),
        ({"problem": QUESTION}, "needs a 'question' key"),
        ({"question": 3}, "must be a string"),
        ([SystemMessage("be brief"), AIMessage("hello")], "no human message"),
        ([], "no human message"),
        ([HumanMessage("  ")], "question is empty"),
        (42, "unsupported input of type int"),
    ],
)
def test_bad_input_raises_a_clear_error(runnable, bad, message):
    with pytest.raises(InvalidInputError, match=message):
        runnable.invoke(bad)
    with pytest.raises(InvalidInputError, match=message):
        list(runnable.stream(bad))


def test_bad_input_in_a_chain_reaches_on_chain_error(runnable):
    from langchain_support import Recorder

    prompt = ChatPromptTemplate.from_messages([("system", "{question}")])
    recorder = Recorder()
    with pytest.raises(InvalidInputError, match="no human message"):
        (prompt | runnable).invoke({"question": QUESTION}, config={"callbacks": [recorder]})
    errors = recorder.of("error", "SpecsRunnable")
    assert len(errors) == 1 and isinstance(errors[0]["error"], InvalidInputError)


def test_call_keyword_arguments_are_rejected(runnable):
    with pytest.raises(InvalidInputError, match="no call keyword arguments"):
        runnable.invoke(QUESTION, n=3)


# -- LCEL composition and stream/invoke parity ------------------------------------------------


def test_prompt_runnable_parser_chain(runnable):
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    chain = prompt | runnable | StrOutputParser()
    answer = chain.invoke({"question": QUESTION})
    assert answer == runnable.invoke(QUESTION)
    streamed = list(chain.stream({"question": QUESTION}))
    assert streamed[-1] == answer
    steps = runnable.model_copy(update={"output": "result"}).invoke(QUESTION).steps
    assert streamed[:-1] == [s.text for s in steps]


def test_stream_yields_steps_then_the_same_final_output(runnable):
    as_result = runnable.model_copy(update={"output": "result"})
    chunks = list(as_result.stream(QUESTION))
    final = as_result.invoke(QUESTION)
    *steps, last = chunks
    assert isinstance(last, SpecsOutput)
    assert comparable(last) == comparable(final)
    assert all(isinstance(c, StepChunk) for c in steps)
    assert [c.step for c in steps] == list(final.steps)
    assert "".join(steps) == final.text
    assert list(runnable.stream(QUESTION))[-1] == runnable.invoke(QUESTION)


def test_a_non_streaming_parser_receives_the_final_output(runnable):
    """LangChain folds non-addable chunks to the last one: the parser sees only the answer."""
    seen: list[object] = []

    def parse(value: object) -> int:
        seen.append(value)
        return int(str(value))

    chain = runnable | RunnableLambda(parse)
    assert list(chain.stream(QUESTION)) == [chain.invoke(QUESTION)]
    assert seen == [runnable.invoke(QUESTION)] * 2


def test_steps_are_streamed_while_the_search_runs():
    """The first step reaches the consumer before the policy may commit the second one."""
    GatedPolicy.reset()
    registry = build_registry(extra_plugins=[GatedPlugin])
    config = {"target": {"backend": "toy"}, "policy": {"name": "gated", "steps": 3}}
    with SpecsRunnable.from_config(config, registry=registry) as gated:
        stream = gated.stream(QUESTION)
        first = next(stream)
        assert isinstance(first, StepChunk) and first.step.index == 0
        assert GatedPolicy.committed == [0] and not GatedPolicy.state["finished"]
        GatedPolicy.permits.release(2)
        rest = list(stream)
    assert [str(c) for c in rest] == ["step 1\n\n", "step 2\n\n", "5"]
    assert GatedPolicy.state["finished"]


def test_closing_the_stream_stops_the_search():
    GatedPolicy.reset()
    registry = build_registry(extra_plugins=[GatedPlugin])
    config = {"target": {"backend": "toy"}, "policy": {"name": "gated", "steps": 50}}
    done = threading.Event()

    def allow_steps() -> None:
        while not done.is_set():
            GatedPolicy.permits.release()
            done.wait(0.05)

    with SpecsRunnable.from_config(config, registry=registry) as gated:
        stream = gated.stream(QUESTION)
        next(stream)
        helper = threading.Thread(target=allow_steps)
        helper.start()
        try:
            stream.close()  # returns once the worker thread has ended
        finally:
            done.set()
            helper.join()
    assert GatedPolicy.state["stopped"] and not GatedPolicy.state["finished"]
    assert len(GatedPolicy.committed) < 50
    assert not [t for t in threading.enumerate() if t.name == "specs-solve"]


def test_an_error_in_the_search_reaches_the_caller():
    GatedPolicy.reset()
    registry = build_registry(extra_plugins=[GatedPlugin])
    config = {"target": {"backend": "toy"}, "policy": {"name": "gated", "fail_at": 0}}
    with SpecsRunnable.from_config(config, registry=registry) as failing:
        with pytest.raises(BackendError, match="engine failed at step 0"):
            failing.invoke(QUESTION)
        with pytest.raises(BackendError, match="engine failed at step 0"):
            asyncio.run(failing.ainvoke(QUESTION))


# -- async parity ---------------------------------------------------------------------------


def test_async_forms_match_the_sync_forms(runnable):
    as_result = runnable.model_copy(update={"output": "result"})
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    chain = prompt | runnable | StrOutputParser()

    async def run_all() -> tuple:
        ainvoked = await runnable.ainvoke(QUESTION)
        astreamed = [c async for c in as_result.astream(QUESTION)]
        abatched = await runnable.abatch(list(QUESTIONS))
        achain = [c async for c in chain.astream({"question": QUESTION})]
        return ainvoked, astreamed, abatched, achain

    ainvoked, astreamed, abatched, achain = asyncio.run(run_all())
    assert ainvoked == runnable.invoke(QUESTION)
    synced = list(as_result.stream(QUESTION))
    assert [str(c) for c in astreamed[:-1]] == [str(c) for c in synced[:-1]]
    assert [c.step for c in astreamed[:-1]] == [c.step for c in synced[:-1]]
    assert comparable(astreamed[-1]) == comparable(synced[-1])
    assert abatched == runnable.batch(list(QUESTIONS))
    assert achain == list(chain.stream({"question": QUESTION}))


def test_package_imports_without_langchain_core():
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "import specs_langchain\n"
        "from specs_core.errors import BackendUnavailableError\n"
        "try:\n"
        "    specs_langchain.SpecsRunnable\n"
        "except BackendUnavailableError as e:\n"
        "    print('unavailable:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "unavailable:" in out.stdout and "specs-tts[langchain]" in out.stdout

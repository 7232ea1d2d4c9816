"""ChatSpecs on the toy models: what a chat model's user relies on beyond the standard suites."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel
from specs_core import Specs
from specs_core.errors import ConfigError, InvalidInputError

from specs_langchain import ChatSpecs
from specs_langchain.chat_model import _structured_parser, last_json_object

TOY = Path(__file__).resolve().parents[1] / "examples" / "configs" / "toy.yaml"
QUESTION = "What is 2 + 3?"


def solve(question: str = QUESTION, policy: str | None = None, **options: object) -> str:
    with Specs.from_config(TOY) as specs:
        return specs.solve(question, policy=policy, options=options or None).text


def joined(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    return full


def test_invoke_answers_with_the_search_its_usage_and_summary() -> None:
    chat = ChatSpecs(config=str(TOY))
    message = chat.invoke(QUESTION)
    assert message.content == solve()
    summary = message.response_metadata["specs"]
    assert summary["policy"] == "specs" and summary["answer"] == "5"
    assert message.response_metadata["model_name"] == "specs"
    generated = sum(t["generated"] for t in summary["tokens"].values())
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == generated
    steps = message.response_metadata["specs_steps"]
    assert [s["step"] for s in steps] == list(range(summary["steps"]))


def test_steps_of_an_answer_chosen_at_the_end_stream_as_reasoning() -> None:
    chunks = list(ChatSpecs(config=str(TOY)).stream(QUESTION))
    steps, last = chunks[:-1], chunks[-1]
    assert all(c.content == "" and c.additional_kwargs["reasoning_content"] for c in steps)
    assert last.chunk_position == "last" and last.content == solve()


def test_a_linear_search_streams_its_answer_step_by_step() -> None:
    chat = ChatSpecs(config=str(TOY), policy_options={"on_finished": "stop"})
    chunks = list(chat.stream(QUESTION))
    assert sum(1 for c in chunks if c.content) >= 2
    assert joined(chunks).content == solve(on_finished="stop")


def test_stop_cuts_the_answer() -> None:
    full = solve()
    stop = "\\boxed"
    message = ChatSpecs(config=str(TOY)).invoke(QUESTION, stop=[stop])
    assert message.content == full[: full.index(stop)]
    bound = ChatSpecs(config=str(TOY), stop=[stop]).invoke(QUESTION)
    assert bound.content == message.content


def test_a_per_call_model_picks_the_policy_and_a_system_message_the_prompt() -> None:
    chat = ChatSpecs(config=str(TOY))
    message = chat.invoke(QUESTION, model="beam_search")
    assert message.response_metadata["specs"]["policy"] == "beam_search"
    assert message.content == solve(policy="beam_search")
    system = "Answer in one line."
    with_system = chat.invoke([SystemMessage(system), HumanMessage(QUESTION)])
    assert with_system.content == solve(system_prompt=system)


def test_it_goes_in_a_chain_and_shares_loaded_models() -> None:
    with Specs.from_config(TOY) as specs:
        chat = ChatSpecs(specs=specs, model="greedy")
        chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | chat | StrOutputParser()
        assert chain.invoke({"q": QUESTION}) == specs.solve(QUESTION, policy="greedy").text
        assert chain.batch([{"q": QUESTION}, {"q": "What is 4 + 5?"}]) == [
            specs.solve(q, policy="greedy").text for q in (QUESTION, "What is 4 + 5?")
        ]


async def test_async_calls_give_the_same_answer() -> None:
    chat = ChatSpecs(config=str(TOY))
    assert (await chat.ainvoke(QUESTION)).content == solve()
    chunks = [c async for c in chat.astream(QUESTION)]
    assert joined(chunks).content == solve()


def test_wrong_options_are_refused_clearly() -> None:
    chat = ChatSpecs(config=str(TOY))
    with pytest.raises(InvalidInputError, match="top_k"):
        chat.invoke(QUESTION, top_k=3)
    with pytest.raises(ConfigError, match="no_such"):  # at construction, before any model loads
        ChatSpecs(config=str(TOY), policy_options={"no_such": 1})
    with pytest.raises(NotImplementedError, match="cannot call tools"):
        chat.bind_tools([])
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(InvalidInputError, match="image_url content"):
        chat.invoke([HumanMessage(content=[{"type": "text", "text": QUESTION}, image])])
    with pytest.raises(ValueError, match="api_key"):
        ChatSpecs(config=str(TOY), api_key="x")  # type: ignore[call-arg]


def test_max_tokens_ends_the_search() -> None:
    message = ChatSpecs(config=str(TOY), max_tokens=60).invoke(QUESTION)
    assert message.response_metadata["specs"]["stop_reason"] == "token_limit"
    assert message.response_metadata["finish_reason"] == "length"


class Sum(BaseModel):
    """The sum asked for."""

    total: int


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ('2 + 3 = 5.\n\nTherefore {"total": 5}', {"total": 5}),
        ('{"total": 1} then {"total": 5}', {"total": 5}),
        ('{"outer": {"total": 5}} and {"total": 6} {broken', {"total": 6}),
        ('```json\n{"total": 7}\n```', {"total": 7}),
    ],
)
def test_the_last_json_object_of_an_answer_is_found(text: str, parsed: dict[str, int]) -> None:
    assert last_json_object(text) == parsed


def test_structured_output_asks_the_search_for_the_schema_and_parses_its_answer() -> None:
    chat = ChatSpecs(config=str(TOY))
    structured = chat.with_structured_output(Sum, include_raw=True)
    out = structured.invoke(QUESTION)
    # the toy model writes arithmetic-looking words, not JSON: the failure is reported
    assert isinstance(out["parsing_error"], OutputParserException) and out["parsed"] is None
    # the schema reached the search: the system prompt changed, and so did the toy's answer
    schema_prompt = out["raw"].content
    assert schema_prompt and schema_prompt != chat.invoke(QUESTION).content
    with pytest.raises(OutputParserException, match="no JSON object"):
        chat.with_structured_output(Sum).invoke(QUESTION)
    parse = _structured_parser(Sum)
    assert parse.invoke(AIMessage('so 5.\n\n{"total": 5}')) == Sum(total=5)
    with pytest.raises(OutputParserException, match="does not fit Sum"):
        parse.invoke(AIMessage('{"total": "five"}'))
    with pytest.raises(NotImplementedError, match="json_mode"):
        chat.with_structured_output(Sum, method="function_calling")

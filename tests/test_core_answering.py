"""AnswerStream and StopScanner: a search as answer events, on the toy models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from specs_core import Specs
from specs_core.answering import AnswerEnd, AnswerStep, AnswerStream, StopScanner
from specs_core.errors import ConfigError
from specs_core.types import StopReason

TOY = Path(__file__).resolve().parents[1] / "examples" / "configs" / "toy.yaml"
QUESTION = "What is 4 + 5?"


@pytest.mark.parametrize(
    ("pieces", "stops", "shown", "stopped"),
    [
        (["ab", "cd"], (), ["ab", "cd"], False),
        (["hello wo", "rld!"], ("world",), ["hello ", ""], True),  # split across pieces
        (["x END", " y"], ("END", "x"), [""], True),  # the earliest stop wins
        (["ab", "c"], ("abd",), ["", "abc"], False),  # a held prefix that was not a stop
        (["a\n", "\nb"], ("\n\n",), ["a", ""], True),
    ],
)
def test_stop_scanner_cuts_before_the_first_stop(
    pieces: list[str], stops: tuple[str, ...], shown: list[str], stopped: bool
) -> None:
    scanner = StopScanner(stops)
    out = [scanner.feed(p) for p in pieces]
    out[-1] += scanner.flush()
    assert out[: len(shown)] == shown and scanner.stopped is stopped
    assert scanner.text == "".join(out)


def events(stream: AnswerStream) -> tuple[list[AnswerStep], AnswerEnd]:
    items = list(stream)
    end = items[-1]
    assert isinstance(end, AnswerEnd)
    steps = [i for i in items[:-1] if isinstance(i, AnswerStep)]
    return steps, end


def test_a_linear_search_sends_its_answer_step_by_step() -> None:
    with Specs.from_config(TOY) as specs:
        expected = specs.solve(QUESTION, options={"on_finished": "stop"}).text
        stream = AnswerStream(specs, QUESTION, options={"on_finished": "stop"})
        assert stream.linear
        steps, end = events(stream)
    assert "".join(s.content for s in steps) + end.content == expected == end.text
    assert all(s.content == s.record.text and not s.reasoning for s in steps)


def test_a_search_that_chooses_at_the_end_sends_steps_as_reasoning() -> None:
    with Specs.from_config(TOY) as specs:
        expected = specs.solve(QUESTION).text
        stream = AnswerStream(specs, QUESTION)  # SPECS, on_finished: continue
        assert not stream.linear
        steps, end = events(stream)
    assert all(s.reasoning == s.record.text and not s.content for s in steps)
    assert end.content == end.text == expected
    # the case that makes it necessary: the committed steps are not the answer here
    assert "".join(s.reasoning for s in steps) != expected


def test_a_stop_string_ends_a_linear_search_before_its_next_call() -> None:
    with Specs.from_config(TOY) as specs:
        question = "What is 2 + 3?"
        full = specs.solve(question, options={"on_finished": "stop"}).text
        stop = full.split("\n\n")[1][:5]
        assert stop not in full.split("\n\n")[0]
        stream = AnswerStream(specs, question, options={"on_finished": "stop"}, stops=(stop,))
        steps, end = events(stream)
    assert end.text == full[: full.index(stop)] and end.finish_reason == "stop"
    assert len(steps) == 2 and end.result.stop_reason is StopReason.STOPPED


def test_async_iteration_gives_the_same_events() -> None:
    async def collect(specs: Specs) -> list[str]:
        stream = AnswerStream(specs, QUESTION)
        return [e.reasoning if isinstance(e, AnswerStep) else e.text async for e in stream.aiter()]

    with Specs.from_config(TOY) as specs:
        synchronous = [
            e.reasoning if isinstance(e, AnswerStep) else e.text
            for e in AnswerStream(specs, QUESTION)
        ]
        assert asyncio.run(collect(specs)) == synchronous


def test_a_bad_option_is_refused_before_the_search_starts() -> None:
    with Specs.from_config(TOY) as specs, pytest.raises(ConfigError, match="tau_sw"):
        AnswerStream(specs, QUESTION, options={"tau_sw": "high"})

"""What a :class:`~specs_langchain.SpecsRunnable` accepts, turned into one question.

Accepted inputs:

- a string: the question;
- a mapping with a ``question`` key (and optionally ``system``); other keys are left for other
  steps of the chain, as prompt templates do;
- a :class:`~langchain_core.prompt_values.PromptValue` (what a prompt template produces): a
  string prompt is the question, a chat prompt is read as a message list;
- a list of messages (or message-like values such as ``("human", "...")``): the LAST human
  message is the question, system messages become the system prompt, and other messages (earlier
  turns, AI messages) are not part of the question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.prompt_values import ChatPromptValue, PromptValue, StringPromptValue
from specs_core.errors import InvalidInputError

__all__ = ["SpecsInput", "SpecsQuestion", "read_question"]

SpecsInput = Union[str, Mapping[str, Any], PromptValue, Sequence[BaseMessage]]  # noqa: UP007
"""The input types of :class:`~specs_langchain.SpecsRunnable` (a runtime type for schemas)."""

_ACCEPTED = (
    "a string, a dict with a 'question' key, a PromptValue, or a list of messages whose last "
    "human message is the question"
)


@dataclass(frozen=True)
class SpecsQuestion:
    """A question read from a runnable input.

    Attributes:
        question: the problem text (never empty).
        system: a system prompt given with the input (``None``: the policy's own).
    """

    question: str
    system: str | None = None


def _checked(question: str, system: str | None, where: str) -> SpecsQuestion:
    if not question.strip():
        raise InvalidInputError(f"the question is empty ({where}); pass the problem text to solve")
    if system is not None and not system.strip():
        system = None
    return SpecsQuestion(question, system)


def _from_mapping(value: Mapping[str, Any]) -> SpecsQuestion:
    if "question" not in value:
        keys = ", ".join(repr(k) for k in value) or "none"
        raise InvalidInputError(
            f"a dict input needs a 'question' key (got keys: {keys}); map your variable to "
            "'question', e.g. {'question': itemgetter('problem')} | SpecsRunnable(...)"
        )
    question = value["question"]
    system = value.get("system")
    if not isinstance(question, str):
        raise InvalidInputError(
            f"input['question'] must be a string, got {type(question).__name__}"
        )
    if system is not None and not isinstance(system, str):
        raise InvalidInputError(f"input['system'] must be a string, got {type(system).__name__}")
    return _checked(question, system, "input['question']")


def _from_messages(messages: Sequence[BaseMessage]) -> SpecsQuestion:
    humans = [m for m in messages if m.type == "human"]
    if not humans:
        kinds = ", ".join(m.type for m in messages) or "an empty list"
        raise InvalidInputError(
            f"the message list has no human message (got {kinds}); the last human message is "
            "the question: add one, e.g. ('human', '{question}') in the prompt template"
        )
    systems = [m.text for m in messages if m.type == "system" and m.text.strip()]
    system = "\n\n".join(systems) if systems else None
    return _checked(humans[-1].text, system, "the last human message")


def read_question(value: object) -> SpecsQuestion:
    """Read the question (and a system prompt, if any) from a runnable input.

    Args:
        value: a string, a mapping with ``question``, a prompt value, or a list of messages.

    Returns:
        The question and the system prompt given with it.

    Raises:
        InvalidInputError: the input has an unsupported type, no question, an empty question,
            or a message list without a human message.
    """
    if isinstance(value, str):
        return _checked(value, None, "the input string")
    if isinstance(value, StringPromptValue):
        return _checked(value.to_string(), None, "the prompt value")
    if isinstance(value, ChatPromptValue):
        return _from_messages(value.to_messages())
    if isinstance(value, PromptValue):
        return _from_messages(value.to_messages())
    if isinstance(value, BaseMessage):
        return _from_messages([value])
    if isinstance(value, Mapping):
        return _from_mapping(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        try:
            messages = convert_to_messages(list(value))
        except (ValueError, TypeError, NotImplementedError) as e:
            raise InvalidInputError(
                f"a list input must hold messages: {e}; pass {_ACCEPTED}"
            ) from e
        return _from_messages(messages)
    raise InvalidInputError(f"unsupported input of type {type(value).__name__}; pass {_ACCEPTED}")

"""LangChain integration: :class:`SpecsRunnable` runs a specs search policy inside LCEL chains,
and :class:`ChatSpecs` is a chat model whose answers come from one.

Example:
    >>> from langchain_core.output_parsers import StrOutputParser
    >>> from langchain_core.prompts import ChatPromptTemplate
    >>> from specs_langchain import SpecsRunnable
    >>> prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    >>> chain = prompt | SpecsRunnable.from_config("examples/configs/toy.yaml") | StrOutputParser()
    >>> chain.invoke({"question": "What is 2 + 3?"})  # doctest: +SKIP

This package imports without langchain-core; using its names without it raises
:class:`~specs_core.errors.BackendUnavailableError` naming the ``langchain`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from specs_core.errors import BackendUnavailableError

if TYPE_CHECKING:
    from specs_langchain.chat_model import ChatSpecs
    from specs_langchain.inputs import SpecsInput, SpecsQuestion, read_question
    from specs_langchain.outputs import (
        CandidateTrace,
        SpecsOutput,
        StepChunk,
        StepTrace,
        TokenCounts,
    )
    from specs_langchain.runnable import (
        RESULT_EVENT,
        SEARCH_FIELDS,
        STEP_EVENT,
        OutputKind,
        SpecsRunnable,
    )

__all__ = [
    "RESULT_EVENT",
    "SEARCH_FIELDS",
    "STEP_EVENT",
    "CandidateTrace",
    "ChatSpecs",
    "OutputKind",
    "SpecsInput",
    "SpecsOutput",
    "SpecsQuestion",
    "SpecsRunnable",
    "StepChunk",
    "StepTrace",
    "TokenCounts",
    "read_question",
]

_HOMES = {
    "ChatSpecs": "chat_model",
    "SpecsInput": "inputs",
    "SpecsQuestion": "inputs",
    "read_question": "inputs",
    "CandidateTrace": "outputs",
    "SpecsOutput": "outputs",
    "StepChunk": "outputs",
    "StepTrace": "outputs",
    "TokenCounts": "outputs",
    "RESULT_EVENT": "runnable",
    "SEARCH_FIELDS": "runnable",
    "STEP_EVENT": "runnable",
    "OutputKind": "runnable",
    "SpecsRunnable": "runnable",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{home}")
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.split(".")[0] == "langchain_core":
            raise BackendUnavailableError(
                "langchain", "langchain", "langchain-core is not installed"
            ) from e
        raise
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(__all__)

"""``ChatSpecs``: a LangChain chat model whose answers come from a specs search policy.

Where :class:`~specs_langchain.SpecsRunnable` is a runnable that returns the answer, ``ChatSpecs``
is a :class:`~langchain_core.language_models.BaseChatModel`: it goes wherever a chat model goes
(prompt | model | parser chains, ``init_chat_model``-style code, callbacks and tracing), takes
messages, and returns an :class:`~langchain_core.messages.AIMessage` with ``usage_metadata`` and
the search's summary in ``response_metadata["specs"]``.

Streaming is the source of truth (``invoke`` joins the stream): each committed step is one
:class:`~langchain_core.messages.AIMessageChunk`. When the steps are the answer (linear
searches) a step's text is the chunk's content; when the search chooses its answer at the end
(SPECS with ``on_finished: continue``, its default; multi-beam searches) a step's text goes in
``additional_kwargs["reasoning_content"]`` and the answer comes with the last chunk. Every step
chunk carries the step's summary in ``response_metadata["specs_steps"]``.

What maps where: ``model`` is the policy (``"specs"``, ``"beam_search"``..., ``None``: the
config's; a per-call ``model=`` picks another), ``temperature`` sets the policy's temperature,
``max_tokens`` is the most tokens the search may generate over all its candidates and models (like
a reasoning model's hidden tokens), ``timeout`` its wall-clock seconds, ``stop`` cuts the answer
(and ends a linear search), ``max_retries`` retries a search that failed on a backend error before
it sent anything.

Structured output: ``with_structured_output(schema)`` with ``method="json_mode"`` (the only one:
a search cannot call tools) asks the search, through the system prompt, to end its solution with
a JSON object following the schema, and parses the last JSON object of the answer (a pydantic
class gives an instance, other schemas a dict). Small models often do not comply; the parser then
raises ``OutputParserException`` (or, with ``include_raw=True``, reports it). Tool calling is not
supported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from specs_core.answering import AnswerEnd, AnswerEvent, AnswerStream, search_summary, step_summary
from specs_core.config import SpecsConfig
from specs_core.errors import BackendError, InvalidInputError
from specs_core.resolution import resolve_policy
from specs_core.solver import Specs
from specs_core.text import DEFAULT_SYSTEM_PROMPT
from specs_core.types import SearchResult

from specs_langchain.inputs import read_question

__all__ = ["ChatSpecs", "last_json_object"]

log = logging.getLogger(__name__)


def usage_metadata(result: SearchResult) -> UsageMetadata:
    """LangChain's usage: every model's prompt tokens in, every generated token out."""
    tokens = result.usage.tokens.values()
    prompt = sum(u.prompt for u in tokens)
    generated = sum(u.generated for u in tokens)
    return UsageMetadata(
        input_tokens=prompt,
        output_tokens=generated,
        total_tokens=prompt + generated,
        input_token_details={"cache_read": sum(u.cached for u in tokens)},
    )


def last_json_object(text: str) -> dict[str, Any]:
    """The last JSON object in ``text`` (a solution that ends with one).

    Raises:
        OutputParserException: the text holds no JSON object.
    """
    decoder = json.JSONDecoder()
    start = text.rfind("{")
    while start >= 0:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
        start = text.rfind("{", 0, start)
    raise OutputParserException(
        "the answer holds no JSON object (the search did not follow the schema)", llm_output=text
    )


def _structured_parser(schema: Any) -> Runnable[AIMessage, Any]:
    def parse(message: AIMessage) -> Any:
        value = last_json_object(message.text)
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            try:
                return schema.model_validate(value)
            except ValidationError as e:
                raise OutputParserException(
                    f"the answer's JSON object does not fit {schema.__name__}: {e}",
                    llm_output=message.text,
                ) from e
        return value

    return RunnableLambda(parse, name="last_json_object")


class ChatSpecs(BaseChatModel):
    """A chat model that answers with a specs search policy.

    Example:
        >>> from specs_langchain import ChatSpecs
        >>> chat = ChatSpecs(config="examples/configs/toy.yaml", model="beam_search")
        >>> chat.invoke("What is 2 + 3?").response_metadata["specs"]["answer"]  # doctest: +SKIP
        '5'

    The configuration's models load on the first call and are shared by every call (thread
    safe); :meth:`close` frees them. ``specs`` shares models already loaded elsewhere.
    """

    model_config = ConfigDict(
        arbitrary_types_allowed=True, populate_by_name=True, extra="forbid", protected_namespaces=()
    )

    config: str | Path | dict[str, Any] | SpecsConfig | None = Field(
        default=None, description="a YAML path, a mapping or a SpecsConfig (None: the default)"
    )
    model_name: str | None = Field(
        default=None, alias="model", description="the policy (None: the config's)"
    )
    policy_options: dict[str, Any] = Field(
        default_factory=dict, description="policy options on top of the config's"
    )
    temperature: float | None = Field(default=None, ge=0, description="the policy's temperature")
    max_tokens: int | None = Field(
        default=None, ge=1, description="the most tokens a search generates (all candidates)"
    )
    timeout: float | None = Field(default=None, gt=0, description="seconds a search may take")
    stop: list[str] | None = Field(default=None, description="the answer ends before these")
    max_retries: int = Field(default=0, ge=0, description="retries of a failed search")
    streaming: bool = Field(
        default=False, description="invoke streams too (callbacks see each step; same answer)"
    )
    specs: Specs | None = Field(default=None, exclude=True, description="loaded models to share")
    _loaded: Specs | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "specs"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "policy_options": self.policy_options,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    @model_validator(mode="after")
    def _check_policy(self) -> ChatSpecs:
        """Read the configuration (no model loads) and validate the policy options now, so a bad
        one fails where it is written rather than at the first call."""
        specs = self._specs()
        options = dict(self.policy_options)
        if self.temperature is not None:
            options["temperature"] = self.temperature
        resolve_policy(specs.config, self.model_name, options, specs.registry)
        return self

    def bind_tools(
        self, tools: Sequence[Any], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Not supported: a search writes a free-text solution and cannot call tools.

        Raises:
            NotImplementedError: always (use ``with_structured_output`` for JSON answers).
        """
        raise NotImplementedError(
            "ChatSpecs cannot call tools: a search writes a free-text solution. For a JSON "
            "answer use with_structured_output(schema) (json_mode)"
        )

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="specs",
            ls_model_name=kwargs.get("model") or self._policy(),
            ls_model_type="chat",
        )
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- the engine ---------------------------------------------------------------------------

    def _specs(self) -> Specs:
        if self.specs is not None:
            return self.specs
        if self._loaded is None:
            source = Path(self.config) if isinstance(self.config, str) else self.config
            self._loaded = Specs.from_config(source)
        return self._loaded

    def _policy(self, override: str | None = None) -> str:
        if override:
            return override
        if self.model_name:
            return self.model_name
        return self._specs().config.policy.name

    def _answer(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> AnswerStream:
        unknown = sorted(set(kwargs) - {"model", "json_schema", "ls_structured_output_format"})
        if unknown:
            raise InvalidInputError(
                f"ChatSpecs takes no call option {', '.join(unknown)}; it takes model= (a "
                "policy) and stop=; set search options as fields, e.g. "
                "ChatSpecs(policy_options={'n': 8})"
            )
        for message in messages:
            if isinstance(message.content, list):
                kinds = {str(b.get("type")) for b in message.content if isinstance(b, dict)}
                if kinds - {"text"}:
                    other = ", ".join(sorted(kinds - {"text"}))
                    raise InvalidInputError(
                        f"a {message.type} message holds {other} content; ChatSpecs reads text only"
                    )
        asked = read_question(messages)
        options = dict(self.policy_options)
        if self.temperature is not None:
            options["temperature"] = self.temperature
        stops = tuple(stop if stop is not None else (self.stop or ()))
        policy = self._policy(kwargs.get("model"))
        system = asked.system
        if kwargs.get("json_schema") is not None:
            base = system or self._system_prompt(policy, options)
            schema = json.dumps(kwargs["json_schema"])
            system = (
                f"{base}\n\nEnd your answer with a JSON object that follows this JSON schema, "
                f"and write nothing after it:\n{schema}"
            )
        return AnswerStream(
            self._specs(),
            asked.question,
            policy=policy,
            options=options,
            system=system,
            stops=stops,
            token_limit=self.max_tokens,
            seconds=self.timeout,
            reproducible=True,
        )

    def _system_prompt(self, policy: str, options: Mapping[str, Any]) -> str:
        specs = self._specs()
        resolved = resolve_policy(specs.config, policy, options, specs.registry)
        prompt = getattr(resolved.options, "system_prompt", None)
        return prompt if isinstance(prompt, str) else DEFAULT_SYSTEM_PROMPT

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: str = "json_mode",
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A runnable that answers with an object of ``schema`` (see the module's docstring).

        Args:
            schema: a pydantic class, a TypedDict, or a JSON schema.
            include_raw: return ``{"raw", "parsed", "parsing_error"}`` instead of raising.
            method: ``json_mode`` only.

        Raises:
            NotImplementedError: another method (a search cannot call tools).
        """
        if kwargs:
            raise ValueError(f"unsupported arguments {sorted(kwargs)}")
        if method != "json_mode":
            raise NotImplementedError(
                f"ChatSpecs supports with_structured_output(method='json_mode') only, not "
                f"{method!r}: a search writes a solution and cannot call tools"
            )
        llm = self.bind(
            json_schema=convert_to_json_schema(schema),
            ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
        )
        parser = _structured_parser(schema)
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        failed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([failed], exception_key="parsing_error")

    @staticmethod
    def _chunk(event: AnswerEvent, policy: str) -> ChatGenerationChunk:
        if isinstance(event, AnswerEnd):
            metadata = {
                "model_name": policy,
                "finish_reason": event.finish_reason,
                "specs": search_summary(event.result),
            }
            message = AIMessageChunk(
                content=event.content,
                usage_metadata=usage_metadata(event.result),
                response_metadata=metadata,
                chunk_position="last",
            )
            return ChatGenerationChunk(message=message, generation_info={"finish_reason": "stop"})
        extra = {"reasoning_content": event.reasoning} if event.reasoning else {}
        message = AIMessageChunk(
            content=event.content,
            additional_kwargs=extra,
            response_metadata={"specs_steps": [step_summary(event.record)]},
        )
        return ChatGenerationChunk(message=message)

    def _retrying(self, attempt: int, sent: bool, error: BackendError) -> bool:
        if sent or attempt >= self.max_retries:
            return False
        log.warning("search failed (%s); retrying (%d of %d)", error, attempt + 1, self.max_retries)
        return True

    # -- LangChain's hooks --------------------------------------------------------------------

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        attempt = 0
        while True:
            answer = self._answer(messages, stop, kwargs)
            sent = False
            try:
                for event in answer:
                    chunk = self._chunk(event, answer.policy)
                    if run_manager is not None:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    sent = True
                    yield chunk
                return
            except BackendError as e:
                if not self._retrying(attempt, sent, e):
                    raise
                attempt += 1

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        attempt = 0
        while True:
            answer = self._answer(messages, stop, kwargs)
            sent = False
            events = answer.aiter()
            try:
                async for event in events:
                    chunk = self._chunk(event, answer.policy)
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    sent = True
                    yield chunk
                return
            except BackendError as e:
                if not self._retrying(attempt, sent, e):
                    raise
                attempt += 1
            finally:
                await events.aclose()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    def close(self) -> None:
        """Free the models this chat model loaded (not those passed in as ``specs``); a later
        call loads them again."""
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

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
it sent anything. Not supported: tool calling and structured output (a search writes a free-text
solution; read its final answer from ``response_metadata["specs"]["answer"]`` or parse the text).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr
from specs_core.answering import AnswerEnd, AnswerEvent, AnswerStream, search_summary, step_summary
from specs_core.config import SpecsConfig
from specs_core.errors import BackendError, InvalidInputError
from specs_core.solver import Specs
from specs_core.types import SearchResult

from specs_langchain.inputs import read_question

__all__ = ["ChatSpecs"]

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
        unknown = sorted(set(kwargs) - {"model"})
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
        return AnswerStream(
            self._specs(),
            asked.question,
            policy=self._policy(kwargs.get("model")),
            options=options,
            system=asked.system,
            stops=stops,
            token_limit=self.max_tokens,
            seconds=self.timeout,
            reproducible=True,
        )

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
        """Free the models this chat model loaded (not those passed in as ``specs``)."""
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

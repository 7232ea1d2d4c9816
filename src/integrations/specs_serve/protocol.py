"""The OpenAI request bodies that ``specs serve`` accepts, and how each field is honoured.

The shapes follow OpenAI's API reference for ``POST /v1/chat/completions`` and
``POST /v1/completions`` (https://platform.openai.com/docs/api-reference/chat/create), which the
``openai`` client and LangChain's ``ChatOpenAI`` send. Fields this server honours:

- ``model``: picks the policy: a registered policy name (``specs``, ``beam_search``...) or the
  served configuration's name (its own policy and options);
- ``messages`` (chat): the last user message is the question, system (and developer) messages
  become the system prompt, other turns are not part of the question; ``prompt`` (completions):
  the question;
- ``stream``, ``stream_options.include_usage``;
- ``max_tokens`` / ``max_completion_tokens``: the most tokens the search may generate, over all
  its candidates and models (like the reasoning tokens of a reasoning model, they count against
  the limit); the search stops within one model call of it, with ``finish_reason: length``;
- ``stop``: up to 4 strings; the text ends before the first one and the search stops there;
- ``temperature``, ``seed``: set the policy's options of the same name;
- ``n``: 1 only; ``specs`` (an extension, ``extra_body={"specs": {...}}`` in the ``openai``
  client): policy options, validated like the config's.

Fields of OpenAI's API that the search cannot honour (tools, logprobs, penalties, ``n > 1``...)
are rejected with HTTP 400 when given a value other than their default; unknown fields too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "SearchRequest",
    "StreamOptions",
]

# Fields of OpenAI's API accepted only at their "off" value: name -> (off values, why).
_UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "tools": ((None, []), "the search cannot call tools"),
    "functions": ((None, []), "the search cannot call tools"),
    "tool_choice": ((None, "none", "auto"), "the search cannot call tools"),
    "function_call": ((None, "none", "auto"), "the search cannot call tools"),
    "parallel_tool_calls": ((None, True, False), ""),
    "logprobs": ((None, False, 0), "a search's text has no single token distribution"),
    "top_logprobs": ((None, 0), "a search's text has no single token distribution"),
    "echo": ((None, False), "the completion is the search's answer only"),
    "best_of": ((None, 1), "choose a search policy through `model` instead"),
    "suffix": ((None, ""), "the search writes after the question only"),
    "presence_penalty": ((None, 0, 0.0), "the policies sample with temperature only"),
    "frequency_penalty": ((None, 0, 0.0), "the policies sample with temperature only"),
    "logit_bias": ((None, {}), "the policies sample with temperature only"),
    "top_p": ((None, 1, 1.0), "the policies sample with temperature only"),
    "response_format": ((None, {"type": "text"}), "the search writes free text"),
    "audio": ((None,), "the search writes text"),
    "modalities": ((None, ["text"]), "the search writes text"),
    "prediction": ((None,), "drafting is the search's own"),
    "reasoning_effort": ((None,), "set the search's options in the `specs` field instead"),
}
# Accepted and ignored: they change nothing a search does.
_IGNORED = ("user", "metadata", "store", "service_tier", "web_search_options", "safety_identifier")


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the usage."""

    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False
    include_obfuscation: bool | None = None


class ContentPart(BaseModel):
    """One part of a message's content; only text parts are read."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One chat message (``role`` and ``content``; other fields, like ``name``, are kept)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text (text parts joined; other parts are refused)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        pieces = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(
                    f"a {self.role} message has a {part.type!r} content part; this server reads "
                    "text parts only"
                )
            pieces.append(part.text)
        return "".join(pieces)


class SearchRequest(BaseModel):
    """Fields both endpoints share."""

    model_config = ConfigDict(extra="forbid")

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    seed: int | None = None
    n: int = Field(1, ge=1)
    specs: dict[str, Any] | None = Field(
        None, description="policy options (an extension; validated like the config's)"
    )

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in _IGNORED:
            data.pop(name, None)
        for name, (off, why) in _UNSUPPORTED.items():
            if name not in data:
                continue
            value = data.pop(name)
            if value not in off:
                because = f": {why}" if why else ""
                raise ValueError(f"`{name}` is not supported by specs serve{because}; leave it out")
        return data

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(
                "only 1 is supported: a search returns one answer (it already weighs many "
                "candidates; set their number with specs={'n': N})"
            )
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4:
            raise ValueError(f"at most 4 stop strings, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("a stop string is empty")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        """The stop strings, as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def token_limit(self) -> int | None:
        """The most tokens the search may generate (``max_completion_tokens`` first)."""
        return self.max_completion_tokens or self.max_tokens

    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(SearchRequest):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)

    def question(self) -> tuple[str, str | None]:
        """The question (the last user message) and the system prompt (``None``: the policy's).

        Raises:
            ValueError: no user message, an empty one, or a non-text content part.
        """
        users = [m for m in self.messages if m.role == "user"]
        if not users:
            roles = ", ".join(m.role for m in self.messages)
            raise ValueError(
                f"the messages have no user message (got {roles}); the last user message is "
                "the question"
            )
        question = users[-1].text()
        if not question.strip():
            raise ValueError("the last user message is empty; it is the question to solve")
        systems = [
            m.text() for m in self.messages if m.role in ("system", "developer") and m.text()
        ]
        return question, ("\n\n".join(systems) if systems else None)


class CompletionRequest(SearchRequest):
    """``POST /v1/completions``: the prompt is the question."""

    prompt: str | list[str]

    def question(self) -> tuple[str, str | None]:
        """The question (the prompt), and no system prompt.

        Raises:
            ValueError: several prompts, or an empty one.
        """
        prompt = self.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise ValueError(
                    f"one prompt per request, got {len(prompt)}; send one request per question"
                )
            prompt = prompt[0]
        if not prompt.strip():
            raise ValueError("the prompt is empty; it is the question to solve")
        return prompt, None

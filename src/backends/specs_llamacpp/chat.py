"""Render a :class:`~specs_core.types.Prompt` with the model's own chat template.

The template is the GGUF metadata key ``tokenizer.chat_template`` (or the ``chat_template`` option),
rendered with Jinja in a sandbox set up like Hugging Face ``apply_chat_template``: ``trim_blocks``,
``lstrip_blocks``, the ``loopcontrols`` extension, ``raise_exception``, ``strftime_now`` and a
``tojson`` filter that keeps non-ASCII text. The messages are the optional system message and the
user question, rendered with ``add_generation_prompt=True``; ``Prompt.partial`` is appended after
the rendered text, so the assistant message stays open and the model continues it.

No system message is added unless the template itself adds one (some do, e.g. SmolLM2 and Qwen2.5).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from specs_core.errors import ConfigError, InvalidInputError
from specs_core.types import Prompt

__all__ = ["ChatTemplate"]


def _raise_exception(message: str) -> None:
    raise InvalidInputError(f"the chat template refused the messages: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class ChatTemplate:
    """A compiled chat template.

    Args:
        source: the Jinja template text.
        bos_token: the model's beginning-of-sequence text (template variable ``bos_token``).
        eos_token: the model's end-of-sequence text (template variable ``eos_token``).
        origin: where the template came from, for error messages.

    Raises:
        ConfigError: the template does not compile.
    """

    def __init__(self, source: str, *, bos_token: str, eos_token: str, origin: str) -> None:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.origin = origin
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as e:
            raise ConfigError(
                f"the chat template from {origin} does not compile ({e}); pass a valid Jinja "
                "template as the chat_template option"
            ) from e

    def messages(self, prompt: Prompt) -> list[dict[str, str]]:
        """The chat messages of a prompt (without its partial answer)."""
        messages = [] if prompt.system is None else [{"role": "system", "content": prompt.system}]
        messages.append({"role": "user", "content": prompt.question})
        return messages

    def render_head(self, prompt: Prompt) -> str:
        """The rendered conversation up to the start of the assistant message."""
        import jinja2

        try:
            return self._template.render(
                messages=self.messages(prompt),
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except jinja2.TemplateError as e:
            raise ConfigError(
                f"the chat template from {self.origin} failed to render ({e}); pass a working "
                "template as the chat_template option"
            ) from e

    def render(self, prompt: Prompt) -> str:
        """The text the model continues: the rendered conversation plus the open partial answer."""
        if not isinstance(prompt, Prompt):
            raise InvalidInputError(f"expected a Prompt, got {type(prompt).__name__}")
        return self.render_head(prompt) + prompt.partial

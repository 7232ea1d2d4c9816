"""Chat templates: every backend renders a :class:`~specs_core.types.Prompt` the same way.

A prompt's ``system`` and ``question`` are rendered with the model's chat template (generation
prompt on) and ``partial`` is appended as the still-open assistant message, which the model
continues.

:class:`ChatTemplate` compiles a Jinja template in a sandbox set up like Hugging Face
``apply_chat_template``: ``trim_blocks``, ``lstrip_blocks``, the ``loopcontrols`` extension,
``raise_exception``, ``strftime_now`` and a ``tojson`` filter that keeps non-ASCII text. The
llama.cpp backend renders the template of a GGUF file with it; the server backends use it for any
Jinja template they are given.

Servers spoken to in raw text (SGLang's ``/generate``, OpenAI's ``/v1/completions``) apply no
chat template, so their backends render on the client with :func:`build_renderer`. The template
comes from, in order of preference:

- ``chat_template``: a built-in name (see :data:`BUILTIN_TEMPLATES`), a Jinja template string,
  or the path of a file holding one (the ``chat_template`` of a Hugging Face tokenizer config);
- ``tokenizer``: a local tokenizer directory or hub name read with transformers'
  ``AutoTokenizer`` (needs the ``transformers`` extra; offline, only local directories work);
- nothing: a built-in inferred from the model path the server reports (``smollm2``, ``qwen2.5``,
  ``llama3``), or a :class:`~specs_core.errors.ConfigError` asking for ``chat_template``.

Servers tokenize the rendered text with their own tokenizer, which adds the BOS token when the
model wants one; rendered prompts therefore never contain the BOS token themselves.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from specs_core.errors import (
    BackendUnavailableError,
    ConfigError,
    InvalidInputError,
    ModelNotFoundError,
)
from specs_core.types import Prompt

__all__ = [
    "BUILTIN_TEMPLATES",
    "ChatRenderer",
    "ChatTemplate",
    "Segment",
    "build_renderer",
    "infer_template",
    "neutralize",
    "prompt_messages",
    "render_segments",
    "render_tagged_steps",
]

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN25_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def _chatml(default_system: str | None) -> Callable[[Messages], str]:
    def render(messages: Messages) -> str:
        if default_system is not None and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": default_system}, *messages]
        body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return body + "<|im_start|>assistant\n"

    return render


def _llama3(messages: Messages) -> str:
    body = "".join(
        f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
        for m in messages
    )
    return body + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _raw(messages: Messages) -> str:
    return "".join(f"{m['content']}\n\n" for m in messages)


#: Built-in templates: name -> function from messages to the text before the assistant's answer.
BUILTIN_TEMPLATES: dict[str, Callable[[Messages], str]] = {
    "chatml": _chatml(None),
    "smollm2": _chatml(SMOLLM2_SYSTEM),
    "qwen2.5": _chatml(QWEN25_SYSTEM),
    "qwen2.5-math": _chatml(QWEN25_MATH_SYSTEM),
    "llama3": _llama3,
    "raw": _raw,
}

_INFER = (
    ("smollm", "smollm2"),
    ("qwen2.5-math", "qwen2.5-math"),
    ("qwen2.5", "qwen2.5"),
    ("qwen2", "qwen2.5"),
    ("qwen", "chatml"),
    ("llama-3", "llama3"),
    ("llama3", "llama3"),
)


def infer_template(model_path: str) -> str | None:
    """The built-in template for a model path (``None`` when the family is not recognised)."""
    lowered = model_path.lower().replace("_", "-")
    for needle, name in _INFER:
        if needle in lowered:
            return name
    return None


def prompt_messages(prompt: Prompt) -> Messages:
    """The chat messages of a prompt: its optional system message and the user's question."""
    messages: Messages = []
    if prompt.system is not None:
        messages.append({"role": "system", "content": prompt.system})
    messages.append({"role": "user", "content": prompt.question})
    return messages


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
    """A compiled Jinja chat template.

    Args:
        source: the Jinja template text.
        bos_token: the model's beginning-of-sequence text (template variable ``bos_token``).
        eos_token: the model's end-of-sequence text (template variable ``eos_token``).
        origin: where the template came from, for error messages.

    Raises:
        ConfigError: the template does not compile (or jinja2 is not installed).
    """

    def __init__(self, source: str, *, bos_token: str, eos_token: str, origin: str) -> None:
        try:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError as e:
            raise ConfigError(
                "a Jinja chat template needs the jinja2 package (pip install jinja2), or use a "
                "built-in template name"
            ) from e
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

    def render_messages(self, messages: Messages) -> str:
        """The rendered conversation up to the start of the assistant message."""
        import jinja2

        try:
            text: str = self._template.render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except jinja2.TemplateError as e:
            raise ConfigError(
                f"the chat template from {self.origin} failed to render ({e}); pass a working "
                "template as the chat_template option"
            ) from e
        return text

    def render_head(self, prompt: Prompt) -> str:
        """The rendered conversation of ``prompt`` up to the start of the assistant message."""
        return self.render_messages(prompt_messages(prompt))

    def render(self, prompt: Prompt) -> str:
        """The text the model continues: the rendered conversation plus the open partial answer."""
        if not isinstance(prompt, Prompt):
            raise InvalidInputError(f"expected a Prompt, got {type(prompt).__name__}")
        return self.render_head(prompt) + prompt.partial

    def segments(self, prompt: Prompt) -> list[Segment]:
        """:meth:`render` in pieces, the user's marked (:func:`render_segments`): tokenize
        special tokens in the template's pieces only."""
        return render_segments(self.render_messages, prompt)


class ChatRenderer:
    """Renders a :class:`~specs_core.types.Prompt` as the raw text a model continues.

    Args:
        render: a function from chat messages to the text that opens the assistant's answer.
        description: what the template is, for logs and messages.
    """

    def __init__(self, render: Callable[[Messages], str], description: str) -> None:
        self._render = render
        self.description = description

    def __call__(self, prompt: Prompt) -> str:
        """``system`` + ``question`` through the template, then ``partial`` left open; text
        that looks like a special token in them is neutralized (:func:`neutralize`), since
        the server parses special tokens in the whole text."""
        return "".join(neutralize(text) if user else text for text, user in self.segments(prompt))

    def segments(self, prompt: Prompt) -> list[Segment]:
        """The rendering in pieces, the user's marked (:func:`render_segments`)."""
        return render_segments(self._render, prompt)


#: A piece of a rendered prompt: its text, and whether it came from the user or a model (the
#: system message, the question, the partial answer) rather than from the template itself.
Segment = tuple[str, bool]

_MARK = "\ue000specs-{}\ue000"  # private-use characters: no template trims or escapes them


def render_segments(render: Callable[[Messages], str], prompt: Prompt) -> list[Segment]:
    """``prompt`` rendered by ``render`` (messages -> text opening the answer), in pieces that
    tell the template's own text from the user's (``True``).

    A tokenizer parses special tokens in the template's pieces only, so a question holding
    ``<|im_end|>`` stays text and cannot close the user's turn. The pieces are found by
    rendering the messages with markers in place of their contents: the template's own text is
    what lies between the markers, and the real rendering must be that text with each marker
    replaced by its message's content, as is or trimmed (a template may render a content
    twice, or leave a message out). When it is not (a template that changes a content further),
    a warning is logged and the whole rendering counts as the template's.

    Raises:
        InvalidInputError: ``prompt`` is not a :class:`Prompt`.
    """
    if not isinstance(prompt, Prompt):
        raise InvalidInputError(f"expected a Prompt, got {type(prompt).__name__}")
    messages = prompt_messages(prompt)
    real = render(messages)
    marks = {_MARK.format(i): m["content"] for i, m in enumerate(messages)}
    marked = render([{**m, "content": mark} for mark, m in zip(marks, messages, strict=True)])
    pieces = re.split("(" + "|".join(map(re.escape, marks)) + ")", marked)
    segments: list[Segment] = []
    at = 0
    for i, piece in enumerate(pieces):
        if i % 2 == 0:  # the template's own text
            if not real.startswith(piece, at):
                break
            segments.append((piece, False))
            at += len(piece)
            continue
        content = marks[piece]
        for text in (content, content.strip()):
            if real.startswith(text, at):
                segments.append((text, True))
                at += len(text)
                break
        else:
            break
    else:
        if at == len(real):
            return _joined([*segments, (prompt.partial, True)])
    log.warning(
        "the chat template changes the messages' text beyond trimming it; special tokens written "
        "in a question are parsed as the template's own"
    )
    return _joined([(real, False), (prompt.partial, True)])


def _joined(segments: list[Segment]) -> list[Segment]:
    """Without empty pieces, neighbours of one kind merged."""
    out: list[Segment] = []
    for text, user in segments:
        if not text:
            continue
        if out and out[-1][1] == user:
            out[-1] = (out[-1][0] + text, user)
        else:
            out.append((text, user))
    return out


_SPECIAL_LOOKING = re.compile(r"<\|[^<>|\s]{1,64}\|>|</?s>|\[/?INST\]|<</?SYS>>")


def neutralize(text: str) -> str:
    """``text`` with every piece that looks like a special token (``<|im_end|>``, ``</s>``,
    ``[INST]``...) broken by a word joiner (U+2060) after its first character, for servers that
    parse special tokens in the text they are sent: the model then reads it as plain text."""
    return _SPECIAL_LOOKING.sub(lambda m: m.group()[0] + "\u2060" + m.group()[1:], text)


_TAG_MARK = "\ue001"  # a private-use character standing for a step tag while rendering


def render_tagged_steps(
    renderer: ChatRenderer, question: str, steps: Sequence[str], tag: str, system: str | None
) -> str:
    """A PRM's input: the chat prompt (``system``, ``question``) with the assistant's steps, each
    stripped and followed by ``tag``, the assistant message left open.

    The question and the steps are the user's text and are neutralized like any prompt
    (:func:`neutralize`); the tags are the PRM's own and are inserted after that, so a tag that
    looks like a special token (``<|endoftext|>``) stays one.
    """
    partial = "".join(step.strip().replace(_TAG_MARK, "") + _TAG_MARK for step in steps)
    question = question.replace(_TAG_MARK, "")
    pieces = renderer.segments(Prompt(question, partial, system))
    text = "".join(neutralize(piece) if user else piece for piece, user in pieces)
    return text.replace(_TAG_MARK, tag)


def _jinja_renderer(source: str, description: str) -> ChatRenderer:
    template = ChatTemplate(source, bos_token="", eos_token="", origin=description)
    return ChatRenderer(template.render_messages, description)


def _tokenizer_renderer(name: str, backend: str, extra: str) -> ChatRenderer:
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise BackendUnavailableError(
            backend, "transformers", "reading the chat template from a tokenizer needs transformers"
        ) from e
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise ModelNotFoundError(
            f"cannot load the tokenizer {name!r} for its chat template ({e}); pass a local "
            "tokenizer directory, or set chat_template instead"
        ) from e
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"the tokenizer {name!r} has no chat template; set chat_template")
    bos = getattr(tokenizer, "bos_token", None) or ""
    adds_bos = bool(bos) and bool(tokenizer("", add_special_tokens=True)["input_ids"])

    def render(messages: Messages) -> str:
        text: str = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        if adds_bos and text.startswith(bos):  # the server's tokenizer adds it again
            text = text[len(bos) :]
        return text

    return ChatRenderer(render, f"tokenizer {name!r}")


def build_renderer(
    chat_template: str | None,
    tokenizer: str | None,
    model_path: str | None,
    *,
    backend: str,
    extra: str,
) -> ChatRenderer:
    """Choose the chat template as the module docstring describes.

    Args:
        chat_template: a built-in name, a Jinja template string or a file path, or ``None``.
        tokenizer: a tokenizer directory or hub name, or ``None``.
        model_path: the model path the server reports (used to infer a built-in).
        backend: the backend name, for errors.
        extra: the backend's pip extra, for errors.

    Raises:
        ConfigError: no template given and none can be inferred, or a template is invalid.
    """
    if chat_template is not None:
        if chat_template in BUILTIN_TEMPLATES:
            return ChatRenderer(BUILTIN_TEMPLATES[chat_template], f"built-in {chat_template!r}")
        if "{{" in chat_template or "{%" in chat_template:
            return _jinja_renderer(chat_template, "inline Jinja")
        path = Path(chat_template).expanduser()
        if path.is_file():
            return _jinja_renderer(path.read_text(encoding="utf-8"), f"file {str(path)!r}")
        known = ", ".join(BUILTIN_TEMPLATES)
        raise ConfigError(
            f"chat_template {chat_template!r} is neither a built-in ({known}), a Jinja template "
            "nor an existing file"
        )
    if tokenizer is not None:
        return _tokenizer_renderer(tokenizer, backend, extra)
    inferred = infer_template(model_path or "")
    if inferred is None:
        known = ", ".join(BUILTIN_TEMPLATES)
        raise ConfigError(
            f"cannot tell the chat template of model {model_path!r}: set chat_template (one of "
            f"{known}, a Jinja template or a file) or tokenizer"
        )
    log.info("model %r: using the built-in chat template %r", model_path, inferred)
    return ChatRenderer(BUILTIN_TEMPLATES[inferred], f"built-in {inferred!r} (inferred)")

"""The one chat-template renderer, shared by the llama.cpp and the server backends."""

from __future__ import annotations

import pytest
from specs_core.backend_kit.chat import ChatTemplate, build_renderer
from specs_core.errors import ConfigError, InvalidInputError
from specs_core.types import Prompt

# Uses what Hugging Face's apply_chat_template environment offers: loop controls, tojson (that
# keeps non-ASCII text), strftime_now and raise_exception.
TEMPLATE = (
    "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
    "<{{ m.role }}>{{ m.content | tojson }}{% if loop.last %}{% break %}{% endif %}"
    "{% endfor %}[{{ strftime_now('%Y') | length }}]"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_servers_and_llamacpp_render_a_jinja_template_alike() -> None:
    prompt = Prompt("Wie viel ist 2+3? €", "Erst", system="sys")
    server = build_renderer(TEMPLATE, None, None, backend="sglang", extra="sglang")
    llamacpp = ChatTemplate(TEMPLATE, bos_token="", eos_token="", origin="test")
    expected = '<user>"Wie viel ist 2+3? €"[4]<assistant>Erst'
    assert server(prompt) == llamacpp.render(prompt) == expected


def test_a_template_that_refuses_the_messages_and_a_broken_template_are_typed_errors() -> None:
    refusing = "{{ raise_exception('no system messages') }}"
    render = build_renderer(refusing, None, None, backend="openai", extra="openai")
    with pytest.raises(InvalidInputError, match="no system messages"):
        render(Prompt("q"))
    with pytest.raises(ConfigError, match="does not compile"):
        build_renderer("{% for %}", None, None, backend="openai", extra="openai")

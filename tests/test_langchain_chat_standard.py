"""LangChain's standard test suites for chat models (``langchain-tests``), run on ``ChatSpecs``:
the unit suite, and the integration suite on the toy backend and on the embedded SmolLM2.

Capabilities declared off, by the suites' own flags: tool calling (a search cannot call tools;
``bind_tools`` raises, saying so), structured output and JSON mode
(``with_structured_output(method="json_mode")`` exists, but the suites ask for jokes in a JSON
schema, which neither the toy models nor a 135M model can write: tested on its own in
test_langchain_chat_model.py), image/audio/PDF inputs, and the recorded-cassette (VCR) timing
test, which needs an HTTP API to record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from specs_langchain import ChatSpecs

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"


class _ChatSpecsOnToy:
    @property
    def chat_model_class(self) -> type[ChatSpecs]:
        return ChatSpecs

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"config": str(CONFIGS / "toy.yaml"), "model": "specs"}

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "beam_search"

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def has_tool_calling(self) -> bool:
        return False  # bind_tools exists only to say so


class TestChatSpecsUnit(_ChatSpecsOnToy, ChatModelUnitTests):
    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # the unit suite adds api_key="test" for hosted APIs; ChatSpecs runs the models itself
        # and refuses options it does not take (a config's remote backends carry their own key)
        params = dict(super().standard_chat_model_params)
        params.pop("api_key")
        return params


class TestChatSpecsToyIntegration(_ChatSpecsOnToy, ChatModelIntegrationTests):
    pass


@pytest.mark.llamacpp
@pytest.mark.slow
class TestChatSpecsLlamaCppIntegration(_ChatSpecsOnToy, ChatModelIntegrationTests):
    """On the embedded SmolLM2-135M through llama.cpp, with a short SPECS search."""

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "config": str(CONFIGS / "smollm2.yaml"),
            "model": "specs",
            "policy_options": {"max_steps": 2, "max_step_tokens": 24},
        }

"""The OpenAI-compatible backend: models behind ``/v1/completions`` (vLLM, SGLang, llama.cpp).

``import specs_openai`` needs no ``httpx``; it is imported when a model first connects. The
HTTP plumbing and the chat templates come from :mod:`specs_core.backend_kit`, shared with the
other backends. See
``docs/backends/openai.md``.
"""

from __future__ import annotations

from specs_openai.backend import OpenAIModel, OpenAIOptions
from specs_openai.profiles import PROFILES, ServerProfile, profile_for_owner

__all__ = ["PROFILES", "OpenAIModel", "OpenAIOptions", "ServerProfile", "profile_for_owner"]

"""Registers the ``openai`` backend and the ``vllm-prm`` reward model."""

from __future__ import annotations

from typing import Any

from specs_core.hookspecs import hookimpl

__all__ = ["register_backends", "register_reward_models"]


def _httpx_missing() -> str | None:
    try:
        import httpx  # noqa: F401
    except ImportError:
        return "the httpx package is not installed"
    return None


def _build_model(options: Any) -> Any:
    from specs_openai.backend import OpenAIModel

    return OpenAIModel(options)


@hookimpl
def register_backends(register: Any) -> None:
    """Register ``openai``: any OpenAI-compatible /v1/completions server."""
    from specs_openai.backend import OpenAIOptions

    register(
        "openai",
        _build_model,
        options=OpenAIOptions,
        extra="openai",
        available=_httpx_missing,
        description="a model behind an OpenAI-compatible /v1/completions server (vLLM, SGLang, "
        "llama.cpp)",
    )


@hookimpl
def register_reward_models(register: Any) -> None:
    """Register ``vllm-prm``: a process reward model served by vLLM's pooling runner."""
    from specs_openai.prm import VLLMRewardOptions, build_reward

    register(
        "vllm-prm",
        build_reward,
        options=VLLMRewardOptions,
        extra="openai",
        available=_httpx_missing,
        description="a PRM served by vLLM --runner pooling: /pooling (Qwen2.5-Math-PRM) or "
        "/v1/embeddings (Skywork-o1-Open-PRM)",
    )

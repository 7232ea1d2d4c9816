"""Registers the ``sglang`` backend and the ``sglang-prm`` reward model."""

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
    from specs_sglang.backend import SGLangModel

    return SGLangModel(options)


@hookimpl
def register_backends(register: Any) -> None:
    """Register ``sglang``: SGLang's native protocol over HTTP (or an in-process engine)."""
    from specs_sglang.backend import SGLangOptions

    register(
        "sglang",
        _build_model,
        options=SGLangOptions,
        extra="sglang",
        available=_httpx_missing,
        description="a model served by SGLang (native /generate, prefill scoring on its cache)",
    )


@hookimpl
def register_reward_models(register: Any) -> None:
    """Register ``sglang-prm``: a reward model served by SGLang's /classify, read at each step."""
    from specs_sglang.reward import SGLangRewardOptions, build_reward

    register(
        "sglang-prm",
        build_reward,
        options=SGLangRewardOptions,
        extra="sglang",
        available=_httpx_missing,
        description="a reward model served by SGLang --is-embedding, scoring each partial "
        "solution (e.g. Qwen2.5-Math-RM-72B); for Qwen2.5-Math-PRM use vllm-prm",
    )

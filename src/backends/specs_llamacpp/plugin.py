"""Registers the ``llamacpp`` backend through the ``register_backends`` hook."""

from __future__ import annotations

from specs_core.hookspecs import hookimpl
from specs_core.plugins import RegisterBackend

from specs_llamacpp.model import LlamaCppModel, engine_unavailable_reason
from specs_llamacpp.options import LlamaCppOptions

__all__ = ["available", "create_model", "register_backends"]


def available() -> str | None:
    """``None`` when llama-cpp-python imports, else the reason it does not."""
    return engine_unavailable_reason()


def create_model(options: LlamaCppOptions) -> LlamaCppModel:
    """Build a model from validated options (cheap: the file loads on first use)."""
    return LlamaCppModel(options)


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    """Register the llama.cpp backend."""
    register(
        "llamacpp",
        create_model,
        options=LlamaCppOptions,
        extra="llamacpp",
        available=available,
        description="GGUF models on CPU with llama.cpp: batched sampling, KV prefix reuse",
    )

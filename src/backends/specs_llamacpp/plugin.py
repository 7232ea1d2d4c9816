"""Registers the ``llamacpp`` backend, and adds the ``specs models`` commands."""

from __future__ import annotations

import typer
from specs_core.hookspecs import hookimpl
from specs_core.plugins import RegisterBackend

from specs_llamacpp.model import LlamaCppModel, engine_unavailable_reason
from specs_llamacpp.options import LlamaCppOptions

__all__ = ["available", "create_model", "register_backends", "register_commands"]


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


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    """Add ``specs models`` (list and prepare the embedded GGUF models)."""
    from specs_llamacpp.cli import add_commands

    add_commands(cli)

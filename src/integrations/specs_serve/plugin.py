"""Adds ``specs serve`` to the ``specs`` command (the server itself loads only when it runs)."""

from __future__ import annotations

import typer
from specs_core.hookspecs import hookimpl

__all__ = ["register_commands"]


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    """Add ``specs serve`` (an OpenAI-compatible HTTP server)."""
    from specs_serve.cli import add_commands

    add_commands(cli)

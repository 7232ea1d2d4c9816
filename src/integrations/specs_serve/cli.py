"""``specs serve``: the OpenAI-compatible server on the command line."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from specs_core.cli import ConfigOption, SetOption
from specs_core.errors import InvalidInputError, PluginError, install_hint
from specs_core.resolution import resolve_config
from specs_core.solver import Specs

__all__ = ["API_KEY_VARIABLE", "add_commands", "default_max_running", "serve"]

API_KEY_VARIABLE = "SPECS_API_KEY"
"""The environment variable holding the key clients must send (unset or empty: no auth)."""

log = logging.getLogger(__name__)


def serve(
    config: ConfigOption = None,
    overrides: SetOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    name: Annotated[
        str | None,
        typer.Option(help="Model id of the config's own policy (default: the config file's name)."),
    ] = None,
    max_running: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Searches that run at once on the shared models (default: 4; 1 when a model "
            "runs one call at a time, as llama.cpp does: interleaved searches evict each "
            "other's prompt cache).",
        ),
    ] = None,
    max_waiting: Annotated[
        int, typer.Option(min=0, help="Requests that may wait for a slot; more get HTTP 429.")
    ] = 64,
    shutdown_timeout: Annotated[
        int,
        typer.Option(min=0, help="On SIGTERM/Ctrl-C, seconds in-flight requests may finish."),
    ] = 30,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the config's models behind OpenAI's chat and completion endpoints.

    Any OpenAI client works: point its base URL at http://HOST:PORT/v1 and pick a policy with
    the model name (GET /v1/models). Set SPECS_API_KEY to require that key as a bearer token.
    """
    try:
        import uvicorn

        from specs_serve.app import create_app
        from specs_serve.service import SearchService
    except ImportError as e:
        raise PluginError(
            f"specs serve needs starlette and uvicorn ({e}): {install_hint('serve')}"
        ) from e
    if not 0 <= port <= 65535:
        raise InvalidInputError(f"--port must be 0-65535, got {port}")
    resolved = resolve_config(config, None, overrides or [])
    model_id = name or (Path(config).stem if config is not None else "default")
    api_key = os.environ.get(API_KEY_VARIABLE) or None
    specs = Specs(resolved)
    if max_running is None:
        max_running = default_max_running(specs)
    service = SearchService(specs, model_id, max_running=max_running, max_waiting=max_waiting)
    app = create_app(service, api_key=api_key)
    server = _server_class()(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=shutdown_timeout,
            lifespan="on",
        )
    )
    typer.echo(
        f"specs serve: models {', '.join(service.model_ids())}; "
        f"auth {'on' if api_key else f'off (set {API_KEY_VARIABLE} to require a key)'}",
        err=True,
    )
    try:
        _run_until_signal(server)
    finally:
        service.close()
    if not server.started:
        raise InvalidInputError(
            f"the server could not start on {host}:{port} (see the message above); "
            "choose another --port or --host"
        )


def default_max_running(specs: Specs) -> int:
    """4 searches at once, or 1 when a configured model serialises its calls and depends on
    what ran before (llama.cpp): on SmolLM2, 4 interleaved searches served half the requests
    per second of 1 (BENCHMARKS.md, "specs serve under load"), as each evicted the others'
    cached prompts."""
    from specs_core.config import ROLE_NAMES

    roles = [r for r in ROLE_NAMES if getattr(specs.config, r) is not None]
    serial = any(not specs.model(r).capabilities.reproducible_interleaved for r in roles)
    return 1 if serial else 4


def _listening_line(server: Any) -> None:
    for listener in server.servers:
        for sock in listener.sockets:
            host, port = sock.getsockname()[:2]
            typer.echo(f"specs serve: listening on http://{host}:{port}", err=True)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, saying where it listens (the real port when --port 0) at any log
        level."""

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                _listening_line(self)

    return Server


def _run_until_signal(server: object) -> None:
    """Run a uvicorn server; SIGINT and SIGTERM shut it down gracefully and return.

    uvicorn handles the signal (stops accepting, lets requests finish up to the shutdown
    timeout, then cancels them), then raises it again for the handler that was there before; the
    handler installed here turns that into a normal return, so that the command exits 0.
    """
    import uvicorn

    assert isinstance(server, uvicorn.Server)

    def note(signum: int, frame: FrameType | None) -> None:
        log.info("specs serve stopped by signal %d", signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, note) for sig in handled}
    try:
        server.run()
    except SystemExit as e:  # uvicorn exits when it cannot bind; say so as one error line
        if e.code not in (0, None):
            log.debug("uvicorn exited with %s", e.code)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def add_commands(cli: typer.Typer) -> None:
    """Add ``specs serve`` to the main command."""
    cli.command("serve")(serve)

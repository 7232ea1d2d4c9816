"""The ``specs`` command.

Errors raised on purpose (:class:`~specs_core.errors.SpecsError`) and usage errors end the command
with exit code 2 and one line on stderr; ``--debug`` shows the traceback as well.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from specs_core.errors import InvalidInputError, SpecsError, install_hint
from specs_core.plugins import Registry, get_registry
from specs_core.resolution import resolve_config
from specs_core.schema import ResultRecord
from specs_core.solver import Specs
from specs_core.text import terminal_safe
from specs_core.types import SearchResult, StepRecord

__all__ = ["build_app", "main", "run"]

log = logging.getLogger(__name__)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (default: SPECS on the embedded models)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value: section.key=value (repeatable)."),
]


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _print_version(value: bool) -> None:
    if value:
        from specs_core import __version__

        typer.echo(f"specs {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Latency-aware test-time scaling: draft steps, verify with a target and a reward model."""


def _availability_table(registry: Registry) -> Table:
    table = Table(title="specs plugins")
    for column in ("kind", "name", "plugin", "status", "description"):
        table.add_column(column)
    groups: list[tuple[str, Any]] = [
        ("backend", registry.backends),
        ("reward model", registry.reward_models),
        ("policy", registry.policies),
    ]
    for kind, specs in groups:
        for name in sorted(specs):
            spec = specs[name]
            reason = spec.unavailable_reason()
            if reason is None:
                status = "available"
            else:
                hint = install_hint(spec.extra) if spec.extra else "see its docs"
                status = f"unavailable: {reason} ({hint})"
            table.add_row(
                *(
                    escape(terminal_safe(cell))
                    for cell in (kind, name, spec.plugin, status, spec.description)
                )
            )
    return table


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List backends, reward models and policies, and plugins that failed to load."""
    registry = get_registry()
    if as_json:

        def entries(specs: Any) -> list[dict[str, Any]]:
            return [
                {
                    "name": name,
                    "plugin": spec.plugin,
                    "available": spec.unavailable_reason() is None,
                    "reason": spec.unavailable_reason(),
                    "extra": spec.extra,
                    "description": spec.description,
                }
                for name, spec in sorted(specs.items())
            ]

        data = {
            "backends": entries(registry.backends),
            "reward_models": entries(registry.reward_models),
            "policies": entries(registry.policies),
            "failures": [{"plugin": f.plugin, "message": f.message} for f in registry.failures],
            "warnings": [{"plugin": w.plugin, "message": w.message} for w in registry.warnings],
        }
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console(highlight=False)
    console.print(_availability_table(registry))
    for failure in registry.failures:
        console.print(
            f"[yellow]plugin {escape(terminal_safe(repr(failure.plugin)))} skipped: "
            f"{escape(terminal_safe(failure.message))}[/yellow]"
        )
    for warning in registry.warnings:
        console.print(
            f"[yellow]plugin {escape(terminal_safe(repr(warning.plugin)))}: "
            f"{escape(terminal_safe(warning.message))}[/yellow]"
        )


def _print_step(console: Console, step: StepRecord) -> None:
    reward = "-" if step.reward is None else f"{step.reward:.3f}"
    first_line = step.text.strip().splitlines()[0] if step.text.strip() else ""
    console.print(
        f"[dim]step {step.index + 1:>2} {step.source.value:<6} {step.decision.value:<15} "
        f"reward {reward}[/dim]  {escape(terminal_safe(first_line[:90]))}"
    )


def _print_result(console: Console, result: SearchResult) -> None:
    usage = result.usage
    console.print()
    console.print(terminal_safe(result.text.strip()), markup=False, highlight=False)
    console.print()
    console.print(f"[bold]answer:[/bold] {escape(terminal_safe(str(result.answer)))}")
    console.print(
        f"policy {result.policy}: {len(result.steps)} steps, the draft wrote {result.draft_steps} "
        f"({result.accepted_draft_steps} accepted, {result.rejected_draft_steps} rejected draft "
        f"steps, {result.switches} switches to draft)"
    )
    phases = ", ".join(
        f"{k} {v:.2f}s" for k, v in usage.latency_s.items() if k != "total" and v > 0
    )
    console.print(f"latency {usage.latency_s['total']:.2f}s: {phases}")
    tokens = ", ".join(
        f"{m} {u.prompt} prompt / {u.generated} generated / {u.cached} cached"
        for m, u in usage.tokens.items()
    )
    console.print(f"tokens: {tokens}")


def solve(
    question: Annotated[
        str, typer.Argument(help="The question to solve; - reads it from standard input.")
    ],
    config: ConfigOption = None,
    policy: Annotated[
        str | None, typer.Option("--policy", "-p", help="A registered policy name.")
    ] = None,
    overrides: SetOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole result as JSON.")
    ] = False,
) -> None:
    """Solve one question and print the answer, latency per phase and the draft's share."""
    if question == "-":
        question = _read_stdin()
    try:
        question.encode("utf-8")
    except UnicodeEncodeError:  # bytes the terminal's encoding could not decode
        raise InvalidInputError(
            "the question is not valid text in this terminal's encoding; pass UTF-8 text, or "
            "pipe it in with `specs solve -`"
        ) from None
    if not question.strip():
        raise InvalidInputError("the question is empty; pass the problem text to solve")
    with Specs(resolve_config(config, policy, overrides or [])) as specs:
        console = _stderr()
        on_step = None if as_json else (lambda step: _print_step(console, step))
        result = specs.solve(question, on_step=on_step)
    if as_json:
        data = ResultRecord.from_result(result).to_json()
        typer.echo(json.dumps(data, indent=2, allow_nan=False))
    else:
        _print_result(Console(highlight=False), result)
    warning = never_drafted(result)
    if warning:
        _stderr().print(f"[yellow]warning: {escape(warning)}[/yellow]")


def _read_stdin() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise InvalidInputError(
            f"the question on standard input is not UTF-8 (byte {e.start}); convert it first, "
            "e.g. iconv -t UTF-8"
        ) from None


def never_drafted(result: SearchResult) -> str | None:
    """Why a SPECS search never left target mode, when no reward passed ``tau_sw`` on a search
    of two or more target steps (``None`` otherwise)."""
    extra = result.extra
    if "tau_sw" not in extra or result.switches or result.target_steps < 2:
        return None
    best, tau_sw = extra.get("best_target_reward"), extra["tau_sw"]
    if not isinstance(best, int | float) or not isinstance(tau_sw, int | float) or best > tau_sw:
        return None
    return (
        f"SPECS never drafted: no reward passed tau_sw={tau_sw:g} (the best was {best:.3f}), "
        "so the target wrote every step. Fit the thresholds to this reward model with "
        "`specs calibrate`, or set policy.tau_sw lower."
    )


def build_app(registry: Registry | None = None) -> typer.Typer:
    """The ``specs`` application: the core's commands, then those the plugins add through the
    ``register_commands`` hook (e.g. ``specs models`` from the llama.cpp backend)."""
    from specs_core.eval.cli import add_commands as add_eval_commands

    cli = typer.Typer(
        name="specs",
        help="Latency-aware test-time scaling: draft steps, verify with a target and a reward "
        "model.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    cli.callback(epilog="Add --debug anywhere to show tracebacks and debug logs.")(_root)
    cli.command()(plugins)
    cli.command()(solve)
    add_eval_commands(cli)
    (registry or get_registry()).add_commands(cli)
    return cli


def run(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code (errors: one line, code 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        command = typer.main.get_command(build_app())
        # Outside standalone mode typer turns Ctrl-C (and any typer.Exit) into a returned code.
        code = command.main(args=args, prog_name="specs", standalone_mode=False)
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.TyperException as e:  # usage errors: missing or bad arguments and options
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        typer.echo(f"error: {message} (see --help)", err=True)
        return 2
    except SpecsError as e:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {terminal_safe(str(e))}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as e:
        if debug:
            traceback.print_exc()
        else:
            log.debug("unexpected error", exc_info=True)
        typer.echo(
            f"error: unexpected {type(e).__name__}: {terminal_safe(str(e))} "
            "(run again with --debug for the traceback)",
            err=True,
        )
        return 1
    if not isinstance(code, int) or isinstance(code, bool):
        return 0  # a command's own return value, not an exit code
    if code == 130:
        typer.echo("interrupted", err=True)
    return code


def main() -> None:
    """Entry point of the ``specs`` console script."""
    sys.exit(run())

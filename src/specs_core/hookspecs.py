"""The plugin hooks. A plugin is a module (or object) with functions marked ``@hookimpl``.

Plugins are found through the ``specs`` entry-point group::

    [project.entry-points.specs]
    my_prm = "my_prm_package.plugin"

Built-in backends, reward models and policies register through these same hooks. Hooks grow by
adding arguments; an implementation may take any subset of a hook's arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from specs_core.plugins import RegisterBackend, RegisterPolicy, RegisterRewardModel

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("specs")
hookimpl = pluggy.HookimplMarker("specs")


@hookspec
def register_backends(register: RegisterBackend) -> None:
    """Register inference backends.

    Call ``register(name, factory, options=OptionsModel, extra="pip-extra", available=check,
    description="...")`` once per backend. ``factory(options)`` receives a validated instance of
    ``OptionsModel`` (a pydantic model) and returns a :class:`~specs_core.protocols.LanguageModel`;
    it must be cheap (weights load on first use). ``available()`` returns ``None`` when the engine
    can be used, or a short reason when it cannot.
    """


@hookspec
def register_reward_models(register: RegisterRewardModel) -> None:
    """Register reward models.

    Call ``register(name, factory, options=OptionsModel, extra=None, available=None,
    description="...")``. ``factory(options, models)`` receives validated options and a
    :class:`~specs_core.plugins.ModelResolver` that turns a role name (``"target"``) or an inline
    model config into a shared loaded model; it returns a
    :class:`~specs_core.protocols.RewardModel`.
    """


@hookspec
def register_policies(register: RegisterPolicy) -> None:
    """Register search policies.

    Call ``register(name, factory, options=OptionsModel, roles=("target", "reward"),
    description="...")``. ``factory(options, roles)`` receives validated options and a
    :class:`~specs_core.protocols.Roles` and returns an object with
    ``run(question, *, on_step=None) -> SearchResult``.
    """


@hookspec
def register_commands(cli: typer.Typer) -> None:
    """Add commands to the ``specs`` command line.

    ``cli`` is the main typer application: add a command group with
    ``cli.add_typer(group, name="models")`` or a command with ``cli.command("name")(function)``.
    Called each time the command line starts, after the plugins have loaded; raise
    :class:`~specs_core.errors.SpecsError` subclasses for errors the user should see as one line.
    """

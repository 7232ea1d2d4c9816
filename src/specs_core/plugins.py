"""The plugin manager and the registry of backends, reward models and policies.

The manager is built lazily by :func:`get_registry` (never at import time). The core's own
plugins (the policies, the judge and composite reward models, the toy backend) are registered
first, then every plugin of the ``specs`` entry-point group: the backends that ship with specs
(``llamacpp``, ``transformers``, ``sglang``, ``openai``) register there like any third-party
plugin, so the core names none of them. A plugin that fails to import, raises in a hook or
registers a duplicate name is reported in :attr:`Registry.failures` and skipped; the rest keep
working.

``SPECS_LOAD_PLUGINS`` (comma-separated entry-point names) limits which entry-point plugins load,
the bundled backends included; set it to an empty string to load none.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pluggy
from pydantic import BaseModel, ConfigDict

from specs_core import hookspecs
from specs_core.errors import PluginError

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "LOAD_PLUGINS_ENV",
    "BackendSpec",
    "NoOptions",
    "PluginFailure",
    "PolicySpec",
    "RegisterBackend",
    "RegisterPolicy",
    "RegisterRewardModel",
    "Registry",
    "RewardSpec",
    "build_registry",
    "get_registry",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "specs"
LOAD_PLUGINS_ENV = "SPECS_LOAD_PLUGINS"

#: Modules of the core that register its built-ins through the hooks (backends are entry points).
BUILTIN_PLUGINS: tuple[str, ...] = (
    "specs_core.policies.plugin",
    "specs_core.judge",
    "specs_core.likelihood",
    "specs_core.probe",
    "specs_core.composite",
    "specs_core.testing.plugin",
)


class NoOptions(BaseModel):
    """Options model for a component that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class _Spec:
    name: str
    factory: Callable[..., Any]
    options: type[BaseModel]
    description: str
    plugin: str
    extra: str | None
    available: Callable[[], str | None] | None

    def unavailable_reason(self) -> str | None:
        """``None`` when usable, else why not."""
        if self.available is None:
            return None
        try:
            return self.available()
        except Exception as e:  # a broken check must not break listing
            return f"availability check failed: {e}"


@dataclass(frozen=True)
class BackendSpec(_Spec):
    """A registered backend: ``factory(options) -> LanguageModel``."""


@dataclass(frozen=True)
class RewardSpec(_Spec):
    """A registered reward model: ``factory(options, models: ModelResolver) -> RewardModel``."""


@dataclass(frozen=True)
class PolicySpec(_Spec):
    """A registered policy: ``factory(options, roles: Roles) -> Policy``."""

    roles: tuple[str, ...] = ("target",)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or registered something wrong."""

    plugin: str
    message: str


class RegisterBackend(Protocol):
    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] = ...,
        extra: str | None = ...,
        available: Callable[[], str | None] | None = ...,
        description: str = ...,
    ) -> None: ...


RegisterRewardModel = RegisterBackend


class RegisterPolicy(Protocol):
    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] = ...,
        roles: Iterable[str] = ...,
        description: str = ...,
    ) -> None: ...


_ROLES = ("target", "draft", "reward")


@dataclass
class Registry:
    """Everything the loaded plugins registered, and what failed."""

    backends: dict[str, BackendSpec] = field(default_factory=dict)
    reward_models: dict[str, RewardSpec] = field(default_factory=dict)
    policies: dict[str, PolicySpec] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    warnings: list[PluginFailure] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    command_hooks: list[tuple[str, Callable[..., Any]]] = field(default_factory=list)

    def add_commands(self, cli: Any) -> None:
        """Let every plugin's ``register_commands`` hook add commands to ``cli`` (a typer app).

        A hook that raises is reported in :attr:`failures` and skipped.
        """
        for plugin, function in self.command_hooks:
            try:
                function(cli=cli)
            except (Exception, SystemExit) as e:
                message = f"register_commands failed: {_why(e)}"
                self.failures.append(PluginFailure(plugin, message))
                log.warning("plugin %r skipped: %s", plugin, message)

    def _get(self, table: Mapping[str, _Spec], kind: str, name: str) -> Any:
        spec = table.get(name)
        if spec is None:
            known = ", ".join(sorted(table)) or "none"
            raise PluginError(f"unknown {kind} {name!r}; registered: {known} (see `specs plugins`)")
        return spec

    def backend(self, name: str) -> BackendSpec:
        """The backend called ``name``, or a :class:`PluginError` listing the known ones."""
        spec: BackendSpec = self._get(self.backends, "backend", name)
        return spec

    def reward_model(self, name: str) -> RewardSpec:
        """The reward model called ``name``, or a :class:`PluginError` listing the known ones."""
        spec: RewardSpec = self._get(self.reward_models, "reward model", name)
        return spec

    def policy(self, name: str) -> PolicySpec:
        """The policy called ``name``, or a :class:`PluginError` listing the known ones."""
        spec: PolicySpec = self._get(self.policies, "policy", name)
        return spec


def _check_name(kind: str, name: object) -> str:
    if (
        not isinstance(name, str)
        or not name
        or not name.replace("_", "").replace("-", "").isalnum()
    ):
        raise PluginError(f"{kind} name {name!r} is invalid: use letters, digits, '-' and '_'")
    return name


def _check_options(options: object) -> type[BaseModel]:
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise PluginError(f"options must be a pydantic model class, got {options!r}")
    return options


class _Collector:
    """Builds the ``register`` callbacks handed to one plugin's hooks."""

    def __init__(self, registry: Registry, plugin: str) -> None:
        self.registry = registry
        self.plugin = plugin
        self._added: list[tuple[dict[str, Any], str]] = []

    def withdraw(self) -> None:
        """Remove everything registered through this collector."""
        for table, name in self._added:
            table.pop(name, None)
        self._added.clear()

    def _add(self, table: dict[str, Any], kind: str, spec: _Spec) -> None:
        existing = table.get(spec.name)
        if existing is not None:
            raise PluginError(
                f"{kind} {spec.name!r} is already registered by plugin {existing.plugin!r}; "
                "rename it"
            )
        if not callable(spec.factory):
            raise PluginError(f"{kind} {spec.name!r}: factory {spec.factory!r} is not callable")
        table[spec.name] = spec
        self._added.append((table, spec.name))

    def _engine_component(
        self,
        kind: str,
        table: dict[str, Any],
        spec_type: type[BackendSpec] | type[RewardSpec],
        name: str,
        factory: Callable[..., Any],
        options: type[BaseModel],
        extra: str | None,
        available: Callable[[], str | None] | None,
        description: str,
    ) -> None:
        spec = spec_type(
            _check_name(kind, name), factory, _check_options(options), description,
            self.plugin, extra, available,
        )  # fmt: skip
        self._add(table, kind, spec)

    def backend(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] = NoOptions,
        extra: str | None = None,
        available: Callable[[], str | None] | None = None,
        description: str = "",
    ) -> None:
        self._engine_component(
            "backend", self.registry.backends, BackendSpec,
            name, factory, options, extra, available, description,
        )  # fmt: skip

    def reward_model(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] = NoOptions,
        extra: str | None = None,
        available: Callable[[], str | None] | None = None,
        description: str = "",
    ) -> None:
        self._engine_component(
            "reward model", self.registry.reward_models, RewardSpec,
            name, factory, options, extra, available, description,
        )  # fmt: skip

    def policy(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] = NoOptions,
        roles: Iterable[str] = ("target",),
        description: str = "",
    ) -> None:
        roles = tuple(roles)
        bad = [r for r in roles if r not in _ROLES]
        if bad:
            raise PluginError(
                f"policy {name!r}: unknown roles {bad}; roles are {', '.join(_ROLES)}"
            )
        spec = PolicySpec(
            _check_name("policy", name),
            factory,
            _check_options(options),
            description,
            self.plugin,
            None,
            None,
            roles,
        )
        self._add(self.registry.policies, "policy", spec)


def _why(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r})"
    return str(error)


def _call(function: Callable[..., Any], argnames: Iterable[str], **kwargs: Any) -> Any:
    """Call a hook implementation with the hook arguments it declares (hooks grow by adding
    arguments, as in pluggy)."""
    wanted = set(argnames)
    return function(**{k: v for k, v in kwargs.items() if k in wanted})


def _entry_point_plugins(env: Mapping[str, str]) -> list[importlib.metadata.EntryPoint]:
    eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    wanted = env.get(LOAD_PLUGINS_ENV)
    if wanted is None:
        return eps
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    return [ep for ep in eps if ep.name in names]


def build_registry(
    *,
    builtins: Iterable[str] = BUILTIN_PLUGINS,
    entry_points: bool = True,
    extra_plugins: Iterable[object] = (),
    env: Mapping[str, str] | None = None,
) -> Registry:
    """Build a fresh plugin manager and registry.

    Args:
        builtins: importable module names of built-in plugins.
        entry_points: also load the plugins of the ``specs`` entry-point group (the bundled
            backends and third-party plugins).
        extra_plugins: plugin objects registered last (used by tests and embedding apps).
        env: the environment to read ``SPECS_LOAD_PLUGINS`` from (default ``os.environ``).
    """
    env = os.environ if env is None else env
    registry = Registry()
    pm = pluggy.PluginManager("specs")
    pm.add_hookspecs(hookspecs)

    def add(plugin: object, name: str) -> None:
        try:
            pm.register(plugin, name=name)
        except Exception as e:
            registry.failures.append(PluginFailure(name, f"cannot be registered: {e}"))
            return
        unknown = sorted(
            caller.name
            for caller in pm.get_hookcallers(plugin) or ()
            if not caller.has_spec()
            and not all(i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin)
        )
        if unknown:  # a misspelled hook would otherwise be ignored without a word
            known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("register_")))
            message = (
                f"implements unknown hooks {unknown}, which are never called (misspelled? the "
                f"hooks are {known}; mark a hook of a newer specs with optionalhook=True)"
            )
            registry.warnings.append(PluginFailure(name, message))
            log.warning("plugin %r %s", name, message)
        registry.plugins.append(name)

    for module_name in builtins:
        try:
            add(importlib.import_module(module_name), module_name)
        except (Exception, SystemExit) as e:
            registry.failures.append(PluginFailure(module_name, f"failed to import: {_why(e)}"))
    if entry_points:
        for ep in _entry_point_plugins(env):
            try:
                add(ep.load(), ep.name)
            except (Exception, SystemExit) as e:
                registry.failures.append(PluginFailure(ep.name, f"failed to import: {_why(e)}"))
    for i, obj in enumerate(extra_plugins):
        add(obj, getattr(obj, "__name__", f"plugin-{i}"))

    hooks: list[tuple[str, str]] = [
        ("register_backends", "backend"),
        ("register_reward_models", "reward_model"),
        ("register_policies", "policy"),
    ]
    for hook_name, method in hooks:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            collector = _Collector(registry, impl.plugin_name)
            try:
                _call(impl.function, impl.argnames, register=getattr(collector, method))
            except (Exception, SystemExit) as e:
                collector.withdraw()  # nothing of a failed hook stays half registered
                message = f"{hook_name} failed: {_why(e)}"
                registry.failures.append(PluginFailure(impl.plugin_name, message))
                log.warning("plugin %r skipped: %s", impl.plugin_name, message)
    registry.command_hooks = [
        (impl.plugin_name, functools.partial(_call, impl.function, impl.argnames))
        for impl in pm.hook.register_commands.get_hookimpls()
    ]
    return registry


_registry: Registry | None = None
_registry_lock = threading.Lock()


def get_registry(*, refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    with _registry_lock:
        if _registry is None or refresh:
            _registry = build_registry()
        return _registry

"""The plugin manager: built-ins through the hooks, broken plugins reported and skipped."""

from __future__ import annotations

import types
from typing import Any

import pytest
from specs_core import hookimpl
from specs_core.errors import PluginError
from specs_core.plugins import LOAD_PLUGINS_ENV, BackendSpec, build_registry


def _plugin(name: str, **hooks: Any) -> types.SimpleNamespace:
    ns = types.SimpleNamespace(__name__=name)
    for hook, fn in hooks.items():
        setattr(ns, hook, hookimpl(fn))
    return ns


def _backend_factory(options: Any) -> None:
    return None


def test_builtins_register_through_the_hooks() -> None:
    core = build_registry(entry_points=False)
    assert {"specs", "beam_search", "best_of_n", "rsd", "majority", "greedy"} <= set(core.policies)
    assert set(core.backends) == {"toy"}  # the core names no engine backend
    assert {"judge", "toy"} <= set(core.reward_models)
    assert core.failures == []
    assert core.backend("toy").plugin == "specs_core.testing.plugin"


def test_bundled_backends_register_as_entry_point_plugins() -> None:
    registry = build_registry(env={LOAD_PLUGINS_ENV: "llamacpp,transformers,sglang,openai"})
    assert registry.failures == []
    for name in ("llamacpp", "transformers", "sglang", "openai"):
        assert registry.backend(name).plugin == name  # registered by the entry point `name`
    assert "sglang-prm" in registry.reward_models


def test_extra_plugin_registers_a_backend() -> None:
    def register_backends(register: Any) -> None:
        register("echo", _backend_factory, description="test double")

    registry = build_registry(
        builtins=(),
        entry_points=False,
        extra_plugins=[_plugin("echo_plugin", register_backends=register_backends)],
    )
    spec = registry.backend("echo")
    assert isinstance(spec, BackendSpec) and spec.plugin == "echo_plugin"


def test_plugin_raising_in_its_hook_is_reported_and_skipped() -> None:
    def broken(register: Any) -> None:
        raise RuntimeError("boom")

    def fine(register: Any) -> None:
        register("fine", _backend_factory)

    registry = build_registry(
        builtins=(),
        entry_points=False,
        extra_plugins=[
            _plugin("broken", register_backends=broken),
            _plugin("fine", register_backends=fine),
        ],
    )
    assert "fine" in registry.backends
    assert [(f.plugin, "boom" in f.message) for f in registry.failures] == [("broken", True)]


def test_duplicate_name_is_reported_naming_both_plugins() -> None:
    def first(register: Any) -> None:
        register("same", _backend_factory)

    def second(register: Any) -> None:
        register("same", _backend_factory)

    registry = build_registry(
        builtins=(),
        entry_points=False,
        extra_plugins=[
            _plugin("one", register_backends=first),
            _plugin("two", register_backends=second),
        ],
    )
    assert registry.backend("same").plugin == "one"
    (failure,) = registry.failures
    assert failure.plugin == "two" and "'one'" in failure.message


def test_builtin_module_that_fails_to_import_is_reported() -> None:
    registry = build_registry(builtins=("specs_core.no_such_module",), entry_points=False)
    (failure,) = registry.failures
    assert failure.plugin == "specs_core.no_such_module" and "import" in failure.message


def test_bad_registrations_are_rejected() -> None:
    def bad_name(register: Any) -> None:
        register("bad name!", _backend_factory)

    def bad_options(register: Any) -> None:
        register("x", _backend_factory, options=dict)

    def bad_roles(register: Any) -> None:
        register("p", _backend_factory, roles=("teacher",))

    registry = build_registry(
        builtins=(),
        entry_points=False,
        extra_plugins=[
            _plugin("a", register_backends=bad_name),
            _plugin("b", register_backends=bad_options),
            _plugin("c", register_policies=bad_roles),
        ],
    )
    messages = {f.plugin: f.message for f in registry.failures}
    assert "invalid" in messages["a"]
    assert "pydantic" in messages["b"]
    assert "teacher" in messages["c"]


def test_unknown_name_lists_registered_ones() -> None:
    registry = build_registry(entry_points=False)
    with pytest.raises(PluginError, match=r"unknown policy 'nope'.*specs"):
        registry.policy("nope")


def test_env_variable_limits_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    all_plugins = build_registry(builtins=(), env={}).plugins
    none = build_registry(builtins=(), env={LOAD_PLUGINS_ENV: ""}).plugins
    assert none == []
    if all_plugins:
        first = all_plugins[0]
        assert build_registry(builtins=(), env={LOAD_PLUGINS_ENV: first}).plugins == [first]


def test_a_plugin_calling_sys_exit_is_reported_and_the_others_still_load(tmp_path: Any) -> None:
    import sys

    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit(3)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        registry = build_registry(
            builtins=("exiting_plugin", "specs_core.policies.plugin"), entry_points=False
        )
    finally:
        sys.path.remove(str(tmp_path))
    (failure,) = registry.failures
    assert failure.plugin == "exiting_plugin" and "sys.exit(3)" in failure.message
    assert "specs" in registry.policies


def test_a_hook_calling_sys_exit_is_reported() -> None:
    def leave(register: Any) -> None:
        raise SystemExit(4)

    registry = build_registry(
        builtins=(), entry_points=False, extra_plugins=[_plugin("leaver", register_backends=leave)]
    )
    (failure,) = registry.failures
    assert failure.plugin == "leaver" and "sys.exit(4)" in failure.message


def test_a_hook_that_fails_half_way_leaves_nothing_registered() -> None:
    def one_good_one_duplicate(register: Any) -> None:
        register("mine", _backend_factory)
        register("taken", _backend_factory)

    registry = build_registry(
        builtins=(),
        entry_points=False,
        extra_plugins=[
            _plugin(
                "owner", register_backends=lambda register: register("taken", _backend_factory)
            ),
            _plugin("half", register_backends=one_good_one_duplicate),
        ],
    )
    assert "mine" not in registry.backends
    assert registry.backend("taken").plugin == "owner"
    (failure,) = registry.failures
    assert failure.plugin == "half"


def test_a_misspelled_hook_is_reported_not_ignored() -> None:
    newer = types.SimpleNamespace(__name__="newer")
    newer.register_widgets = hookimpl(optionalhook=True)(lambda register: None)
    registry = build_registry(
        builtins=(),
        entry_points=False,
        extra_plugins=[
            _plugin(
                "typo",
                register_backend=lambda register: None,
                register_policies=lambda register: register("mine", _backend_factory),
            ),
            newer,
        ],
    )
    assert "typo" in registry.plugins and "mine" in registry.policies  # its other hooks work
    assert not registry.failures
    (warning,) = registry.warnings  # a hook of a newer specs, marked optional, is not one
    assert warning.plugin == "typo"
    assert "register_backend" in warning.message and "register_backends" in warning.message

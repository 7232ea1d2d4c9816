"""The shape of the code: the core names no backend, backends are leaves, hooks are documented."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
from pathlib import Path

import pytest
from specs_core import hookspecs
from specs_core.cli import build_app
from specs_core.plugins import LOAD_PLUGINS_ENV, build_registry

SRC = Path(__file__).resolve().parents[1] / "src"
BACKENDS = ("specs_llamacpp", "specs_transformers", "specs_sglang", "specs_openai")
PROJECT_PACKAGES = (*BACKENDS, "specs_langchain", "specs_core")


def _imported_packages(package_dir: Path) -> dict[str, set[str]]:
    """Top-level project packages each module of ``package_dir`` imports (at any depth)."""
    found: dict[str, set[str]] = {}
    for path in package_dir.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(SRC))] = names & set(PROJECT_PACKAGES)
    return found


def test_the_core_imports_no_backend_and_no_integration() -> None:
    imports = _imported_packages(SRC / "specs_core")
    offending = {path: names - {"specs_core"} for path, names in imports.items()}
    assert {p: n for p, n in offending.items() if n} == {}
    text = "\n".join(p.read_text(encoding="utf-8") for p in (SRC / "specs_core").rglob("*.py"))
    for backend in BACKENDS:
        assert backend not in text  # not even by name (a string, a docstring)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backend_imports_only_the_core(backend: str) -> None:
    imports = _imported_packages(SRC / "backends" / backend)
    assert imports, backend
    for path, names in imports.items():
        assert names <= {"specs_core", backend}, path


def test_the_bundled_backends_are_entry_points_in_the_installed_metadata() -> None:
    points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="specs")}
    for backend in BACKENDS:
        name = backend.removeprefix("specs_")
        assert points.get(name) == f"{backend}.plugin"


def test_plugin_commands_come_from_the_register_commands_hook() -> None:
    def command_names(env: dict[str, str]) -> set[str]:
        app = build_app(build_registry(env=env))
        groups = {g.name for g in app.registered_groups}
        return groups | {c.name or c.callback.__name__ for c in app.registered_commands}

    with_llamacpp = command_names({LOAD_PLUGINS_ENV: "llamacpp"})
    without = command_names({LOAD_PLUGINS_ENV: ""})
    assert {"solve", "plugins", "bench", "sweep", "report"} <= without
    assert "models" in with_llamacpp and "models" not in without


def test_a_failing_register_commands_hook_is_reported_not_fatal() -> None:
    from specs_core import hookimpl

    class Broken:
        __name__ = "broken-commands"

        @staticmethod
        @hookimpl
        def register_commands(cli: object) -> None:
            raise RuntimeError("boom")

    registry = build_registry(entry_points=False, extra_plugins=[Broken()])
    app = build_app(registry)
    assert any(c.callback.__name__ == "solve" for c in app.registered_commands)
    assert [(f.plugin, "boom" in f.message) for f in registry.failures] == [
        ("broken-commands", True)
    ]


def test_every_hook_is_documented_and_called_by_the_registry() -> None:
    hooks = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("register_")
    ]
    assert set(hooks) == {
        "register_backends",
        "register_reward_models",
        "register_policies",
        "register_commands",
    }
    for name in hooks:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name
    calls: dict[str, list[object]] = {name: [] for name in hooks}

    class Recorder:
        __name__ = "recorder"

    for name in hooks:
        # a hook implementation declares the hook's own argument name
        arg = "cli" if name == "register_commands" else "register"
        code = f"def {name}({arg}):\n    record({arg})\n"
        namespace: dict[str, object] = {"record": calls[name].append}
        exec(code, namespace)
        setattr(Recorder, name, staticmethod(hookspecs.hookimpl(namespace[name])))
    registry = build_registry(builtins=(), entry_points=False, extra_plugins=[Recorder()])
    build_app(registry)
    assert all(len(calls[name]) == 1 for name in hooks), calls

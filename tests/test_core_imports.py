"""`import specs_core` and every backend package must import without pulling in an engine."""

from __future__ import annotations

import subprocess
import sys

import pytest

ENGINES = ("torch", "transformers", "llama_cpp", "sglang", "langchain_core", "httpx", "matplotlib")


def _loaded_after(statement: str) -> list[str]:
    code = f"{statement}\nimport sys\nprint(','.join(m for m in {ENGINES!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_specs_core_loads_no_engine() -> None:
    assert _loaded_after("import specs_core") == []


def test_building_the_registry_loads_no_engine() -> None:
    loaded = _loaded_after("from specs_core.plugins import build_registry; build_registry()")
    assert loaded == []


@pytest.mark.parametrize(
    "module",
    ["specs_llamacpp", "specs_transformers", "specs_sglang", "specs_openai", "specs_core.cli"],
)
def test_backend_packages_import_lazily(module: str) -> None:
    assert _loaded_after(f"import {module}") == []


def test_no_plain_backends_or_integrations_package() -> None:
    for name in ("backends", "integrations"):
        code = f"import importlib.util; print(importlib.util.find_spec({name!r}))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "None", f"{name!r} must not be importable"

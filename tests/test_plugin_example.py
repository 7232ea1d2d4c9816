"""The example PRM plugin package, installed for real and discovered through its entry point."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from specs_core import Specs
from specs_core.plugins import LOAD_PLUGINS_ENV, build_registry

ROOT = Path(__file__).resolve().parents[1]


def _installed() -> bool:
    eps = importlib.metadata.entry_points(group="specs")
    return any(ep.name == "arithmetic" for ep in eps)


pytestmark = pytest.mark.skipif(
    not _installed(), reason="examples/prm-plugin is not installed (make install installs it)"
)


def test_entry_point_plugin_is_discovered() -> None:
    registry = build_registry(env={})
    spec = registry.reward_model("arithmetic")
    assert spec.plugin == "arithmetic"
    assert registry.failures == []


def test_env_variable_can_exclude_it() -> None:
    registry = build_registry(env={LOAD_PLUGINS_ENV: ""})
    assert "arithmetic" not in registry.reward_models


def test_specs_plugins_lists_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "specs_core", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rewards = {r["name"]: r for r in json.loads(out.stdout)["reward_models"]}
    assert rewards["arithmetic"]["plugin"] == "arithmetic"
    assert rewards["arithmetic"]["available"] is True


def test_yaml_config_uses_it_by_name(tmp_path: Path) -> None:
    config = tmp_path / "arith.yaml"
    config.write_text(
        "draft: {backend: toy, variant: draft}\n"
        "target: {backend: toy}\n"
        "reward: {name: arithmetic, neutral: 0.6}\n"
        "policy: {name: specs, n: 3, max_steps: 6, seed: 1}\n"
    )
    with Specs.from_config(config) as specs:
        result = specs.solve("What is 3 + 4?")
        assert specs.reward_model().name == "arithmetic"
    assert result.steps and all(s.reward is not None for s in result.steps)


def test_composite_of_arithmetic_and_toy_applies_weights() -> None:
    config = {
        "target": {"backend": "toy"},
        "reward": {
            "name": "composite",
            "parts": [
                {"name": "arithmetic", "weight": 3, "neutral": 1.0},
                {"name": "toy", "weight": 1},
            ],
        },
        "policy": {"name": "best_of_n", "n": 2},
    }
    with Specs.from_config(config) as specs:
        composite = specs.reward_model()
        toy = specs.build_reward_model({"name": "toy"})
        steps = [["We think.", "2 + 2 = 5"]]
        toy_rewards = toy.score("q", steps)[0]
        expected = [0.75 * a + 0.25 * t for a, t in zip([1.0, 0.0], toy_rewards, strict=True)]
        (got,) = composite.score("q", steps)
        assert got == pytest.approx(expected)
        assert composite.score_last("q", steps) == pytest.approx([expected[-1]])

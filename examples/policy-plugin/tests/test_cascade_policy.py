"""The example policy plugin, installed as its own package and found through its entry point.

It reports latency per phase and tokens per model through specs' public search API alone.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from specs_core import Specs
from specs_core.plugins import build_registry
from specs_core.types import PHASES

ROOT = Path(__file__).resolve().parents[3]
TOY = {
    "draft": {"backend": "toy", "variant": "draft"},
    "target": {"backend": "toy", "variant": "target"},
    "reward": {"name": "toy"},
    "policy": {"name": "cascade", "n": 3, "seed": 1},
}
QUESTION = "What is 2 + 3?"

pytestmark = pytest.mark.skipif(
    not any(ep.name == "cascade" for ep in importlib.metadata.entry_points(group="specs")),
    reason="examples/policy-plugin is not installed (make install installs it)",
)


def test_the_policy_is_registered_by_its_entry_point() -> None:
    registry = build_registry()
    spec = registry.policy("cascade")
    assert spec.plugin == "cascade" and spec.roles == ("draft", "target", "reward")


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_it_reports_latency_per_phase_and_tokens_per_model(threshold: float) -> None:
    config = {**TOY, "policy": {**TOY["policy"], "threshold": threshold}}
    with Specs.from_config(config) as specs:
        result = specs.solve(QUESTION)
    latency, tokens = result.usage.latency_s, result.usage.tokens
    assert set(latency) == {*PHASES, "total"}
    assert latency["draft_generate"] > 0 and latency["reward"] > 0
    assert tokens["toy-draft"].generated > 0 and tokens["toy-draft"].calls == 1
    deferred = threshold == 1.0  # no reward reaches 1: the target answers too
    assert result.extra["deferred"] is deferred
    assert (latency["target_generate"] > 0) is deferred
    assert ("toy-target" in tokens) is deferred
    assert latency["total"] >= latency["draft_generate"] + latency["target_generate"]
    assert result.steps and result.text == "".join(result.solution_steps)
    if not deferred:
        assert result.accepted_draft_steps == len(result.steps)


def test_the_cli_runs_it(tmp_path: Path) -> None:
    config = tmp_path / "cascade.yaml"
    config.write_text(json.dumps(TOY), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "specs_core", "solve", QUESTION, "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["policy"] == "cascade" and data["latency_s"]["draft_generate"] > 0

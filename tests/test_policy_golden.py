"""Every built-in policy reproduces its golden results on the toy backend (see golden_support)."""

from __future__ import annotations

import json
import os

import pytest
from specs_core.config import validate_options
from specs_core.plugins import build_registry
from specs_core.protocols import Roles
from specs_core.testing import ToyLanguageModel, ToyRewardModel

from golden_support import GOLDEN_FILE, case_key, cases, project

REGENERATE = os.environ.get("SPECS_REGEN_GOLDEN") == "1"


def _run(registry, policy: str, question: str, options: dict) -> dict:
    roles = Roles(
        target=ToyLanguageModel("target"), draft=ToyLanguageModel("draft"), reward=ToyRewardModel()
    )
    spec = registry.policy(policy)
    return project(
        spec.factory(validate_options(options, spec.options, "policy"), roles).run(question)
    )


def test_every_policy_reproduces_its_golden_results():
    registry = build_registry(builtins=("specs_core.policies.plugin",), entry_points=False)
    got = {case_key(*case): _run(registry, *case) for case in cases()}
    if REGENERATE:
        lines = [f"{json.dumps(k)}: {json.dumps(got[k], sort_keys=True)}" for k in sorted(got)]
        GOLDEN_FILE.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
        pytest.skip("golden results regenerated")
    golden = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
    assert sorted(got) == sorted(golden)
    changed = [key for key in golden if got[key] != golden[key]]
    assert not changed, f"{len(changed)} of {len(golden)} runs changed, e.g. {changed[:3]}"

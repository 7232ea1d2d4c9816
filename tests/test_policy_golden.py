"""Every built-in policy reproduces its golden results on the toy backend (see golden_support)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from specs_core.config import validate_options
from specs_core.plugins import Registry, build_registry
from specs_core.protocols import Roles
from specs_core.testing import ToyLanguageModel, ToyRewardModel

from golden_support import (
    BEFORE_FIDELITY_FILE,
    GOLDEN_FILE,
    case_key,
    cases,
    legacy_options,
    load_golden,
    project,
    write_golden,
)

REGENERATE = os.environ.get("SPECS_REGEN_GOLDEN") == "1"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return build_registry(builtins=("specs_core.policies.plugin",), entry_points=False)


def _run(registry: Registry, policy: str, question: str, options: dict[str, Any]) -> Any:
    roles = Roles(
        target=ToyLanguageModel("target"), draft=ToyLanguageModel("draft"), reward=ToyRewardModel()
    )
    spec = registry.policy(policy)
    return project(
        spec.factory(validate_options(options, spec.options, "policy"), roles).run(question)
    )


def _compare(got: dict[str, Any], golden: dict[str, Any]) -> None:
    assert sorted(got) == sorted(golden)
    changed = [key for key in golden if got[key] != golden[key]]
    assert not changed, f"{len(changed)} of {len(golden)} runs changed, e.g. {changed[:3]}"


def test_every_policy_reproduces_its_golden_results(registry: Registry) -> None:
    got = {case_key(*case): _run(registry, *case) for case in cases()}
    if REGENERATE:
        write_golden(GOLDEN_FILE, got)
        pytest.skip("golden results regenerated")
    _compare(got, load_golden(GOLDEN_FILE))


def test_the_legacy_options_reproduce_the_results_before_the_fidelity_changes(
    registry: Registry,
) -> None:
    got = {
        case_key(policy, question, options): _run(
            registry, policy, question, legacy_options(policy, options)
        )
        for policy, question, options in cases()
    }
    _compare(got, load_golden(BEFORE_FIDELITY_FILE))

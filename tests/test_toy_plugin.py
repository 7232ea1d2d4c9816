"""The toy plugin: registration through the real hooks, options, and the example config."""

from __future__ import annotations

from pathlib import Path

import pytest
from specs_core import Specs
from specs_core.config import load_config, validate_options
from specs_core.errors import ConfigError
from specs_core.plugins import build_registry
from specs_core.protocols import LanguageModel, RewardModel
from specs_core.testing import ToyLanguageModel, ToyRewardModel, check_language_model
from specs_core.testing.plugin import ToyBackendOptions, ToyRewardOptions

TOY_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "configs" / "toy.yaml"


def test_registry_sees_the_toy_backend_and_reward_model() -> None:
    registry = build_registry()
    assert not [f for f in registry.failures if f.plugin == "specs_core.testing.plugin"]
    backend = registry.backend("toy")
    reward = registry.reward_model("toy")
    assert backend.plugin == reward.plugin == "specs_core.testing.plugin"
    assert backend.options is ToyBackendOptions and reward.options is ToyRewardOptions
    assert backend.unavailable_reason() is None and backend.extra is None


def test_only_the_toy_plugin() -> None:
    registry = build_registry(builtins=("specs_core.testing.plugin",), entry_points=False)
    assert (list(registry.backends), list(registry.reward_models)) == (["toy"], ["toy"])
    assert registry.plugins == ["specs_core.testing.plugin"]


def test_factories_build_conforming_models() -> None:
    registry = build_registry(builtins=("specs_core.testing.plugin",), entry_points=False)
    options = validate_options(
        {"variant": "draft", "ms_per_token": 0.0}, ToyBackendOptions, "draft"
    )
    model = registry.backend("toy").factory(options)
    assert isinstance(model, ToyLanguageModel) and isinstance(model, LanguageModel)
    assert (model.name, model.mismatch) == ("toy-draft", 1.0)
    check_language_model(model, checks=["stops", "logprob_consistency"])
    reward_options = validate_options({"salt": "x"}, ToyRewardOptions, "reward")
    prm = registry.reward_model("toy").factory(reward_options, lambda ref: model)
    assert isinstance(prm, ToyRewardModel) and isinstance(prm, RewardModel)
    assert prm.salt == "x"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"varient": "draft"}, "unknown key 'draft.varient'"),
        ({"mismatch": -1}, "draft.mismatch"),
        ({"variant": ""}, "draft.variant"),
        ({"n_ctx": 4}, "draft.n_ctx"),
    ],
)
def test_bad_options_are_rejected_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_options(options, ToyBackendOptions, "draft")


def test_options_are_frozen() -> None:
    options = ToyBackendOptions()
    with pytest.raises(ValueError, match="frozen"):
        options.variant = "draft"


def test_example_config_solves_with_the_toy_models() -> None:
    config = load_config(TOY_CONFIG)
    assert config.policy.name == "specs" and config.policy.options()["n"] == 4
    registry = build_registry()
    if "specs" not in registry.policies:
        pytest.skip("the specs policy is not registered in this checkout")
    with Specs(config, registry) as specs:
        draft, target = specs.model("draft"), specs.model("target")
        assert (draft.name, target.name) == ("toy-draft", "toy-target")
        result = specs.solve("What is 2 + 3?")
    assert result.text and result.usage.tokens
    assert set(result.usage.tokens) <= {"toy-draft", "toy-target", "toy-prm"}

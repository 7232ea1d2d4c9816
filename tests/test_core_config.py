"""Config loading, overrides and validation errors that name the key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field
from specs_core.config import SpecsConfig, apply_overrides, load_config, validate_options
from specs_core.errors import ConfigError


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(default=4, ge=1)
    mode: str = "mean"


def test_yaml_file_loads_with_sections(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "draft: {backend: toy, variant: draft}\n"
        "target: {backend: toy}\n"
        "reward: {name: toy}\n"
        "policy: {name: specs, n: 8}\n"
    )
    cfg = load_config(path)
    assert isinstance(cfg, SpecsConfig)
    assert cfg.draft is not None and not isinstance(cfg.draft, str)
    assert cfg.draft.backend == "toy" and cfg.draft.options() == {"variant": "draft"}
    assert cfg.policy.name == "specs" and cfg.policy.options() == {"n": 8}


def test_overrides_parse_yaml_values_and_infinities() -> None:
    data = apply_overrides(
        {"policy": {"name": "specs"}},
        ["policy.n=8", "policy.tau_acc=inf", "policy.beta=-inf", "policy.log_ratio=sum", "x.y=0.5"],
    )
    assert data["policy"]["n"] == 8
    assert data["policy"]["tau_acc"] == math.inf
    assert data["policy"]["beta"] == -math.inf
    assert data["policy"]["log_ratio"] == "sum"
    assert data["x"] == {"y": 0.5}


def test_override_without_equals_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        apply_overrides({}, ["policy.n"])


def test_override_into_role_reference_is_rejected() -> None:
    with pytest.raises(ConfigError, match="set target"):
        apply_overrides({"draft": "target"}, ["draft.n_ctx=10"])


def test_unknown_top_level_key_names_it_and_the_allowed_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"policy": {"name": "specs"}, "drafts": {"backend": "toy"}})
    message = str(info.value)
    assert "'drafts'" in message and "draft" in message and "target" in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_invalid_yaml_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("policy: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_role_may_name_another_role_only() -> None:
    assert load_config({"draft": "target", "target": {"backend": "toy"}}).draft == "target"
    with pytest.raises(ConfigError, match="role"):
        load_config({"draft": "teacher"})


def test_validate_options_names_unknown_key_and_allowed_keys() -> None:
    with pytest.raises(ConfigError) as info:
        validate_options({"n": 2, "nn": 3}, _Options, "policy")
    assert "policy.nn" in str(info.value)
    assert "mode, n" in str(info.value)


def test_validate_options_names_bad_value() -> None:
    with pytest.raises(ConfigError, match=r"policy\.n: .*greater than or equal to 1.*-2"):
        validate_options({"n": -2}, _Options, "policy")


def test_default_config_is_specs_on_embedded_models() -> None:
    cfg = load_config(None)
    assert cfg.policy.name == "specs"
    assert cfg.target is not None and not isinstance(cfg.target, str)
    assert cfg.target.backend == "llamacpp"
    assert cfg.reward is not None and cfg.reward.name == "likelihood"

"""Configuration: pydantic models loaded from YAML, with ``--set key=value`` overrides.

A config has four sections::

    draft:   {backend: llamacpp, model: smollm2-135m}      # a model, or the name of another role
    target:  {backend: llamacpp, model: qwen2.5-coder-0.5b}
    reward:  {name: judge, model: target}                 # a registered reward model + its options
    policy:  {name: specs, n: 4, tau_acc: 7.0}            # a registered policy + its options

Section keys beyond ``backend``/``name`` are validated against the options model that the chosen
backend, reward model or policy registered, so unknown keys and bad values are rejected with a
message naming the key and the allowed values.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from specs_core.errors import ConfigError, read_utf8

__all__ = [
    "ROLE_NAMES",
    "ModelConfig",
    "NamedConfig",
    "SpecsConfig",
    "apply_overrides",
    "load_config",
    "load_yaml_file",
    "parse_override",
    "validate_options",
]

ROLE_NAMES = ("draft", "target")


class ModelConfig(BaseModel):
    """A model: the backend that serves it and the backend's own options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    backend: str = Field(description="registered backend name, e.g. llamacpp, transformers, toy")

    def options(self) -> dict[str, Any]:
        """The backend options (every key but ``backend``)."""
        return dict(self.model_extra or {})


class NamedConfig(BaseModel):
    """A registered component chosen by ``name``, with its own options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str

    def options(self) -> dict[str, Any]:
        """The component's options (every key but ``name``)."""
        return dict(self.model_extra or {})


class SpecsConfig(BaseModel):
    """A whole configuration. A role may name another role (``draft: target``) to share a model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    draft: ModelConfig | str | None = None
    target: ModelConfig | str | None = None
    reward: NamedConfig | None = None
    policy: NamedConfig = NamedConfig(name="specs")
    calibration: dict[str, Any] | None = Field(
        default=None,
        description="how the policy's thresholds were fitted (written by specs calibrate; "
        "a record, it changes nothing)",
    )

    @field_validator("draft", "target", mode="before")
    @classmethod
    def _role_reference(cls, value: object) -> object:
        if isinstance(value, str) and value not in ROLE_NAMES:
            raise ValueError(
                f"a role may name another role ({', '.join(ROLE_NAMES)}), got {value!r}"
            )
        return value


def _format_validation_error(error: ValidationError, where: str, model: type[BaseModel]) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        full = f"{where}.{key}" if where and key else (where or key)
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(model.model_fields)) or "none"
            problems.append(f"unknown key {full!r} (allowed keys: {allowed})")
        else:
            problems.append(f"{full}: {item['msg']} (got {_clip(repr(item.get('input')))})")
    return "; ".join(problems)


def _clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def validate_options(options: Mapping[str, Any], model: type[BaseModel], where: str) -> BaseModel:
    """Validate a section's options against a component's options model.

    Raises:
        ConfigError: naming each bad key, its problem and the allowed keys or values.
    """
    try:
        return model.model_validate(dict(options))
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, where, model)) from e


def _parse_config(data: object, source: str) -> SpecsConfig:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a config must be a mapping with draft/target/reward/policy")
    try:
        return SpecsConfig.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(f"{source}: {_format_validation_error(e, '', SpecsConfig)}") from e


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(f"--set key {dotted!r} is malformed; write section.key=value")
    node: Any = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if isinstance(child, str):
            raise ConfigError(
                f"--set {dotted}: {key!r} names the role {child!r}; set {child}.<key> instead"
            )
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``section.key=value`` into the dotted key and the value parsed as YAML (``4``,
    ``0.5``, ``inf``, ``[1, 2]``; text that is not YAML stays text).

    Raises:
        ConfigError: the override has no ``=`` or no key.
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r} has no key; write section.key=value")
    text = raw.strip()
    lowered = text.lower()
    value: Any
    if lowered in {"inf", "+inf", ".inf", "infinity"}:
        value = float("inf")
    elif lowered in {"-inf", "-.inf", "-infinity"}:
        value = float("-inf")
    else:
        try:
            value = _safe_yaml(text, f"--set {key}") if text else ""
        except yaml.YAMLError:
            value = text
    return key, value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (see :func:`parse_override`).

    Raises:
        ConfigError: an override is malformed.
    """
    result = copy.deepcopy(dict(data))
    for item in overrides:
        _set_path(result, *parse_override(item))
    return result


#: The most values a config may hold once its YAML aliases are expanded, and its largest size.
#: Real configs hold a few dozen values; the caps stop an alias bomb (a few hundred bytes that
#: expand to billions of values) before anything walks the expansion.
MAX_CONFIG_VALUES = 10_000
MAX_CONFIG_BYTES = 1_000_000


def _expanded_size(root: yaml.Node) -> int:
    """Values in the document under ``root`` with every alias expanded, counted without
    expanding (each node's count is computed once); ``MAX_CONFIG_VALUES + 1`` once over or when
    an alias refers to a node that contains it (an infinite expansion)."""
    sizes: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if not children_done:
            if id(node) in entered:  # reached again below itself
                return MAX_CONFIG_VALUES + 1
            entered.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if children_done:
            total = 1 + sum(sizes.get(id(c), 0) for c in children)
            sizes[id(node)] = min(total, MAX_CONFIG_VALUES + 1)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _safe_yaml(text: str, name: str) -> Any:
    """``yaml.safe_load`` refusing alias bombs.

    Raises:
        ConfigError: the text expands past :data:`MAX_CONFIG_VALUES` values.
        yaml.YAMLError: the text is not YAML.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None and _expanded_size(root) > MAX_CONFIG_VALUES:
        raise ConfigError(
            f"{name} expands to more than {MAX_CONFIG_VALUES} values (or without end) through "
            "YAML aliases (&anchor / *alias); a config needs far fewer"
        )
    return yaml.safe_load(text)


def load_yaml_file(path: Path) -> Any:
    """A YAML file's data, read with the config's guards (size, UTF-8, alias bombs).

    Raises:
        ConfigError: the file is missing, too large, not UTF-8 or not valid YAML.
    """
    name = repr(str(path))
    if not path.is_file():
        raise ConfigError(f"config file {name} does not exist; pass an existing YAML file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {name} is over {MAX_CONFIG_BYTES} bytes; not a config")
    text = read_utf8(path, "config file", ConfigError)
    try:
        return _safe_yaml(text, f"config file {name}")
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {name} is not valid YAML: {e}") from e


def load_config(
    source: str | Path | Mapping[str, Any] | SpecsConfig | None = None,
    overrides: Iterable[str] = (),
) -> SpecsConfig:
    """Load a config from a YAML path, a mapping or a config, applying ``overrides``.

    With ``source=None`` the default configuration is used (SPECS on the embedded models, see
    :func:`specs_core.defaults.default_config`).
    """
    overrides = list(overrides)
    if isinstance(source, SpecsConfig):
        if not overrides:
            return source
        data: Any = source.model_dump(exclude_none=True)
        name = "config"
    elif source is None:
        from specs_core.defaults import default_config_data

        data, name = default_config_data(), "default config"
    elif isinstance(source, Mapping):
        data, name = dict(source), "config"
    else:
        path = Path(source)
        data, name = load_yaml_file(path), str(path)
    if overrides:
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{name}: a config must be a mapping with draft/target/reward/policy")
        data = apply_overrides(data or {}, overrides)
    return _parse_config(data, name)

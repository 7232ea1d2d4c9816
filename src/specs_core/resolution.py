"""One rule for the options a policy runs with, used by every caller.

The command line (``solve``, ``bench``, ``sweep``), the :class:`~specs_core.solver.Specs` facade,
the LangChain runnable and a run's fingerprint all resolve a policy with :func:`resolve_policy`:

1. the policy is the one asked for, else the config's;
2. its base options are the config's ``policy:`` section when it is that policy; when another
   policy is asked for, the base keeps the config's options that the other policy also accepts
   (``n``, ``temperature``, ``seed``...) and drops the others (``tau_acc`` for beam search);
3. explicit overrides (``--set policy.key=value``, ``options=`` of ``solve``, the runnable's
   fields) are applied last and are strict: a key the policy does not take is an error that names
   it and the allowed keys.

So ``--policy beam_search`` keeps a config's ``n: 3`` everywhere, and ``tau_acc=5`` given
explicitly to beam search is refused everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from specs_core.config import (
    ROLE_NAMES,
    NamedConfig,
    SpecsConfig,
    load_config,
    parse_override,
    validate_options,
)
from specs_core.errors import ConfigError
from specs_core.plugins import Registry, get_registry

__all__ = [
    "ResolvedPolicy",
    "resolve_config",
    "resolve_policy",
    "resolved_data",
]


@dataclass(frozen=True)
class ResolvedPolicy:
    """A policy and its validated options.

    Attributes:
        name: the registered policy name.
        options: the validated options (an instance of the policy's options model).
    """

    name: str
    options: BaseModel

    def data(self) -> dict[str, Any]:
        """The options as plain data (what a ``policy:`` config section holds)."""
        return {"name": self.name, **_dump(self.options)}


def _dump(options: BaseModel) -> dict[str, Any]:
    return options.model_dump(mode="json", exclude_none=True)


def resolve_policy(
    config: SpecsConfig,
    policy: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> ResolvedPolicy:
    """The policy a call runs, with its options resolved by the module's rule.

    Args:
        config: the configuration whose ``policy:`` section is the base.
        policy: a registered policy name (default: the config's).
        overrides: options applied last; each must be an option of the policy.

    Raises:
        PluginError: the policy is unknown.
        ConfigError: an option is unknown to the policy or invalid (naming the key).
    """
    registry = registry or get_registry()
    name = policy or config.policy.name
    spec = registry.policy(name)
    base = config.policy.options()
    if name != config.policy.name:
        fields = spec.options.model_fields
        base = {k: v for k, v in base.items() if k in fields}
    # an override the policy does not take stays in and is rejected by the validation
    return ResolvedPolicy(
        name, validate_options({**base, **(overrides or {})}, spec.options, "policy")
    )


def _split_overrides(overrides: Iterable[str]) -> tuple[list[str], str | None, dict[str, Any]]:
    """Overrides of the model sections, the ``policy.name`` switch, and the policy options."""
    others: list[str] = []
    name: str | None = None
    options: dict[str, Any] = {}
    for item in overrides:
        key, value = parse_override(item)
        section, _, rest = key.partition(".")
        if section != "policy":
            others.append(item)
        elif rest == "name":
            name = str(value)
        elif rest and "." not in rest:
            options[rest] = value
        else:
            raise ConfigError(f"--set {item!r}: write policy.<option>=value")
    return others, name, options


def resolve_config(
    source: str | Path | Mapping[str, Any] | SpecsConfig | None,
    policy: str | None = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> SpecsConfig:
    """The configuration a command runs: the file (or the default), the chosen policy, then the
    ``section.key=value`` overrides; its ``policy:`` section holds the resolved options.

    ``policy`` and ``--set policy.name=...`` both choose the policy (they must agree); the
    ``policy.<option>`` overrides are strict, as :func:`resolve_policy` says.

    Raises:
        ConfigError: the file, a key or a value is wrong, or two policies are asked for.
        PluginError: the policy is unknown.
    """
    others, named, options = _split_overrides(overrides)
    if policy and named and policy != named:
        raise ConfigError(f"--policy {policy} and --set policy.name={named} disagree; give one")
    base = load_config(source, others)
    resolved = resolve_policy(base, policy or named, options, registry)
    return base.model_copy(update={"policy": NamedConfig(**resolved.data())})


def resolved_data(config: SpecsConfig, registry: Registry | None = None) -> dict[str, Any]:
    """A config with every section validated and its defaults filled in, as plain data.

    This is what a run's ``config.yaml`` records and what its fingerprint hashes, so
    ``tau_acc: 3`` and ``tau_acc: 3.0`` are the same run.

    Raises:
        ConfigError: an option is unknown or invalid.
        PluginError: a backend, reward model or policy is unknown.
    """
    registry = registry or get_registry()
    data: dict[str, Any] = {}
    for role in ROLE_NAMES:
        model = getattr(config, role)
        if isinstance(model, str):
            data[role] = model
        elif model is not None:
            spec = registry.backend(model.backend)
            options = validate_options(model.options(), spec.options, role)
            data[role] = {"backend": model.backend, **_dump(options)}
    if config.reward is not None:
        reward_spec = registry.reward_model(config.reward.name)
        options = validate_options(config.reward.options(), reward_spec.options, "reward")
        data["reward"] = {"name": config.reward.name, **_dump(options)}
    data["policy"] = resolve_policy(config, registry=registry).data()
    if config.calibration is not None:
        data["calibration"] = config.calibration
    return data

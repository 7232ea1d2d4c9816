"""The facade: build the models a config names once, and run policies on questions.

Example:
    >>> from specs_core import Specs
    >>> with Specs.from_config("examples/configs/toy.yaml") as specs:  # doctest: +SKIP
    ...     result = specs.solve("What is 2 + 3?")
    ...     print(result.answer, result.usage.latency_s["total"])
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from specs_core.backend_kit.http import route_by
from specs_core.config import (
    ROLE_NAMES,
    ModelConfig,
    NamedConfig,
    SpecsConfig,
    load_config,
    validate_options,
)
from specs_core.errors import ConfigError, InvalidInputError, PluginError, install_hint
from specs_core.plugins import Registry, get_registry
from specs_core.protocols import LanguageModel, Policy, RewardModel, Roles
from specs_core.resolution import resolve_policy
from specs_core.search import Budget, spending
from specs_core.types import SearchResult, StepCallback

__all__ = ["Specs"]


class _Resolver:
    """The :class:`~specs_core.plugins.ModelResolver` a Specs hands to reward-model factories."""

    def __init__(self, specs: Specs) -> None:
        self._specs = specs

    def __call__(self, ref: str | Mapping[str, Any]) -> LanguageModel:
        return self._specs.model(ref)

    def reward_model(self, config: Mapping[str, Any], where: str) -> RewardModel:
        return self._specs.build_reward_model(config, where)


class Specs:
    """Loads the models of one configuration (lazily, each once) and solves questions.

    Roles whose configs are equal, or that name each other (``draft: target``), share one loaded
    model; so does a judge reward model that names a role. Thread-safe: backends serialise calls
    on a model themselves.

    Args:
        config: the configuration.
        registry: the plugin registry (default: the process-wide one).
    """

    def __init__(self, config: SpecsConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry or get_registry()
        self._models: dict[str, LanguageModel] = {}
        self._reward: RewardModel | None = None
        self._lock = threading.RLock()
        self._one_at_a_time = threading.Lock()
        self._closed = False
        self.registry.policy(config.policy.name)  # fail fast on an unknown policy

    @classmethod
    def from_config(
        cls,
        source: str | Path | Mapping[str, Any] | SpecsConfig | None = None,
        overrides: Iterable[str] = (),
        registry: Registry | None = None,
    ) -> Specs:
        """Build from a YAML path, a mapping, a config, or ``None`` for the default config."""
        return cls(load_config(source, overrides), registry)

    # -- models -----------------------------------------------------------------------------

    def _role_config(self, role: str, seen: tuple[str, ...] = ()) -> ModelConfig:
        value = getattr(self.config, role)
        if value is None:
            raise ConfigError(f"the config has no {role!r} model; add a {role}: section")
        if isinstance(value, str):
            if value in seen or value == role:
                raise ConfigError(f"roles {', '.join((*seen, role))} name each other in a loop")
            return self._role_config(value, (*seen, role))
        return value

    def model(self, ref: str | Mapping[str, Any]) -> LanguageModel:
        """The loaded model for a role name or an inline model config (shared when equal)."""
        if isinstance(ref, str):
            if ref not in ROLE_NAMES:
                raise ConfigError(f"unknown role {ref!r}; roles are {', '.join(ROLE_NAMES)}")
            cfg = self._role_config(ref)
            where = ref
        else:
            try:
                cfg = ModelConfig.model_validate(dict(ref))
            except Exception as e:
                raise ConfigError(f"a model needs a 'backend' key: {e}") from e
            where = "model"
        spec = self.registry.backend(cfg.backend)
        reason = spec.unavailable_reason()
        if reason is not None:
            hint = f": {install_hint(spec.extra)}" if spec.extra else ""
            raise PluginError(f"backend {cfg.backend!r} is unavailable ({reason}){hint}")
        options = validate_options(cfg.options(), spec.options, where)
        key = json.dumps([cfg.backend, options.model_dump(mode="json")], sort_keys=True)
        with self._lock:
            if self._closed:
                raise InvalidInputError("this Specs instance is closed")
            model = self._models.get(key)
            if model is None:
                model = self._models[key] = spec.factory(options)
            return model

    def build_reward_model(self, config: Mapping[str, Any], where: str = "reward") -> RewardModel:
        """Build a registered reward model from ``{"name": ..., **options}`` (not cached)."""
        try:
            cfg = NamedConfig.model_validate(dict(config))
        except Exception as e:
            raise ConfigError(f"{where} needs a 'name' key naming a reward model: {e}") from e
        spec = self.registry.reward_model(cfg.name)
        reason = spec.unavailable_reason()
        if reason is not None:
            hint = f": {install_hint(spec.extra)}" if spec.extra else ""
            raise PluginError(f"reward model {cfg.name!r} is unavailable ({reason}){hint}")
        options = validate_options(cfg.options(), spec.options, where)
        model: RewardModel = spec.factory(options, _Resolver(self))
        return model

    def reward_model(self) -> RewardModel:
        """The configured reward model (built once)."""
        with self._lock:
            if self._reward is None:
                cfg = self.config.reward
                if cfg is None:
                    raise ConfigError(
                        "the chosen policy needs a reward model; add a reward: section"
                    )
                self._reward = self.build_reward_model(cfg.model_dump(), "reward")
            return self._reward

    # -- policies ---------------------------------------------------------------------------

    def policy(self, name: str | None = None, options: Mapping[str, Any] | None = None) -> Policy:
        """Build a policy bound to this config's models.

        Options are resolved by :func:`specs_core.resolution.resolve_policy`: the config's
        options (for another policy, those it also accepts), then ``options``.

        Args:
            name: a registered policy (default: the config's).
            options: options set on top of the config's; each must be an option of the policy.
        """
        resolved = resolve_policy(self.config, name, options, self.registry)
        spec = self.registry.policy(resolved.name)
        roles = Roles(
            target=self.model("target") if "target" in spec.roles else None,
            draft=self.model("draft") if "draft" in spec.roles else None,
            reward=self.reward_model() if "reward" in spec.roles else None,
            reward_plugin=(
                self.registry.reward_model(self.config.reward.name).plugin
                if "reward" in spec.roles and self.config.reward
                else ""
            ),
        )
        policy: Policy = spec.factory(resolved.options, roles)
        return policy

    def solve(
        self,
        question: str,
        *,
        policy: str | None = None,
        options: Mapping[str, Any] | None = None,
        on_step: StepCallback | None = None,
        budget: Budget | None = None,
    ) -> SearchResult:
        """Solve one question.

        Args:
            question: the problem; must not be empty.
            policy: a registered policy name (default: the config's).
            options: policy options set on top of the config's (see :meth:`policy`).
            on_step: called with each step as the policy commits it.
            budget: the most seconds and generated tokens the search may spend (see
                :class:`~specs_core.search.Budget`).

        Raises:
            InvalidInputError: the question is empty.
            BudgetExceededError: the budget ran out before a step was committed.
        """
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError("the question is empty; pass the problem text to solve")
        chosen = self.policy(policy, options)
        # a problem's requests stick to one replica of a served model (its prefix cache)
        with route_by(question):
            if budget is None:  # a caller's `spending` block, if any, applies
                return chosen.run(question, on_step=on_step)
            with spending(budget):
                return chosen.run(question, on_step=on_step)

    @contextlib.contextmanager
    def reproducible(self, policy: str | None = None) -> Iterator[None]:
        """Run the searches of ``policy`` (default: the config's) that enter this block one at a
        time when a model it uses cannot be called concurrently, or gives results that depend on
        the calls interleaved before them (llama.cpp: its model lock serialises the calls anyway,
        so this costs no throughput), so that concurrent searches give the results they give
        alone. A no-op when every model it uses is concurrent and reproducible."""
        roles = self.registry.policy(policy or self.config.policy.name).roles
        models = [self.model(role) for role in roles if role in ROLE_NAMES]
        if all(
            m.capabilities.concurrent and m.capabilities.reproducible_interleaved for m in models
        ):
            yield
            return
        with self._one_at_a_time:
            yield

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Free every loaded model. Calling it twice is harmless."""
        with self._lock:
            self._closed = True
            if self._reward is not None:
                self._reward.close()
            for model in self._models.values():
                model.close()
            self._models.clear()
            self._reward = None

    def __enter__(self) -> Specs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""The built-in plugin registering the toy backend and the toy reward model, both named ``toy``.

Config example::

    draft:  {backend: toy, variant: draft}
    target: {backend: toy, variant: target}
    reward: {name: toy}
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from specs_core.backend_kit.ngram import SpeculativeOptions
from specs_core.hookspecs import hookimpl
from specs_core.plugins import RegisterBackend, RegisterRewardModel
from specs_core.protocols import ModelResolver
from specs_core.testing.toy import ToyLanguageModel
from specs_core.testing.toy_reward import ToyRewardModel

__all__ = [
    "ToyBackendOptions",
    "ToyRewardOptions",
    "register_backends",
    "register_reward_models",
]


class ToyBackendOptions(BaseModel):
    """Options of the ``toy`` backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str = Field(
        default="target",
        min_length=1,
        description="hash salt: 'target', 'draft' or any other model",
    )
    mismatch: float | None = Field(
        default=None,
        ge=0,
        description="scale of the variant's own noise (default 0 target, 1 others)",
    )
    ms_per_token: float = Field(default=0.0, ge=0, description="simulated ms per generated token")
    ms_per_prompt_token: float | None = Field(
        default=None,
        ge=0,
        description="simulated ms per evaluated token (default ms_per_token / 4)",
    )
    name: str | None = Field(
        default=None, min_length=1, description="accounting name (toy-<variant>)"
    )
    n_ctx: int = Field(default=4096, ge=16, description="context window in tokens")
    speculative: SpeculativeOptions | None = Field(
        default=None, description="n-gram drafting, e.g. {max_draft: 4} (default: off)"
    )


class ToyRewardOptions(BaseModel):
    """Options of the ``toy`` reward model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    salt: str = Field(default="", description="changes the hash part of every reward")
    ms_per_step: float = Field(default=0.0, ge=0, description="simulated ms per scored step")
    name: str | None = Field(default=None, min_length=1, description="display name (toy-prm)")


def _make_toy_model(options: ToyBackendOptions) -> ToyLanguageModel:
    return ToyLanguageModel(
        options.variant,
        mismatch=options.mismatch,
        ms_per_token=options.ms_per_token,
        ms_per_prompt_token=options.ms_per_prompt_token,
        name=options.name,
        n_ctx=options.n_ctx,
        speculative=options.speculative,
    )


def _make_toy_reward(options: ToyRewardOptions, models: ModelResolver) -> ToyRewardModel:
    del models  # the toy reward model runs no language model
    return ToyRewardModel(options.salt, ms_per_step=options.ms_per_step, name=options.name)


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    """Register the deterministic pure-Python ``toy`` backend."""
    register(
        "toy",
        _make_toy_model,
        options=ToyBackendOptions,
        extra=None,
        available=None,
        description="deterministic pure-Python toy model for tests and demos (no engine)",
    )


@hookimpl
def register_reward_models(register: RegisterRewardModel) -> None:
    """Register the deterministic ``toy`` process reward model."""
    register(
        "toy",
        _make_toy_reward,
        options=ToyRewardOptions,
        extra=None,
        available=None,
        description="deterministic toy process reward model that agrees with the toy backend",
    )

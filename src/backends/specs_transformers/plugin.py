"""Registers the ``transformers`` backend and the trained-PRM reward models.

Importing this module imports neither torch nor transformers; factories are cheap (weights
load on first use).
"""

from __future__ import annotations

from typing import Any

from specs_core.hookspecs import hookimpl
from specs_core.plugins import RegisterBackend, RegisterRewardModel
from specs_core.protocols import ModelResolver

from specs_transformers._engine import EXTRA, unavailable_reason
from specs_transformers.model import TransformersModel
from specs_transformers.options import (
    ClassificationPRMOptions,
    TokenPRMOptions,
    TransformersOptions,
    ValuePRMOptions,
)
from specs_transformers.prms import ClassificationPRM, TokenPRM, ValuePRM

__all__ = ["register_backends", "register_reward_models"]


def _backend(options: TransformersOptions) -> TransformersModel:
    return TransformersModel(options)


def _classification(options: ClassificationPRMOptions, models: ModelResolver) -> Any:
    return ClassificationPRM(options)


def _value(options: ValuePRMOptions, models: ModelResolver) -> Any:
    return ValuePRM(options)


def _token(options: TokenPRMOptions, models: ModelResolver) -> Any:
    return TokenPRM(options)


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    """Register the ``transformers`` backend."""
    register(
        "transformers",
        _backend,
        options=TransformersOptions,
        extra=EXTRA,
        available=unavailable_reason,
        description="Hugging Face transformers on torch (CPU, CUDA, MPS); local dirs, hub repos "
        "and GGUF files",
    )


@hookimpl
def register_reward_models(register: RegisterRewardModel) -> None:
    """Register the trained-PRM adapters."""
    register(
        "hf-classification-prm",
        _classification,
        options=ClassificationPRMOptions,
        extra=EXTRA,
        available=unavailable_reason,
        description="2-class head at a separator token per step (Qwen2.5-Math-PRM)",
    )
    register(
        "hf-value-prm",
        _value,
        options=ValuePRMOptions,
        extra=EXTRA,
        available=unavailable_reason,
        description="sigmoid value head at each step end (Skywork-o1-Open-PRM)",
    )
    register(
        "hf-token-prm",
        _token,
        options=TokenPRMOptions,
        extra=EXTRA,
        available=unavailable_reason,
        description="P(good) vs P(bad) token at each step tag (Math-Shepherd, RLHFlow)",
    )

"""Test support: a deterministic toy language model and reward model, and the conformance suite.

The toy models are registered as the ``toy`` backend and reward model by
:mod:`specs_core.testing.plugin`; every backend's tests run :func:`check_language_model`.
"""

from __future__ import annotations

from specs_core.testing.conformance import (
    DEFAULT_TOLERANCE,
    LANGUAGE_MODEL_CHECKS,
    REWARD_MODEL_CHECKS,
    ConformanceCheck,
    check_language_model,
    check_reward_model,
)
from specs_core.testing.toy import STEP_DELIMITER, ToyLanguageModel, ToyTokenizer, toy_answer
from specs_core.testing.toy_reward import ToyRewardModel

__all__ = [
    "DEFAULT_TOLERANCE",
    "LANGUAGE_MODEL_CHECKS",
    "REWARD_MODEL_CHECKS",
    "STEP_DELIMITER",
    "ConformanceCheck",
    "ToyLanguageModel",
    "ToyRewardModel",
    "ToyTokenizer",
    "check_language_model",
    "check_reward_model",
    "toy_answer",
]

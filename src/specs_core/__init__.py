"""specs: latency-aware test-time scaling for LLM reasoning.

A small draft model proposes each reasoning step; a large target model and a process reward model
verify the drafts; a soft verification keeps good drafts and hands hard steps to the target.

``import specs_core`` imports no inference engine.
"""

from __future__ import annotations

from specs_core.config import SpecsConfig, load_config
from specs_core.errors import (
    BackendError,
    BackendUnavailableError,
    CapabilityError,
    ConfigError,
    ContextOverflowError,
    InvalidInputError,
    ModelCacheError,
    ModelNotFoundError,
    PluginError,
    ProtocolError,
    RewardError,
    SpecsError,
)
from specs_core.hookspecs import hookimpl
from specs_core.protocols import Capabilities, Generator, LanguageModel, RewardModel, Scorer
from specs_core.rewards import Aggregation, aggregate
from specs_core.solver import Specs
from specs_core.types import (
    CandidateRecord,
    Completion,
    FinishReason,
    Prompt,
    SamplingParams,
    SearchResult,
    StepRecord,
    StepSource,
    TokenLogprobs,
    TokenUsage,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "BackendError",
    "BackendUnavailableError",
    "CandidateRecord",
    "Capabilities",
    "CapabilityError",
    "Completion",
    "ConfigError",
    "ContextOverflowError",
    "FinishReason",
    "Generator",
    "InvalidInputError",
    "LanguageModel",
    "ModelCacheError",
    "ModelNotFoundError",
    "PluginError",
    "Prompt",
    "ProtocolError",
    "RewardError",
    "RewardModel",
    "SamplingParams",
    "Scorer",
    "SearchResult",
    "Specs",
    "SpecsConfig",
    "SpecsError",
    "StepRecord",
    "StepSource",
    "TokenLogprobs",
    "TokenUsage",
    "Usage",
    "__version__",
    "aggregate",
    "hookimpl",
    "load_config",
]

"""The SGLang backend: models and process reward models served by SGLang.

``import specs_sglang`` needs neither ``httpx`` nor ``sglang``; they are imported when a model
first connects. See ``docs/backends/sglang.md`` for deployment on one or several GPUs.
"""

from __future__ import annotations

from specs_core.backend_kit.chat import BUILTIN_TEMPLATES, ChatRenderer, build_renderer
from specs_core.backend_kit.http import HttpOptions, HttpPool, HttpStatusError

from specs_sglang.backend import SGLangModel, SGLangOptions
from specs_sglang.reward import SGLangRewardModel, SGLangRewardOptions

__all__ = [
    "BUILTIN_TEMPLATES",
    "ChatRenderer",
    "HttpOptions",
    "HttpPool",
    "HttpStatusError",
    "SGLangModel",
    "SGLangOptions",
    "SGLangRewardModel",
    "SGLangRewardOptions",
    "build_renderer",
]

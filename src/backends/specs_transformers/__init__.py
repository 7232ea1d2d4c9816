"""The Hugging Face transformers backend and the trained process reward models.

``import specs_transformers`` does not import torch or transformers; they load when a model is
first used, and a missing package raises :class:`~specs_core.errors.BackendUnavailableError`
naming the ``transformers`` extra (``pip install 'specs-tts[transformers]'``).

Registered names: the backend ``transformers`` and the reward models ``hf-classification-prm``
(Qwen2.5-Math-PRM style), ``hf-value-prm`` (Skywork-o1-Open-PRM style) and ``hf-token-prm``
(Math-Shepherd and RLHFlow style). See ``docs/backends/transformers.md`` and ``docs/prms.md``.
"""

from __future__ import annotations

from specs_transformers.model import CAPABILITIES, TransformersModel
from specs_transformers.options import (
    ClassificationPRMOptions,
    LoadOptions,
    TokenPRMOptions,
    TransformersOptions,
    ValuePRMOptions,
)
from specs_transformers.prms import ClassificationPRM, TokenPRM, ValuePRM

__all__ = [
    "CAPABILITIES",
    "ClassificationPRM",
    "ClassificationPRMOptions",
    "LoadOptions",
    "TokenPRM",
    "TokenPRMOptions",
    "TransformersModel",
    "TransformersOptions",
    "ValuePRM",
    "ValuePRMOptions",
]

"""The llama.cpp backend: GGUF models on CPU (or any device llama.cpp was built for).

Importing this package never imports ``llama_cpp``; using a model without it installed raises
:class:`~specs_core.errors.BackendUnavailableError` naming the ``llamacpp`` pip extra.

Example:
    >>> from specs_llamacpp import LlamaCppModel, LlamaCppOptions
    >>> from specs_core.types import Prompt, SamplingParams
    >>> with LlamaCppModel(LlamaCppOptions(model="smollm2-135m")) as model:  # doctest: +SKIP
    ...     params = SamplingParams(n=4, stop=("\\n\\n",))
    ...     [samples] = model.generate([Prompt("What is 2+3?")], params)
"""

from specs_core.backend_kit.artifacts import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    ModelStatus,
    cache_dir,
    model_status,
    prepare_embedded,
    resolve_model_path,
)

from specs_llamacpp.model import CAPABILITIES, LlamaCppModel, loaded_model_count
from specs_llamacpp.options import LlamaCppOptions

__all__ = [
    "CAPABILITIES",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "LlamaCppModel",
    "LlamaCppOptions",
    "ModelStatus",
    "cache_dir",
    "loaded_model_count",
    "model_status",
    "prepare_embedded",
    "resolve_model_path",
]

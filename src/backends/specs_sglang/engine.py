"""An in-process ``sglang.Engine`` behind the same calls as the HTTP transport.

Set ``engine: {model_path: ..., mem_fraction_static: 0.3, ...}`` in a model's options to run SGLang
inside the specs process instead of talking to a server (the keys are ``sglang.Engine``'s
arguments). It needs the ``sglang`` package and a CUDA GPU; SGLang cannot be installed next to the
CPU build of torch this project pins, so it is not part of any extra of the default install.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from specs_core.errors import BackendError, BackendUnavailableError

__all__ = ["ENGINE_EXTRA", "EngineTransport", "engine_unavailable_reason"]

T = TypeVar("T")
R = TypeVar("R")

#: The pip extra named in errors when the in-process engine is missing.
ENGINE_EXTRA = "sglang-engine"

_GENERATE_KEYS = {
    "text": "prompt",
    "input_ids": "input_ids",
    "sampling_params": "sampling_params",
    "return_logprob": "return_logprob",
    "logprob_start_len": "logprob_start_len",
}


def engine_unavailable_reason() -> str | None:
    """``None`` when ``sglang`` imports and a CUDA GPU is visible, else why not."""
    try:
        import sglang  # noqa: F401
    except ImportError:
        return "the sglang package is not installed"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


class EngineTransport:
    """Serves the backend's requests from an in-process ``sglang.Engine``.

    Args:
        arguments: keyword arguments of ``sglang.Engine`` (``model_path`` at least).

    Raises:
        BackendUnavailableError: ``sglang`` or a GPU is missing.
    """

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        reason = engine_unavailable_reason()
        if reason is not None:
            raise BackendUnavailableError("sglang", ENGINE_EXTRA, reason)
        import sglang

        self.arguments = dict(arguments)
        self._engine: Any = sglang.Engine(**self.arguments)
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """``sglang.Engine(<model_path>)``."""
        return f"sglang.Engine({self.arguments['model_path']})"

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """Answer ``path`` as the HTTP server would."""
        if self._engine is None:
            raise BackendError(f"{self.where} is shut down")
        body: Mapping[str, Any] = payload or {}
        with self._lock:
            if path == "/get_model_info":
                return {
                    "model_path": self.arguments["model_path"],
                    "is_generation": not self.arguments.get("is_embedding", False),
                }
            if path == "/generate":
                kwargs = {_GENERATE_KEYS[k]: v for k, v in body.items() if k in _GENERATE_KEYS}
                return self._engine.generate(**kwargs)
            if path == "/classify":
                return self._engine.encode(prompt=body["text"])
            if path in ("/v1/tokenize", "/tokenize"):
                tokenizer = self._engine.tokenizer_manager.tokenizer
                special = bool(body.get("add_special_tokens", True))
                texts = body["prompt"]
                rows = [tokenizer.encode(t, add_special_tokens=special) for t in texts]
                return {"tokens": rows, "count": [len(r) for r in rows]}
        raise BackendError(f"{self.where} cannot serve {method} {path}")

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Run sequentially: the engine batches inside one call."""
        return [fn(x) for x in items]

    def close(self) -> None:
        """Shut the engine down. Calling it twice is harmless."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()

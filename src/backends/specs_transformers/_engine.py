"""Lazy access to torch and transformers, and the device and dtype choices shared by all models.

Nothing here imports torch or transformers at module import time: :func:`engine` imports them on
first use and turns a missing package into :class:`~specs_core.errors.BackendUnavailableError`
naming the ``transformers`` pip extra.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from specs_core.errors import BackendUnavailableError, InvalidInputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BACKEND",
    "CACHE_DIR_ENV",
    "EXTRA",
    "Engine",
    "conversion_cache_root",
    "engine",
    "model_output_logits",
    "resolve_device",
    "resolve_dtype",
    "set_threads",
    "unavailable_reason",
]

log = logging.getLogger(__name__)

BACKEND = "transformers"
EXTRA = "transformers"
CACHE_DIR_ENV = "SPECS_CACHE_DIR"
_REQUIRED = ("torch", "transformers")


class Engine(NamedTuple):
    """The imported engine modules."""

    torch: ModuleType
    transformers: ModuleType


def unavailable_reason() -> str | None:
    """``None`` when torch and transformers are installed, else why not (imports nothing)."""
    missing = []
    for name in _REQUIRED:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a module blocked or half-imported
            found = False
        if not found:
            missing.append(name)
    if missing:
        return f"{' and '.join(missing)} not installed"
    return None


_engine: Engine | None = None


def engine() -> Engine:
    """Import torch and transformers (once).

    Raises:
        BackendUnavailableError: one of them is missing or fails to import.
    """
    global _engine
    if _engine is None:
        try:
            torch_module = importlib.import_module("torch")
            transformers_module = importlib.import_module("transformers")
        except ImportError as e:
            raise BackendUnavailableError(BACKEND, EXTRA, str(e)) from e
        _engine = Engine(torch_module, transformers_module)
    return _engine


def resolve_device(device: str) -> torch.device:
    """The torch device for an option value (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    ``auto`` picks CUDA, then MPS, then the CPU.

    Raises:
        InvalidInputError: the device is not available in this torch build or machine.
    """
    torch = engine().torch
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(
            f"device {device!r} was asked for but torch sees no CUDA device; use device: cpu "
            "(or auto) or install a CUDA build of torch"
        )
    if chosen.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InvalidInputError(
                f"device {device!r} was asked for but MPS is not available; use device: cpu or auto"
            )
    return chosen


_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype for an option value; ``auto`` is float32 on CPU, bfloat16 on CUDA when the
    GPU supports it (else float16) and float16 on MPS."""
    torch = engine().torch
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise InvalidInputError(f"unknown dtype {dtype!r}; use auto, {', '.join(_DTYPES)}")
    resolved = getattr(torch, _DTYPES[dtype])
    return resolved


def conversion_cache_root(configured: str | None = None) -> Path:
    """Where converted GGUF models are saved: the option, else ``$SPECS_CACHE_DIR/transformers``,
    else ``~/.cache/specs/transformers``."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser() / "transformers"
    return Path.home() / ".cache" / "specs" / "transformers"


def set_threads(n_threads: int | None) -> None:
    """Set torch's intra-op thread count (process-wide) when asked to."""
    if n_threads is not None:
        torch = engine().torch
        if torch.get_num_threads() != n_threads:
            log.info("torch intra-op threads set to %d", n_threads)
            torch.set_num_threads(n_threads)


def model_output_logits(output: Any) -> Any:
    """The logits of a model output (an object with ``.logits``, or a tuple whose first item)."""
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, (tuple, list)):
        logits = output[0]
    return logits

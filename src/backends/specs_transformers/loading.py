"""Loading weights and tokenizers: local directories, hub repositories and GGUF files.

A GGUF file is dequantized by transformers (it needs the ``gguf`` and ``accelerate`` packages),
which is slow; the converted model is then saved once (safetensors) under the conversion cache
(:func:`~specs_transformers._engine.conversion_cache_root`) and later loads read that copy. The
cache key is the file's absolute path, size and modification time, the dtype and the transformers
version, so a replaced file or an upgrade converts again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from specs_core.backend_kit.artifacts import resolve_model_path
from specs_core.errors import BackendUnavailableError, ModelNotFoundError

from specs_transformers._engine import (
    BACKEND,
    EXTRA,
    conversion_cache_root,
    engine,
    resolve_device,
    resolve_dtype,
    set_threads,
)
from specs_transformers.options import TransformersOptions

if TYPE_CHECKING:
    import torch

__all__ = [
    "LoadedModel",
    "ModelSource",
    "describe_source",
    "gguf_cache_key",
    "load_causal_lm",
    "load_pretrained",
    "resolve_gguf_path",
    "resolve_source",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: a local directory or a hub repository."""

    location: str
    local: bool
    revision: str | None = None


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith(("/", "./", "../", "~", "\\"))
        or text.endswith(".gguf")
        or text.count("/") > 1
        or (os.sep in text and os.sep != "/")
    )


def resolve_source(model: str, revision: str | None = None) -> ModelSource:
    """Classify ``model`` as an existing local directory or a hub repo id.

    Raises:
        ModelNotFoundError: it looks like a path but does not exist.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return ModelSource(str(path.resolve()), local=True)
    if path.exists():
        raise ModelNotFoundError(
            f"model {model!r} is a file, not a model directory; pass its directory, or a .gguf "
            "file as gguf_file"
        )
    if _looks_like_path(model):
        raise ModelNotFoundError(
            f"model directory {model!r} does not exist; check the path or give a hub repo id "
            "(OWNER/NAME)"
        )
    return ModelSource(model, local=False, revision=revision)


def describe_source(source: ModelSource) -> str:
    """A short human-readable description for messages."""
    if source.local:
        return f"directory {source.location!r}"
    rev = f" at revision {source.revision!r}" if source.revision else ""
    return f"hub repository {source.location!r}{rev}"


def load_pretrained(loader: Callable[..., T], source: ModelSource, what: str, **kwargs: Any) -> T:
    """Call ``loader.from_pretrained``-style ``loader(location, **kwargs)`` with clear errors.

    Raises:
        ModelNotFoundError: the files cannot be found locally or fetched from the hub (offline).
    """
    if not source.local and source.revision is not None:
        kwargs.setdefault("revision", source.revision)
    try:
        return loader(source.location, **kwargs)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if source.local:
            raise ModelNotFoundError(
                f"cannot load the {what} from {describe_source(source)}: {first}"
            ) from e
        raise ModelNotFoundError(
            f"cannot load the {what} from {describe_source(source)}: {first}. Without internet "
            f"access, download it first (huggingface-cli download {source.location}) or point "
            "'model' at a local directory"
        ) from e


def resolve_gguf_path(gguf_file: str) -> Path:
    """A local GGUF path for a ``.gguf`` path, an embedded model name or ``hf:OWNER/REPO/FILE``.

    Embedded names and ``hf:`` sources are resolved (and checksum-verified) by
    :mod:`specs_core.backend_kit.artifacts`, which needs no engine.

    Raises:
        ModelNotFoundError: the file cannot be found or verified.
    """
    path = Path(gguf_file).expanduser()
    if path.is_file():
        return path.resolve()
    return resolve_model_path(gguf_file)


def gguf_cache_key(path: Path, dtype: str) -> str:
    """The conversion-cache key of a GGUF file: its identity, the dtype and the engine version."""
    stat = path.stat()
    version = engine().transformers.__version__
    raw = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{dtype}|{version}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _require_gguf_packages() -> None:
    missing = [p for p in ("gguf", "accelerate") if importlib.util.find_spec(p) is None]
    if missing:
        raise BackendUnavailableError(
            BACKEND, EXTRA, f"loading a GGUF file needs {' and '.join(missing)}"
        )


@dataclass
class LoadedModel:
    """A causal LM ready to run, with its tokenizer.

    Attributes:
        model: the ``PreTrainedModel`` (in eval mode, on ``device``).
        tokenizer: its tokenizer.
        device: where the model runs.
        origin: a short description of where it was loaded from.
        load_seconds: wall time of the load.
        from_cache: a converted GGUF model was read from the conversion cache.
    """

    model: Any
    tokenizer: Any
    device: torch.device
    origin: str
    load_seconds: float = 0.0
    from_cache: bool = False


def _local_gguf(options: TransformersOptions) -> Path:
    """The GGUF file as a local path; a file in a hub repository is downloaded once.

    Raises:
        ModelNotFoundError: the file is missing, or cannot be fetched (offline).
    """
    name = str(options.gguf_file)
    if not options.model:
        return resolve_gguf_path(name)
    source = resolve_source(options.model, options.revision)
    if source.local:
        path = Path(source.location) / name
        if not path.is_file():
            raise ModelNotFoundError(
                f"{describe_source(source)} has no GGUF file {name!r}; check gguf_file"
            )
        return path
    try:
        from huggingface_hub import hf_hub_download

        return Path(
            hf_hub_download(
                source.location,
                name,
                revision=source.revision,
                local_files_only=options.local_files_only,
            )
        )
    except Exception as e:  # offline, missing file, bad revision: all reported the same way
        raise ModelNotFoundError(
            f"cannot fetch {name!r} from {describe_source(source)}: {e}. Without internet "
            f"access, download it first (huggingface-cli download {source.location} {name}) "
            "or pass a local .gguf path as gguf_file"
        ) from e


def _gguf_load(options: TransformersOptions, dtype: torch.dtype) -> tuple[Any, Any, str, bool]:
    tf = engine().transformers
    path = _local_gguf(options)
    target: Path | None = None
    if options.gguf_cache:
        dtype_name = str(dtype).removeprefix("torch.")
        target = conversion_cache_root(options.cache_dir) / gguf_cache_key(path, dtype_name)
        if (target / "config.json").is_file():
            log.info("loading converted %s from %s", path.name, target)
            cached = ModelSource(str(target), local=True)
            model = load_pretrained(
                tf.AutoModelForCausalLM.from_pretrained, cached, "model", dtype=dtype
            )
            tokenizer = load_pretrained(tf.AutoTokenizer.from_pretrained, cached, "tokenizer")
            return model, tokenizer, f"{path.name} (converted copy in {target})", True
    _require_gguf_packages()
    location = ModelSource(str(path.parent), local=True)
    log.info("converting %s with transformers (dequantizing; slow the first time)", path.name)
    tokenizer = load_pretrained(
        tf.AutoTokenizer.from_pretrained, location, "tokenizer", gguf_file=path.name
    )
    model = load_pretrained(
        tf.AutoModelForCausalLM.from_pretrained, location, "model", dtype=dtype, gguf_file=path.name
    )
    if target is not None:
        _save_converted(model, tokenizer, target, path)
    return model, tokenizer, path.name, False


def _save_plain(model: Any, directory: Path) -> None:
    """``save_pretrained`` a dequantized GGUF model as a plain (unquantized) checkpoint.

    transformers marks models loaded from GGUF as quantized with a non-serializable method,
    although their weights are already dequantized; the mark is lifted for the save.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    config = model.config
    quantization = config.__dict__.pop("quantization_config", None)
    try:
        model.hf_quantizer = None
        model.save_pretrained(directory)
    finally:
        model.hf_quantizer = quantizer
        if quantization is not None:
            config.quantization_config = quantization


def _save_converted(model: Any, tokenizer: Any, target: Path, gguf: Path) -> None:
    """Save a converted model atomically (a temporary directory renamed into place)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            _save_plain(model, tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "specs-source.json").write_text(json.dumps({"gguf": str(gguf)}) + "\n")
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (target / "config.json").is_file():  # not saved by a concurrent process
                raise
            return
        log.info("saved the converted model to %s", target)
    except (OSError, ValueError) as e:  # a failed save must not stop the model from working
        log.warning("could not save the converted model to %s: %s", target, e)


def load_causal_lm(options: TransformersOptions) -> LoadedModel:
    """Load the causal LM and tokenizer that ``options`` name.

    Raises:
        ModelNotFoundError: the model cannot be found, or fetched from the hub (offline).
        BackendUnavailableError: torch, transformers, or (for GGUF) gguf/accelerate are missing.
        InvalidInputError: the device is unavailable.
    """
    tf = engine().transformers
    set_threads(options.n_threads)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    start = time.perf_counter()
    from_cache = False
    if options.gguf_file:
        model, tokenizer, origin, from_cache = _gguf_load(options, dtype)
    else:
        source = resolve_source(str(options.model), options.revision)
        common: dict[str, Any] = {
            "trust_remote_code": options.trust_remote_code,
            "local_files_only": options.local_files_only,
        }
        model = load_pretrained(
            tf.AutoModelForCausalLM.from_pretrained, source, "model", dtype=dtype, **common
        )
        tokenizer = None
        origin = describe_source(source)
    if options.tokenizer or tokenizer is None:
        tok_source = (
            resolve_source(options.tokenizer, options.revision) if options.tokenizer else source
        )
        tokenizer = load_pretrained(
            tf.AutoTokenizer.from_pretrained,
            tok_source,
            "tokenizer",
            trust_remote_code=options.trust_remote_code,
            local_files_only=options.local_files_only,
        )
    model = model.to(device).eval()
    seconds = time.perf_counter() - start
    log.info("loaded %s on %s in %.1f s", origin, device, seconds)
    return LoadedModel(model, tokenizer, device, origin, seconds, from_cache)

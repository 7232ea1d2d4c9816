"""Loading for the transformers backend: directories, hub ids offline, options, registry, and
the engine imported lazily."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="the transformers extra is not installed")

import torch
from specs_core import Specs
from specs_core.config import validate_options
from specs_core.errors import ConfigError, InvalidInputError, ModelNotFoundError
from specs_core.plugins import build_registry
from specs_core.types import Prompt, SamplingParams

from _tiny_hf import one_torch_thread, tiny_llama, tiny_qwen2, tiny_tokenizer
from specs_transformers import CAPABILITIES, TransformersModel, TransformersOptions
from specs_transformers.loading import gguf_cache_key, resolve_source

pytestmark = pytest.mark.transformers


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


QUESTION = "What is 12 * 4?"
GREEDY = SamplingParams(temperature=0.0, max_tokens=8)


def _load(model: TransformersModel) -> Any:
    return model.loaded


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = tiny_tokenizer(True)
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(tok, seed=10).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_saved_directory_loads_and_matches_the_in_memory_model(saved: Path) -> None:
    model = TransformersModel(TransformersOptions(model=str(saved), device="cpu"))
    assert model.name == saved.name
    [[got]] = model.generate([Prompt(QUESTION)], GREEDY)
    lm = model.loaded
    assert lm.device.type == "cpu" and lm.model.dtype == torch.float32
    reference = TransformersModel.from_objects(
        tiny_llama(tiny_tokenizer(True), seed=10), lm.tokenizer
    )
    [[want]] = reference.generate([Prompt(QUESTION)], GREEDY)
    assert got.token_ids == want.token_ids and got.text == want.text
    model.close()
    [[again]] = model.generate([Prompt(QUESTION)], GREEDY)  # loads again after close
    assert again.token_ids == got.token_ids


def test_dtype_option_is_applied(saved: Path) -> None:
    model = TransformersModel(TransformersOptions(model=str(saved), dtype="bfloat16"))
    assert model.loaded.model.dtype == torch.bfloat16
    [[c]] = model.generate([Prompt(QUESTION)], GREEDY)
    assert len(c.token_ids) == len(c.logprobs) > 0


def test_missing_directory_and_file_paths_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        _load(TransformersModel(TransformersOptions(model=str(tmp_path / "nope"))))
    afile = tmp_path / "weights.bin"
    afile.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="not a model directory"):
        _load(TransformersModel(TransformersOptions(model=str(afile))))
    with pytest.raises(ModelNotFoundError, match=re.escape("x.gguf")):
        _load(TransformersModel(TransformersOptions(gguf_file=str(tmp_path / "x.gguf"))))


def test_hub_repository_offline_names_the_download_command() -> None:
    options = TransformersOptions(
        model="HuggingFaceTB/SmolLM2-135M-Instruct", revision="main", local_files_only=True
    )
    with pytest.raises(ModelNotFoundError) as caught:
        _load(TransformersModel(options))
    message = str(caught.value)
    assert "hub repository 'HuggingFaceTB/SmolLM2-135M-Instruct' at revision 'main'" in message
    assert "huggingface-cli download HuggingFaceTB/SmolLM2-135M-Instruct" in message
    assert resolve_source("owner/name").local is False


def test_gguf_sources_that_cannot_be_found_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=re.escape("has no GGUF file 'm.gguf'")):
        _load(TransformersModel(TransformersOptions(model=str(tmp_path), gguf_file="m.gguf")))
    options = TransformersOptions(
        model="owner/repo-GGUF", gguf_file="m.Q4_K_M.gguf", local_files_only=True
    )
    with pytest.raises(
        ModelNotFoundError,
        match=re.escape("huggingface-cli download owner/repo-GGUF m.Q4_K_M.gguf"),
    ):
        _load(TransformersModel(options))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_unavailable_device_is_refused(saved: Path) -> None:
    with pytest.raises(InvalidInputError, match="no CUDA device"):
        _load(TransformersModel(TransformersOptions(model=str(saved), device="cuda:0")))


def test_a_tokenizer_without_chat_template_needs_the_option(tmp_path: Path) -> None:
    tok = tiny_tokenizer(True)
    path = tmp_path / "bare"
    tiny_qwen2(tok).save_pretrained(path)
    tok.save_pretrained(path)
    (path / "chat_template.jinja").unlink()
    with pytest.raises(ConfigError, match="set chat_template"):
        _load(TransformersModel(TransformersOptions(model=str(path))))
    template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    model = TransformersModel(TransformersOptions(model=str(path), chat_template=template))
    assert model.render(Prompt("hi", partial="so")) == "hi\nso"


def test_options_reject_unknown_keys_bad_devices_and_no_source() -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown key 'model.temprature'")):
        validate_options({"model": "x", "temprature": 1}, TransformersOptions, "model")
    with pytest.raises(ConfigError, match="device"):
        validate_options({"model": "x", "device": "gpu"}, TransformersOptions, "model")
    with pytest.raises(ConfigError, match="no model given"):
        validate_options({}, TransformersOptions, "model")
    ok = validate_options(
        {"gguf_file": "smollm2-135m", "device": "cuda:1"}, TransformersOptions, "model"
    )
    assert isinstance(ok, TransformersOptions)


def test_gguf_cache_key_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 16)
    first = gguf_cache_key(path, "float32")
    assert gguf_cache_key(path, "float32") == first
    assert gguf_cache_key(path, "bfloat16") != first
    os.utime(path, ns=(1, 1))
    assert gguf_cache_key(path, "float32") != first


def test_backend_is_registered_and_built_from_a_config(saved: Path) -> None:
    registry = build_registry()
    spec = registry.backend("transformers")
    assert spec.extra == "transformers" and spec.unavailable_reason() is None
    config = {
        "target": {"backend": "transformers", "model": str(saved), "name": "tiny"},
        "policy": {"name": "greedy"},
    }
    with Specs.from_config(config, registry=registry) as specs:
        model: Any = specs.model("target")
        assert isinstance(model, TransformersModel)
        assert model.capabilities == CAPABILITIES and CAPABILITIES.prefix_cache
        assert model.name == "tiny"


def test_without_torch_the_backend_imports_and_says_which_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # as if torch were not installed
        from specs_core.errors import BackendUnavailableError
        from specs_core.types import Prompt, SamplingParams
        from specs_transformers import TransformersModel, TransformersOptions
        from specs_transformers.plugin import unavailable_reason
        print(unavailable_reason())
        try:
            model = TransformersModel(TransformersOptions(model="x"))
            model.generate([Prompt("q")], SamplingParams())
        except BackendUnavailableError as e:
            print(e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reason, message = out.stdout.strip().splitlines()
    assert reason == "torch not installed"
    assert "pip install 'specs-tts[transformers]'" in message

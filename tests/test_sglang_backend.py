"""The ``sglang`` backend against a live SGLang protocol test double (real SmolLM2 inference).

The server process is ``tests/servers/fake_sglang_server.py``: SGLang's native protocol answered
by llama.cpp on CPU (SGLang itself needs a CUDA GPU). It reports temperature-scaled generation
log-probabilities, as SGLang does by default, so the backend's re-scoring path is exercised.

On a GPU machine, ``SPECS_SGLANG_URL=http://host:port`` runs the same tests against a real SGLang
server instead (tests about the test double's own model are then skipped).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from specs_core.backend_kit.chat import infer_template
from specs_core.errors import BackendUnavailableError, ConfigError, ProtocolError
from specs_core.plugins import build_registry
from specs_core.testing import LANGUAGE_MODEL_CHECKS
from specs_core.types import FinishReason, Prompt, SamplingParams

from servers.launch import ServerProcess, smollm2_path, start_fake_sglang
from specs_sglang import SGLangModel, SGLangOptions, build_renderer
from specs_sglang.backend import parse_token_entries

pytestmark = [pytest.mark.server, pytest.mark.llamacpp, pytest.mark.slow]

TOLERANCE = 1e-4


EXTERNAL_URL = os.environ.get("SPECS_SGLANG_URL")


@dataclass
class ExternalServer:
    """A server this test module did not start (a real SGLang server)."""

    url: str


Server = ServerProcess | ExternalServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if EXTERNAL_URL:
        yield ExternalServer(EXTERNAL_URL.rstrip("/"))
        return
    srv = start_fake_sglang(tmp_path_factory.mktemp("sglang"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def model(server: Server) -> Iterator[SGLangModel]:
    m = SGLangModel(SGLangOptions(url=server.url, timeout_s=120))
    yield m
    m.close()


@pytest.mark.parametrize("check", sorted(LANGUAGE_MODEL_CHECKS))
def test_conformance(model: SGLangModel, check: str) -> None:
    LANGUAGE_MODEL_CHECKS[check](model, TOLERANCE)


def test_the_chat_template_is_inferred_from_the_served_model_path(model: SGLangModel) -> None:
    if EXTERNAL_URL:
        pytest.skip("checks the test double's SmolLM2 model path")
    text = model.render(Prompt("Hi?", partial="Sure"))
    assert model.model_path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\nSure"
    )


def test_builtin_smollm2_template_equals_the_gguf_jinja_template() -> None:
    import llama_cpp

    llm = llama_cpp.Llama(str(smollm2_path()), vocab_only=True, verbose=False)
    jinja = build_renderer(
        llm.metadata["tokenizer.chat_template"], None, None, backend="sglang", extra="sglang"
    )
    builtin = build_renderer("smollm2", None, None, backend="sglang", extra="sglang")
    prompts = (Prompt("What is 2 + 3?"), Prompt("Q", partial="Step 1.\n\n", system="Be brief."))
    for prompt in prompts:
        assert jinja(prompt) == builtin(prompt)


def test_templates_are_inferred_by_family_and_unknown_models_ask_for_one() -> None:
    assert infer_template("Qwen/Qwen2.5-Math-7B-Instruct") == "qwen2.5-math"
    assert infer_template("meta-llama/Llama-3.1-8B-Instruct") == "llama3"
    with pytest.raises(ConfigError, match="set chat_template"):
        build_renderer(None, None, "/models/mystery-7b", backend="sglang", extra="sglang")
    with pytest.raises(ConfigError, match="neither a built-in"):
        build_renderer("no-such-template", None, None, backend="sglang", extra="sglang")


def test_a_step_stops_at_the_delimiter_which_is_kept(model: SGLangModel) -> None:
    params = SamplingParams(n=2, temperature=0.0, max_tokens=48, stop=("\n\n", "."))
    [[a, b]] = model.generate([Prompt("Explain what 2 + 3 is, step by step.")], params)
    assert a.text == b.text
    assert a.finish_reason is FinishReason.STOP
    assert a.text.endswith((".", "\n\n"))


def test_prefill_mode_scores_like_tokenize_mode(server: Server, model: SGLangModel) -> None:
    prefill = SGLangModel(SGLangOptions(url=server.url, scoring_tokenization="prefill"))
    try:
        prompts = [Prompt("What is 2 + 3?"), Prompt("What is 2 + 3?", partial="First, add.\n\n")]
        texts = ["First, add 2 and 3.\n\n", "So the answer is 5."]
        exact = model.logprobs(prompts, texts)
        counted = prefill.logprobs(prompts, texts)
        for a, b in zip(exact, counted, strict=True):
            assert a.token_ids == b.token_ids
            assert a.prompt_tokens == b.prompt_tokens
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-6
    finally:
        prefill.close()


def test_tempered_server_logprobs_are_rescored(server: Server, model: SGLangModel) -> None:
    # Declaring original_logprobs on a server that tempers them shows what re-scoring fixes.
    trusting = SGLangModel(
        SGLangOptions(url=server.url, original_logprobs=True, rescore_generation="when_tempered")
    )
    try:
        prompt = Prompt("Name three colors.")
        params = SamplingParams(n=1, temperature=0.5, max_tokens=6, seed=7)
        [[raw]] = trusting.generate([prompt], params)
        [[fixed]] = model.generate([prompt], params)
        [scored] = model.logprobs([prompt], [fixed.text])
        assert raw.token_ids == fixed.token_ids  # the same sample...
        assert max(abs(a - b) for a, b in zip(fixed.logprobs, scored.logprobs, strict=True)) < 1e-6
        assert max(abs(a - b) for a, b in zip(raw.logprobs, fixed.logprobs, strict=True)) > 0.05
    finally:
        trusting.close()


def test_a_server_for_another_model_is_refused(server: Server) -> None:
    other = SGLangModel(SGLangOptions(url=server.url, model="Qwen/Qwen2.5-Math-7B-Instruct"))
    with pytest.raises(ConfigError, match=r"not 'Qwen/Qwen2\.5-Math-7B-Instruct'"):
        other.generate([Prompt("Hi")], SamplingParams(max_tokens=1))
    other.close()


def test_names_and_capabilities(server: Server) -> None:
    assert SGLangModel(SGLangOptions(url=server.url)).name.startswith("sglang@127.0.0.1:")
    named = SGLangModel(SGLangOptions(url=server.url, model="m", name="draft-a", seeded=False))
    assert named.name == "draft-a"
    caps = named.capabilities
    assert caps.prefix_cache and caps.scoring and caps.batched_generation and not caps.seeded


def test_malformed_token_entries_name_the_field() -> None:
    with pytest.raises(ProtocolError, match=r"meta\[1\]: log-probability None"):
        parse_token_entries([[-0.1, 5, "a"], [None, 6, "b"]], "meta")
    with pytest.raises(ProtocolError, match="token id 'x' is not an integer"):
        parse_token_entries([[-0.1, "x", None]], "meta")


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        SGLangOptions(url="localhost:30000")
    with pytest.raises(ValueError, match="not both"):
        SGLangOptions(url="http://127.0.0.1:1", engine={"model_path": "m"})
    with pytest.raises(ConfigError, match="needs a server"):
        SGLangModel(SGLangOptions()).generate([Prompt("q")], SamplingParams(max_tokens=1))


def test_the_in_process_engine_needs_sglang() -> None:
    pytest.importorskip("httpx")
    if _has_module("sglang"):
        pytest.skip("sglang is installed here; the unavailable path cannot be shown")
    engine = SGLangModel(SGLangOptions(engine={"model_path": "Qwen/Qwen2.5-0.5B-Instruct"}))
    with pytest.raises(BackendUnavailableError, match=r"specs-tts\[sglang-engine\]"):
        engine.generate([Prompt("q")], SamplingParams(max_tokens=1))


def test_missing_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(BackendUnavailableError, match=r"specs-tts\[sglang\]"):
        SGLangModel(SGLangOptions(url="http://127.0.0.1:9")).generate(
            [Prompt("q")], SamplingParams(max_tokens=1)
        )


def test_packages_import_without_httpx_or_sglang() -> None:
    code = (
        "import sys, specs_sglang, specs_openai; "
        "print(sorted(m for m in ('httpx', 'sglang', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registered_through_the_plugin_hooks() -> None:
    registry = build_registry()
    assert registry.backend("sglang").extra == "sglang"
    assert registry.backend("openai").extra == "openai"
    assert registry.reward_model("sglang-prm").extra == "sglang"
    assert not [f for f in registry.failures if "sglang" in f.plugin or "openai" in f.plugin]


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None

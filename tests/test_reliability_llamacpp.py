"""Reliability of the llama.cpp backend under bad settings: errors, not crashes or hangs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from specs_core.errors import ConfigError

from specs_llamacpp import LlamaCppModel, LlamaCppOptions
from specs_llamacpp.runtime import THREADS_PER_CORE

pytestmark = pytest.mark.llamacpp

EMBEDDED = "smollm2-135m"


def test_thread_counts_that_crash_or_hang_llama_cpp_are_refused() -> None:
    with pytest.raises(ValueError, match="less than or equal to 512"):
        LlamaCppOptions(model=EMBEDDED, n_threads=100_000)  # segfaulted
    too_many = min(512, THREADS_PER_CORE * (os.cpu_count() or 1) + 1)
    with pytest.raises(ConfigError, match=rf"n_threads {too_many} is more than"):
        _ = LlamaCppModel(LlamaCppOptions(model=EMBEDDED, n_threads=too_many)).runtime  # 4096 hung


def test_a_context_longer_than_the_model_was_trained_on_is_refused() -> None:
    with pytest.raises(ValueError, match="less than or equal to 16777216"):
        LlamaCppOptions(model=EMBEDDED, n_ctx=2_000_000_000)  # was OOM-killed
    too_long = LlamaCppOptions(model=EMBEDDED, n_ctx=1_000_000, n_threads=1, n_seq_max=4)
    with pytest.raises(ConfigError, match=r"n_ctx 1000000 is more than 4 sequences .* of the"):
        _ = LlamaCppModel(too_long).runtime
    model = LlamaCppModel(LlamaCppOptions(model=EMBEDDED, n_ctx=256, n_threads=1))
    assert model.runtime.n_ctx == 256
    model.close()


def test_a_whole_solution_overflow_names_the_policy_option_to_lower(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from specs_core.cli import run

    config = str(Path(__file__).resolve().parents[1] / "examples" / "configs" / "smollm2.yaml")
    small = ["--set", "target.n_ctx=512", "--set", "draft.n_ctx=512"]
    assert run(["solve", "What is 2 + 3?", "-c", config, "--policy", "majority", *small]) == 2
    err = capsys.readouterr().err
    assert "more than the context of 512 tokens" in err
    assert "lower policy.max_solution_tokens (now 2048) or policy.n (now 2)" in err

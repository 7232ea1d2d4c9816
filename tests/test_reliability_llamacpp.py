"""Reliability of the llama.cpp backend under bad settings: errors, not crashes or hangs."""

from __future__ import annotations

import os

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
    with pytest.raises(ConfigError, match=r"n_ctx 1000000 is longer than the \d+ tokens"):
        _ = LlamaCppModel(LlamaCppOptions(model=EMBEDDED, n_ctx=1_000_000, n_threads=1)).runtime
    model = LlamaCppModel(LlamaCppOptions(model=EMBEDDED, n_ctx=256, n_threads=1))
    assert model.runtime.n_ctx == 256
    model.close()

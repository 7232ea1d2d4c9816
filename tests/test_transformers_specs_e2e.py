"""SPECS end to end from one YAML file: a transformers draft (the SmolLM2 GGUF through
transformers), a llama.cpp target (the same GGUF) and the LLM judge on the target."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the transformers extra is not installed")
pytest.importorskip("gguf", reason="loading a GGUF file through transformers needs gguf")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")

from specs_core import Specs
from specs_core.errors import ModelNotFoundError
from specs_core.types import StepSource

from specs_transformers import TransformersModel
from specs_transformers.loading import resolve_gguf_path

pytestmark = [pytest.mark.transformers, pytest.mark.llamacpp, pytest.mark.slow]

CONFIG = Path(__file__).parent.parent / "examples/configs/transformers-draft-llamacpp-target.yaml"


def test_specs_runs_with_a_transformers_draft_and_a_llamacpp_target(tmp_path: Path) -> None:
    try:
        resolve_gguf_path("smollm2-135m")
    except ModelNotFoundError as e:
        pytest.skip(f"the embedded SmolLM2 GGUF is not installed: {e}")
    # Accept every draft after the first (target) step so that the transformers draft writes
    # steps whatever the judge says; the converted GGUF goes to a temporary cache.
    overrides = [
        f"draft.cache_dir={tmp_path}",
        "policy.tau_sw=0",
        "policy.tau_acc=-inf",
        "policy.max_steps=3",
    ]
    with Specs.from_config(CONFIG, overrides) as specs:
        assert specs.config.draft.backend == "transformers"  # type: ignore[union-attr]
        assert specs.config.target.backend == "llamacpp"  # type: ignore[union-attr]
        draft = specs.model("draft")
        assert isinstance(draft, TransformersModel)
        steps: list[object] = []
        result = specs.solve("What is 2 + 3?", on_step=steps.append)
    assert result.policy == "specs" and result.text.strip()
    assert len(steps) == len(result.steps) >= 2
    assert result.steps[0].source is StepSource.TARGET
    assert result.draft_steps >= 1 and result.accepted_draft_steps >= 1
    tokens = result.usage.tokens
    assert tokens["smollm2-135m-transformers"].generated > 0
    target = next(name for name in tokens if name != "smollm2-135m-transformers")
    assert tokens[target].prompt > 0
    for phase in ("draft_generate", "target_score", "reward"):
        assert result.usage.latency_s[phase] > 0
    drafted = [
        c for s in result.steps if s.drafted for c in s.candidates if c.source is StepSource.DRAFT
    ]
    assert drafted and all(
        c.draft_logprob is not None and c.target_logprob is not None for c in drafted
    )

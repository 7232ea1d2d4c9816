"""The ``vllm-prm`` reward model against the live protocol test double's vLLM pooling endpoints.

The double's ``/pooling`` and ``/v1/embeddings`` stand in for a PRM served by ``vllm serve
--runner pooling``: at every token, P(Yes) / (P(Yes) + P(No)) for SmolLM2's next token (real
inference, not a trained PRM). The checks are about the protocol: which tokens the rewards are
read at, both row layouts vLLM answers with, batching, and errors; the expected rewards are
computed here independently, from the same GGUF loaded in this process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from specs_core import Specs
from specs_core.errors import ConfigError, RewardError
from specs_core.testing import REWARD_MODEL_CHECKS

from servers.launch import ServerProcess, smollm2_path, start_fake_sglang
from servers.llama_inference import LlamaInference
from specs_openai.prm import VLLMRewardModel, VLLMRewardOptions

pytestmark = [pytest.mark.server, pytest.mark.llamacpp, pytest.mark.slow]

QUESTION = "What is 2 + 3?"
STEPS = ["First, add 2 and 3.", "So 2 + 3 = 5.", "The answer is $\\boxed{5}$."]
TAG = "<|endoftext|>"  # one token in SmolLM2's vocabulary (Qwen2.5-Math-PRM's is <extra_0>)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_fake_sglang(tmp_path_factory.mktemp("vllm-prm"))
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _clean(server: ServerProcess) -> None:
    server.reset()


@pytest.fixture(scope="module")
def engine() -> LlamaInference:
    return LlamaInference(str(smollm2_path()))


def pooling(server: ServerProcess, **options: Any) -> VLLMRewardModel:
    return VLLMRewardModel(VLLMRewardOptions(url=server.url, **{"step_tag": TAG, **options}))


def embeddings(server: ServerProcess, **options: Any) -> VLLMRewardModel:
    return VLLMRewardModel(VLLMRewardOptions(url=server.url, style="embeddings", **options))


def p_yes(engine: LlamaInference, ids: list[int], positions: list[int]) -> list[float]:
    yes, no = engine.tokenize("Yes", False)[0], engine.tokenize("No", False)[0]
    rows, _ = engine.prefill(ids, 0)
    out = []
    for pos in positions:
        logits = np.asarray(rows[pos], dtype=np.float64)
        out.append(1.0 / (1.0 + math.exp(float(logits[no] - logits[yes]))))
    return out


@pytest.mark.parametrize("check", sorted(REWARD_MODEL_CHECKS))
def test_conformance(server: ServerProcess, check: str) -> None:
    REWARD_MODEL_CHECKS[check](pooling(server), 1e-6)


def test_pooling_reads_every_step_at_its_tag_from_one_pass(
    server: ServerProcess, engine: LlamaInference
) -> None:
    prm = pooling(server)
    ids, positions = prm.encode(QUESTION, STEPS)
    tag_id = engine.tokenize(TAG, False)[0]
    assert [ids[p] for p in positions] == [tag_id] * len(STEPS)
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    text = (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
        f"<|im_start|>assistant\n{TAG.join(STEPS)}{TAG}"
    )
    assert ids == engine.tokenize(text, False)
    rewards = prm.score(QUESTION, [STEPS])[0]
    assert rewards == pytest.approx(p_yes(engine, ids, positions), abs=1e-5)
    assert server.stats()["requests"].get("/pooling") == 1  # all three steps, one request
    assert prm.score_last(QUESTION, [STEPS[:2], STEPS]) == pytest.approx(
        [prm.score(QUESTION, [STEPS[:2]])[0][-1], rewards[-1]], abs=1e-6
    )


def test_pooling_reads_the_rows_of_a_step_tag_pooler_too(server: ServerProcess) -> None:
    prm = pooling(server)
    per_token = prm.score(QUESTION, [STEPS])[0]
    ids, _ = prm.encode(QUESTION, STEPS)
    tag_id = ids[prm.encode(QUESTION, STEPS)[1][0]]
    server.faults(pool_step_tag_id=tag_id)  # as --pooler-config '{"step_tag_id": ...}' does
    assert pooling(server).score(QUESTION, [STEPS])[0] == pytest.approx(per_token, abs=1e-9)


def test_embeddings_read_a_value_head_at_each_step_token(
    server: ServerProcess, engine: LlamaInference
) -> None:
    prm = embeddings(server)
    ids, positions = prm.encode(QUESTION, STEPS)
    newline = engine.tokenize("\n", False)
    assert [ids[p] for p in positions] == [newline[-1]] * len(STEPS)
    head = engine.tokenize(QUESTION + "\n", True)
    assert ids[: len(head)] == head  # question, then each step tokenized on its own
    rewards = prm.score(QUESTION, [STEPS, STEPS[:1]])
    assert rewards[0] == pytest.approx(p_yes(engine, ids, positions), abs=1e-5)
    assert rewards[1] == pytest.approx(rewards[0][:1], abs=1e-9)
    assert server.stats()["requests"].get("/v1/embeddings") == 1


def test_a_step_holding_the_tag_or_a_long_tag_is_a_clear_error(server: ServerProcess) -> None:
    # special-looking text in a step is neutralized: it cannot pose as the PRM's own tag
    assert len(pooling(server).score(QUESTION, [["Add 2 and 3" + TAG, "5"]])[0]) == 2
    # a plain-text tag inside a step would shift every reward: refused
    with pytest.raises(RewardError, match="3 step tags"):
        pooling(server, step_tag="§").score(QUESTION, [["Add 2§3", "5"]])
    with pytest.raises(ConfigError, match="step_tag"):
        VLLMRewardModel(VLLMRewardOptions(url=server.url)).score(QUESTION, [STEPS])


def test_vllm_prm_guides_a_search_from_a_config(server: ServerProcess) -> None:
    config = {
        "target": {"backend": "openai", "url": server.url, "chat_template": "smollm2"},
        "reward": {"name": "vllm-prm", "url": server.url, "step_tag": TAG},
        "policy": {"name": "beam_search", "n": 2, "max_steps": 2, "max_step_tokens": 24},
    }
    with Specs.from_config(config) as specs:
        result = specs.solve(QUESTION)
    assert result.steps and all(0.0 <= (s.reward or 0.0) <= 1.0 for s in result.steps)
    assert "vllm-prm@" in "".join(result.usage.tokens)

"""SPECS end to end with every model remote: draft, target and judge PRM behind servers.

Two protocol test double processes (real SmolLM2 inference): the draft is spoken to in SGLang's
native protocol, the target through the OpenAI-compatible endpoint, and the judge PRM scores with
the target. A second run uses the ``sglang-prm`` reward model on ``/classify``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from specs_core import Specs
from specs_core.types import SearchResult, StepRecord, StepSource

from servers.launch import ServerProcess, start_fake_sglang

pytestmark = [pytest.mark.server, pytest.mark.llamacpp, pytest.mark.slow]

QUESTION = "Tom has 7 apples and buys 8 more. How many apples does he have?"
POLICY = {
    "name": "specs",
    "n": 2,
    "max_steps": 3,
    "max_step_tokens": 10,
    "temperature": 0.7,
    "tau_acc": -5.0,
    "tau_sw": 0.0,
    "seed": 1,
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ...]]:
    logs = tmp_path_factory.mktemp("e2e")
    draft, target = start_fake_sglang(logs), start_fake_sglang(logs)
    yield draft, target
    draft.stop()
    target.stop()


def _config(draft: ServerProcess, target: ServerProcess, reward: dict[str, Any]) -> dict:
    return {
        "draft": {"backend": "sglang", "url": draft.url, "name": "draft", "timeout_s": 300},
        "target": {
            "backend": "openai",
            "url": target.url,
            "name": "target",
            "timeout_s": 300,
            "tempered_logprobs": True,
        },
        "reward": reward,
        "policy": POLICY,
    }


def _check(result: SearchResult, steps: list[StepRecord]) -> None:
    assert result.steps and [s.index for s in steps] == [s.index for s in result.steps]
    assert result.steps[0].source is StepSource.TARGET  # SPECS: the target writes step 1
    assert result.text and result.solution_steps
    assert result.accepted_draft_steps + result.rejected_draft_steps >= 1
    tokens = result.usage.tokens
    assert tokens["target"].generated > 0 and tokens["target"].prompt > 0
    assert tokens["draft"].generated > 0
    assert result.usage.latency_s["draft_generate"] > 0
    assert result.usage.latency_s["target_score"] > 0


def test_specs_with_remote_draft_target_and_judge(servers: tuple[ServerProcess, ...]) -> None:
    draft, target = servers
    draft.reset()
    target.reset()
    steps: list[StepRecord] = []
    config = _config(draft, target, {"name": "judge", "model": "target"})
    with Specs.from_config(config) as specs:
        result = specs.solve(QUESTION, on_step=steps.append)
    _check(result, steps)
    assert result.final_score is not None and 0.0 <= result.final_score <= 1.0
    assert draft.stats()["requests"]["/generate"] >= 1
    assert target.stats()["requests"]["/v1/completions"] >= 2  # generation and echo scoring


def test_specs_with_a_prm_served_on_classify(servers: tuple[ServerProcess, ...]) -> None:
    draft, target = servers
    target.reset()
    steps: list[StepRecord] = []
    config = _config(draft, target, {"name": "sglang-prm", "url": target.url})
    with Specs.from_config(config) as specs:
        result = specs.solve(QUESTION, on_step=steps.append)
    _check(result, steps)
    assert target.stats()["requests"]["/classify"] >= 1

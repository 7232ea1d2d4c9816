"""The ``sglang-prm`` reward model against the live SGLang protocol test double.

The test double's ``/classify`` stands in for a PRM served with ``--is-embedding``: its "reward"
is the SmolLM2 probability of answering Yes rather than No after the text (real inference, not a
trained PRM), so the checks are about the protocol, batching and caching, not reward quality.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from specs_core import Specs
from specs_core.testing import REWARD_MODEL_CHECKS

from servers.launch import ServerProcess, start_fake_sglang
from specs_sglang import SGLangRewardModel, SGLangRewardOptions

pytestmark = [pytest.mark.server, pytest.mark.llamacpp, pytest.mark.slow]

QUESTION = "What is 2 + 3?"
STEPS = ["First, add 2 and 3.", "So 2 + 3 = 5.", "The answer is $\\boxed{5}$."]
PRM_STYLE = SGLangRewardOptions(output="probability", step_tag="<extra_0>")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_fake_sglang(tmp_path_factory.mktemp("prm"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def prm(server: ServerProcess) -> Iterator[SGLangRewardModel]:
    # the double's /classify answers a probability; tags as a PRM-style input would have them
    model = SGLangRewardModel(PRM_STYLE.model_copy(update={"url": server.url}))
    yield model
    model.close()


@pytest.mark.parametrize("check", sorted(REWARD_MODEL_CHECKS))
def test_conformance(prm: SGLangRewardModel, check: str) -> None:
    REWARD_MODEL_CHECKS[check](prm, 1e-6)


def test_the_prm_input_ends_with_the_step_tag(prm: SGLangRewardModel) -> None:
    text = prm.render(QUESTION, STEPS[:2])
    assert text.startswith("<|im_start|>system\nPlease reason step by step")
    assert text.endswith(
        "<|im_start|>assistant\nFirst, add 2 and 3.<extra_0>So 2 + 3 = 5.<extra_0>"
    )


def test_score_sends_every_prefix_in_one_request(
    server: ServerProcess, prm: SGLangRewardModel
) -> None:
    server.reset()
    [rewards] = prm.score(QUESTION, [STEPS])
    assert len(rewards) == 3 and all(0.0 < r < 1.0 for r in rewards)
    assert server.stats()["requests"] == {"/classify": 1}
    usage = prm.take_token_usage()
    assert usage["prompt"] > 3 * 20 and prm.take_token_usage() == {"prompt": 0, "cached": 0}


def test_tokens_of_every_batch_are_taken_on_the_calling_thread(server: ServerProcess) -> None:
    single = SGLangRewardModel(SGLangRewardOptions(url=server.url))
    split = SGLangRewardModel(SGLangRewardOptions(url=server.url, max_batch=1))  # 3 requests
    try:
        single.score(QUESTION, [STEPS])
        split.score(QUESTION, [STEPS])  # the transport's workers send the requests
        assert split.take_token_usage()["prompt"] == single.take_token_usage()["prompt"] > 0
    finally:
        single.close()
        split.close()


def test_output_transforms(server: ServerProcess, prm: SGLangRewardModel) -> None:
    [p] = prm.score_last(QUESTION, [STEPS])
    sigmoid = SGLangRewardModel(
        PRM_STYLE.model_copy(update={"url": server.url, "output": "sigmoid"})
    )
    softmax = SGLangRewardModel(
        PRM_STYLE.model_copy(update={"url": server.url, "output": "softmax", "label_index": 0})
    )
    try:
        assert sigmoid.score_last(QUESTION, [STEPS]) == pytest.approx([1 / (1 + math.exp(-p))])
        assert softmax.score_last(QUESTION, [STEPS]) == pytest.approx([1.0])  # one class
    finally:
        sigmoid.close()
        softmax.close()


def test_the_defaults_fit_an_outcome_reward_model(server: ServerProcess) -> None:
    rm = SGLangRewardModel(SGLangRewardOptions(url=server.url))
    try:
        assert rm.render(QUESTION, STEPS[:2]).endswith("First, add 2 and 3.\n\nSo 2 + 3 = 5.\n\n")
        probability = SGLangRewardOptions(url=server.url, output="probability")
        [p] = SGLangRewardModel(probability).score_last(QUESTION, [STEPS])
        assert rm.score_last(QUESTION, [STEPS]) == pytest.approx([1 / (1 + math.exp(-p))])
    finally:
        rm.close()


def test_sglang_prm_is_built_from_a_config(server: ServerProcess) -> None:
    config = {
        "target": {"backend": "sglang", "url": server.url},
        "reward": {"name": "sglang-prm", "url": server.url, "step_tag": "\n\n"},
        "policy": {"name": "greedy"},
    }
    with Specs.from_config(config) as specs:
        reward = specs.reward_model()
        assert isinstance(reward, SGLangRewardModel)
        [[r]] = reward.score(QUESTION, [STEPS[:1]])
        assert 0.0 < r < 1.0

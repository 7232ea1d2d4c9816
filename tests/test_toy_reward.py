"""The toy process reward model: range, content rules, variety, and the core reward guard."""

from __future__ import annotations

import pytest
from specs_core.accounting import Accountant
from specs_core.errors import InvalidInputError
from specs_core.rewards import GuardedRewardModel
from specs_core.testing import STEP_DELIMITER, ToyLanguageModel, ToyRewardModel
from specs_core.text import split_steps, step_content
from specs_core.types import Prompt, SamplingParams

Q = "What is 2 + 3?"


def test_boxed_answers_are_judged_by_the_toy_answer() -> None:
    prm = ToyRewardModel()
    [right, wrong] = prm.score_last(
        Q, [["First add", "So \\boxed{5}"], ["First add", "\\boxed{6}"]]
    )
    assert right >= 0.9
    assert wrong <= 0.2


def test_steps_after_a_wrong_answer_are_penalised() -> None:
    prm = ToyRewardModel()
    steps = [f"Then add {i} and 3" for i in range(12)]
    after_wrong = [prm.score_last(Q, [["\\boxed{6}", s]])[0] for s in steps]
    after_plain = [prm.score_last(Q, [["First add", s]])[0] for s in steps]
    assert max(after_wrong) <= 0.5
    assert sum(after_wrong) < 0.75 * sum(after_plain)


def test_empty_step_scores_zero() -> None:
    assert ToyRewardModel().score(Q, [["First add", "   "]])[0][1] == 0.0


def test_rewards_vary_enough_for_thresholds_to_select_different_steps() -> None:
    model = ToyLanguageModel("draft")
    params = SamplingParams(n=40, temperature=1.0, max_tokens=30, stop=(STEP_DELIMITER,), seed=3)
    steps = [step_content(c.text) for c in model.generate([Prompt(Q)], params)[0]]
    rewards = ToyRewardModel().score_last(Q, [[s] for s in steps])
    for threshold in (0.3, 0.5, 0.7):
        above = sum(r > threshold for r in rewards)
        assert 0 < above < len(rewards), threshold
    assert ToyRewardModel("other").score_last(Q, [[s] for s in steps]) != rewards


def test_full_target_solutions_score_higher_than_draft_ones() -> None:
    prm = ToyRewardModel()
    params = SamplingParams(n=30, temperature=1.0, max_tokens=300, seed=5)
    mean = {}
    for variant in ("target", "draft"):
        texts = [c.text for c in ToyLanguageModel(variant).generate([Prompt(Q)], params)[0]]
        finals = prm.score_last(Q, [[step_content(s) for s in split_steps(t)] for t in texts])
        mean[variant] = sum(finals) / len(finals)
    assert mean["target"] > mean["draft"]


def test_counters_and_latency_knob() -> None:
    prm = ToyRewardModel(ms_per_step=0.5, name="prm")
    prm.score(Q, [["a", "b"], ["c"]])
    prm.score_last(Q, [["a", "b"]])
    assert (prm.name, prm.calls, prm.steps_scored) == ("prm", 2, 4)


def test_invalid_inputs() -> None:
    prm = ToyRewardModel()
    with pytest.raises(InvalidInputError, match="list of step strings"):
        prm.score(Q, ["a single string"])
    with pytest.raises(InvalidInputError, match="at least one step"):
        prm.score_last(Q, [[]])
    with pytest.raises(InvalidInputError, match="ms_per_step"):
        ToyRewardModel(ms_per_step=-1)
    assert prm.score(Q, [[]]) == [[]]


def test_works_behind_the_core_reward_guard() -> None:
    acct = Accountant()
    prm = ToyRewardModel(ms_per_step=1.0)
    guard = GuardedRewardModel(prm, acct, plugin="specs_core.testing.plugin")
    solutions = [["First add 2 and 3", "So \\boxed{5}"], ["First add 2 and 3"]]
    last = guard.last(Q, solutions)
    assert guard.all_steps(Q, solutions) == prm.score(Q, solutions)
    assert last == [row[-1] for row in prm.score(Q, solutions)]
    usage = acct.finish()
    assert usage.reward_cache_misses == 2 and usage.reward_cache_hits >= 1
    assert usage.latency_s["reward"] > 0

"""The ``likelihood`` reward model: a calibrated mean token log-probability of the solution under
a model, each step scored after the steps before it, every prefix scored once."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from specs_core import Specs
from specs_core.likelihood import LikelihoodOptions, LikelihoodRewardModel
from specs_core.plugins import get_registry
from specs_core.testing.toy import ToyLanguageModel
from specs_core.text import DEFAULT_SYSTEM_PROMPT, as_generated, states_final_answer
from specs_core.types import Prompt, TokenLogprobs

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What is 2 + 3 + 4?"
STEPS = ["First add 2 and 3 to get 5", "Then add 4 to get 9", "The answer is $\\boxed{9}$."]
#: The steps as the model wrote them: each followed by the delimiter, the last (it states the
#: final answer) by the end token.
WRITTEN = [STEPS[0] + "\n\n", STEPS[1] + "\n\n", STEPS[2]]


class CountingScorer:
    """Wraps a real (toy) model and records every pair it is asked to score."""

    def __init__(self, model: ToyLanguageModel) -> None:
        self.model = model
        self.name = model.name
        self.pairs: list[tuple[Prompt, str]] = []

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        self.pairs += list(zip(prompts, continuations, strict=True))
        return self.model.logprobs(prompts, continuations)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_each_step_is_scored_after_the_steps_before_it_as_the_policies_render_them() -> None:
    scorer = CountingScorer(ToyLanguageModel("target"))
    prm = LikelihoodRewardModel(scorer)
    [rewards] = prm.score(QUESTION, [STEPS])
    assert len(rewards) == 3
    prompts = [p for p, _ in scorer.pairs]
    assert [c for _, c in scorer.pairs] == WRITTEN
    assert [p.partial for p in prompts] == [
        "",
        STEPS[0] + "\n\n",
        STEPS[0] + "\n\n" + STEPS[1] + "\n\n",
    ]
    assert all(p.question == QUESTION and p.system == DEFAULT_SYSTEM_PROMPT for p in prompts)
    # window "solution": the reward after step k is the calibrated mean over steps 1..k
    scored = ToyLanguageModel("target").logprobs(prompts, WRITTEN)
    o = LikelihoodOptions()
    for k in range(3):
        tokens = [x for s in scored[: k + 1] for x in s.logprobs]
        mean = sum(tokens) / len(tokens)
        assert rewards[k] == pytest.approx(_sigmoid(o.slope * mean + o.intercept))


def test_the_step_window_uses_the_newest_step_only() -> None:
    model = ToyLanguageModel("target")
    prm = LikelihoodRewardModel(model, LikelihoodOptions(window="step", slope=2.0, intercept=0.5))
    [rewards] = prm.score(QUESTION, [STEPS])
    partial = STEPS[0] + "\n\n"
    [second] = model.logprobs([Prompt(QUESTION, partial, DEFAULT_SYSTEM_PROMPT)], [WRITTEN[1]])
    assert rewards[1] == pytest.approx(_sigmoid(2.0 * second.mean + 0.5))


def test_a_prefix_is_scored_once_and_a_longer_solution_scores_only_its_new_step() -> None:
    scorer = CountingScorer(ToyLanguageModel("target"))
    prm = LikelihoodRewardModel(scorer)
    first = prm.score_last(QUESTION, [STEPS[:2], STEPS[:2]])
    assert len(scorer.pairs) == 2  # two steps, the duplicate solution shares them
    longer = prm.score_last(QUESTION, [STEPS])
    assert len(scorer.pairs) == 3 and scorer.pairs[-1][1] == WRITTEN[2]
    assert prm.score(QUESTION, [STEPS])[0][1] == pytest.approx(first[0])
    assert len(scorer.pairs) == 3
    assert longer[0] == pytest.approx(prm.score(QUESTION, [STEPS])[0][-1])
    usage = prm.take_token_usage()
    assert usage["prompt"] > 0 and prm.take_token_usage()["prompt"] == 0


def test_rewards_follow_the_log_probability_and_stay_in_the_unit_interval() -> None:
    prm = LikelihoodRewardModel(ToyLanguageModel("target"))
    assert prm.reward(0.0) > prm.reward(-0.2) > prm.reward(-1.0) > prm.reward(-50.0) >= 0.0
    assert prm.reward(-1e6) == 0.0 and prm.reward(1e6) == 1.0
    with pytest.raises(ValueError):
        LikelihoodOptions(slope=0)


def test_specs_searches_with_the_likelihood_reward_on_the_toy_models() -> None:
    config = {
        "draft": {"backend": "toy", "variant": "draft"},
        "target": {"backend": "toy", "variant": "target"},
        "reward": {"name": "likelihood"},
        "policy": {"name": "specs", "n": 3, "max_steps": 6, "seed": 0},
    }
    with Specs.from_config(config) as specs:
        result = specs.solve("What is 1 + 2 + 3?")
    assert result.steps and all(s.reward is not None and 0 <= s.reward <= 1 for s in result.steps)
    assert any(name.startswith("toy-target") for name in result.usage.tokens)
    assert result.usage.latency_s["reward"] >= 0


@pytest.mark.llamacpp
def test_on_a_real_model_a_sensible_step_is_likelier_than_scrambled_words() -> None:
    reason = get_registry().backend("llamacpp").unavailable_reason()
    if reason is not None:
        pytest.skip(f"the llamacpp backend is unavailable: {reason}")
    config = ROOT / "examples" / "configs" / "smollm2.yaml"
    with Specs.from_config(config) as specs:
        prm = specs.build_reward_model({"name": "likelihood", "model": "target"})
        question = "Tom has 3 apples and buys 4 more. How many apples does he have?"
        good = ["Tom starts with 3 apples and buys 4 more, so he has 3 + 4 = 7 apples."]
        bad = ["apples 4 Tom more so buys has he 3 = + 7 starts with apples and, 3."]
        [g], [b] = prm.score(question, [good]), prm.score(question, [bad])
        assert 0 < b[0] < g[0] < 1
        assert prm.name == "likelihood:smollm2-135m"


@pytest.mark.llamacpp
def test_on_a_real_model_step_by_step_scoring_matches_scoring_the_whole_solution() -> None:
    # Scoring each step without the delimiter it was written with made the tokenizer merge
    # differently at every step end (Qwen writes ".\n\n" as one token), which cost about -9 per
    # step and turned the reward against the solution's real likelihood. (A GPT-2 style
    # pre-tokenizer, as SmolLM2's, splits "\n\n" before a word but not at the end of a text, so
    # there no step-wise scoring can match a whole text exactly.)
    reason = get_registry().backend("llamacpp").unavailable_reason()
    if reason is not None:
        pytest.skip(f"the llamacpp backend is unavailable: {reason}")
    config = {"target": {"backend": "llamacpp", "model": "qwen2.5-coder-0.5b", "n_ctx": 1024}}
    question = "Tom has 3 apples and buys 4 more, then eats 2. How many apples are left?"
    steps = [
        "Tom starts with 3 apples and buys 4 more, so he has 3 + 4 = 7 apples.",
        "He eats 2 of them, so 7 - 2 = 5 apples are left.",
        "Therefore, the final answer is $\\boxed{5}$.",
    ]
    with Specs.from_config(config) as specs:
        target = specs.model("target")
        prm = LikelihoodRewardModel(target, LikelihoodOptions(slope=1.0, intercept=0.0))
        [rewards] = prm.score(question, [steps])
        [whole] = target.logprobs(
            [Prompt(question, "", DEFAULT_SYSTEM_PROMPT)], ["\n\n".join(steps)]
        )
    assert math.log(rewards[-1] / (1 - rewards[-1])) == pytest.approx(whole.mean, abs=0.02)


@pytest.mark.parametrize("policy", ["specs", "beam_search"])
def test_inside_a_search_the_reward_comes_free_from_the_targets_log_probabilities(
    policy: str,
) -> None:
    config = {
        "draft": {"backend": "toy", "variant": "draft"},
        "target": {"backend": "toy", "variant": "target"},
        "reward": {"name": "likelihood"},
        "policy": {"name": policy, "n": 4, "max_steps": 6, "seed": 1},
    }
    if policy == "specs":
        config["policy"] |= {"tau_sw": 0.0, "tau_acc": -100.0}  # draft every step it can
    with Specs.from_config(config) as specs:
        prm = specs.reward_model()
        assert isinstance(prm, LikelihoodRewardModel) and prm.reads_role == "target"
        result = specs.solve("What is 4 + 5 + 6?")
    # no model call was made for a reward: the reward model evaluated no token
    assert result.usage.tokens.get(prm.name) is None or result.usage.tokens[prm.name].prompt == 0
    first = result.steps[0]
    assert first.candidates
    for c in first.candidates:  # step 0: the solution so far is the step itself
        assert c.target_logprob is not None and c.reward is not None
        assert c.reward == pytest.approx(prm.reward(c.target_logprob))
    if policy == "specs":
        assert result.draft_steps > 0  # the draft path took the free rewards too


def test_a_likelihood_reward_on_another_model_is_scored_not_taken_from_the_search() -> None:
    config = {
        "draft": {"backend": "toy", "variant": "draft"},
        "target": {"backend": "toy", "variant": "target"},
        "reward": {"name": "likelihood", "model": {"backend": "toy", "variant": "judge"}},
        "policy": {"name": "beam_search", "n": 2, "max_steps": 3, "seed": 1},
    }
    with Specs.from_config(config) as specs:
        prm = specs.reward_model()
        assert prm.reads_role is None
        result = specs.solve("What is 4 + 5 + 6?")
    assert result.usage.tokens[prm.name].prompt > 0


def test_a_step_is_scored_as_written_with_its_delimiter_unless_it_states_the_final_answer() -> None:
    assert as_generated("So 3 + 4 = 7.") == "So 3 + 4 = 7.\n\n"
    assert as_generated("Therefore, the final answer is $\\boxed{7}$.") == (
        "Therefore, the final answer is $\\boxed{7}$."
    )
    assert as_generated("Total:\n#### 7") == "Total:\n#### 7"
    assert as_generated("So 7 apples; 7 - 2 = 5", delimiter="\n") == "So 7 apples; 7 - 2 = 5\n"
    assert states_final_answer("so \\boxed{5}") and not states_final_answer("the answer is near")

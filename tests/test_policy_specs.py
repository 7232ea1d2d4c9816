"""SPECS decisions on scripted test doubles: acceptance, switching, selection, the 4 defects."""

from __future__ import annotations

import math
import threading
from collections import Counter

import pytest
from specs_core.errors import CapabilityError, ConfigError
from specs_core.policies import SpecsOptions, SpecsPolicy
from specs_core.protocols import Capabilities, Roles
from specs_core.types import StepSource

from policy_doubles import LENGTH, ScriptedModel, ScriptedReward, cand


def run_specs(draft, target, reward, on_step=None, **options):
    policy = SpecsPolicy(SpecsOptions(**options), Roles(target=target, draft=draft, reward=reward))
    return policy.run("Q", on_step=on_step)


def test_rejected_finished_draft_never_enters_the_pool():
    """Defect (a): a finished draft with the best reward but failing acceptance cannot win."""
    target = ScriptedModel(
        "tgt",
        script={
            "": [cand("T1\n\n"), cand("T1b\n\n")],
            "T1\n\n": [cand("good \\boxed{5}"), cand("meh \\boxed{6}")],
        },
        scores={"bad \\boxed{9}": [-20.0], "bad2 \\boxed{8}": [-20.0]},
    )
    draft = ScriptedModel(
        "drf",
        script={
            "T1\n\n": [cand("bad \\boxed{9}", -0.1), cand("bad2 \\boxed{8}", -0.1)],
        },
    )
    reward = ScriptedReward(
        {
            "T1": 0.9,
            "T1b": 0.8,
            "good \\boxed{5}": 0.6,
            "meh \\boxed{6}": 0.3,
            "bad \\boxed{9}": 1.0,
            "bad2 \\boxed{8}": 1.0,
        }
    )
    result = run_specs(draft, target, reward, n=2)
    assert result.answer == "5"
    assert result.extra["completed"] == 2  # the two target candidates, never the drafts
    assert [s.decision for s in result.steps] == ["target", "draft_rejected"]
    assert result.rejected_draft_steps == 1 and result.accepted_draft_steps == 0
    assert result.final_score == pytest.approx(0.6)


def _mixed_scale_case():
    target = ScriptedModel(
        "tgt",
        script={"": [cand("A \\boxed{1}"), cand("B\n\n")]},
        scores={"C \\boxed{2}": [-0.5], "D\n\n": [-10.0]},
    )
    draft = ScriptedModel(
        "drf", script={"B\n\n": [cand("C \\boxed{2}", -3.0), cand("D\n\n", -1.0)]}
    )
    reward = ScriptedReward({"A \\boxed{1}": 0.6, "B": 0.9, "C \\boxed{2}": 0.5, "D": 0.5})
    return draft, target, reward


@pytest.mark.parametrize(
    ("aggregation", "answer", "score"),
    [
        ("last", "1", 0.6),
        ("min", "1", 0.6),
        ("mean", "2", 0.7),
        ("prod", "1", 0.6),
    ],
)
def test_final_selection_uses_one_consistent_score(aggregation, answer, score):
    """Defect (b): the accepted draft C has s = 7.5 but reward 0.5; A has reward 0.6.

    Comparing C's soft score with A's reward would pick C; the aggregated reward of each whole
    solution decides instead (and the aggregation option changes the choice).
    """
    draft, target, reward = _mixed_scale_case()
    result = run_specs(draft, target, reward, n=2, aggregation=aggregation)
    accepted = result.steps[1]
    assert accepted.decision == "draft_accepted"
    assert accepted.candidates[0].score == pytest.approx(7.5)
    assert result.answer == answer
    assert result.final_score == pytest.approx(score)


@pytest.mark.parametrize(("log_ratio", "l_d", "l_t"), [("mean", -0.5, -0.3), ("sum", -5.5, -0.6)])
def test_target_scores_the_draft_text_with_its_own_tokens(log_ratio, l_d, l_t):
    """Defect (c): the draft has 11 tokens, the target tokenizes the same text into 2."""
    text = "two words\n\n"
    target = ScriptedModel("tgt", script={"": [cand("T\n\n")]}, scores={text: [-0.2, -0.4]})
    draft = ScriptedModel("drf", script={"T\n\n": [cand(text, *([-0.5] * 11))]})
    reward = ScriptedReward({"T": 0.9, "two words": 0.8})
    result = run_specs(draft, target, reward, n=1, max_steps=2, log_ratio=log_ratio)
    prompts, continuations = target.score_calls[0]
    assert continuations == [text]
    assert prompts[0].partial == "T\n\n" and prompts[0].question == "Q"
    record = result.steps[1].candidates[0]
    assert record.draft_logprob == pytest.approx(l_d)
    assert record.target_logprob == pytest.approx(l_t)
    assert record.score == pytest.approx(l_t - l_d + 10 * 0.8)
    assert result.steps[1].source is StepSource.DRAFT


def test_rejected_drafts_stay_in_the_trace_and_their_rewards_are_reused():
    """Defect (d): the target's candidate equal to a rejected draft costs no reward call."""
    target = ScriptedModel(
        "tgt",
        script={
            "": [cand("T1\n\n"), cand("T1b\n\n")],
            "T1\n\n": [cand("X\n\n"), cand("Z \\boxed{4}")],
        },
        scores={"X\n\n": [-20.0], "Y\n\n": [-20.0]},
    )
    draft = ScriptedModel("drf", script={"T1\n\n": [cand("X\n\n", -0.1), cand("Y\n\n", -0.1)]})
    reward = ScriptedReward({"T1": 0.9, "T1b": 0.1, "X": 0.65, "Y": 0.5, "Z \\boxed{4}": 0.7})
    result = run_specs(draft, target, reward, n=2)
    assert reward.scored.count(("T1", "X")) == 1
    assert reward.calls == 3
    assert result.usage.reward_cache_hits == 1
    step = result.steps[1]
    assert step.decision == "draft_rejected" and step.drafted and step.accepted is False
    drafts = [c for c in step.candidates if c.source is StepSource.DRAFT]
    targets = [c for c in step.candidates if c.source is StepSource.TARGET]
    assert [c.text for c in drafts] == ["X\n\n", "Y\n\n"]
    for c in drafts:
        assert not c.accepted
        assert None not in (c.draft_logprob, c.target_logprob, c.reward, c.score)
    assert [c.reward for c in targets] == [pytest.approx(0.65), pytest.approx(0.7)]
    assert [c.accepted for c in targets] == [False, True]
    assert result.answer == "4"


def _switch_case():
    target = ScriptedModel(
        "tgt",
        script={
            "": [cand("L1\n\n"), cand("L1b\n\n")],
            "L1\n\n": [cand("H\n\n"), cand("H2\n\n")],
            "L1\n\nH\n\n": [cand("G \\boxed{7}"), cand("G2 \\boxed{8}")],
        },
        scores={"F \\boxed{3}": [-0.5], "F2 \\boxed{2}": [-9.0]},
    )
    draft = ScriptedModel(
        "drf",
        script={
            "L1\n\nH\n\n": [cand("F \\boxed{3}", -0.5), cand("F2 \\boxed{2}", -0.5)],
        },
    )
    reward = ScriptedReward(
        {"L1": 0.5, "L1b": 0.4, "H": 0.8, "H2": 0.2, "F \\boxed{3}": 0.9}, default=0.3
    )
    return draft, target, reward


def test_a_target_reward_above_tau_sw_switches_to_drafting():
    draft, target, reward = _switch_case()
    result = run_specs(draft, target, reward, n=2, tau_sw=0.7)
    assert [s.decision for s in result.steps] == ["target", "target", "draft_accepted"]
    assert [s.switched_to_draft for s in result.steps] == [False, True, False]
    assert result.switches == 1
    assert [call[0][0].partial for call in draft.generate_calls] == ["L1\n\nH\n\n"]
    assert result.answer == "3"
    assert result.steps[2].candidates[0].score == pytest.approx(9.0)
    assert [c.accepted for c in result.steps[2].candidates] == [True, False]


def test_no_target_reward_above_tau_sw_keeps_the_target_writing():
    draft, target, reward = _switch_case()
    result = run_specs(draft, target, reward, n=2, tau_sw=0.85)
    assert [s.decision for s in result.steps] == ["target", "target", "target"]
    assert draft.generate_calls == [] and result.switches == 0
    assert result.answer == "7"


def _softmax_case():
    texts = ["a \\boxed{1}", "b \\boxed{2}", "c \\boxed{3}"]
    deltas = (0.0, 0.15, 0.3)  # l_t - l_d of each draft
    target = ScriptedModel(
        "tgt",
        script={"": [cand("S\n\n"), cand("S2\n\n"), cand("S3\n\n")]},
        scores={t: [-1.0 + d] for t, d in zip(texts, deltas, strict=True)},
    )
    draft = ScriptedModel("drf", script={"S\n\n": [cand(t, -1.0) for t in texts]})
    reward = ScriptedReward({"S": 0.9, "S2": 0.1, "S3": 0.1, **{t: 0.75 for t in texts}})
    return texts, draft, target, reward


@pytest.mark.parametrize("tau_acc", [7.0, 7.6])
def test_the_accepted_draft_is_sampled_with_softmax_of_the_scores(tau_acc):
    """s = 7.5, 7.65, 7.8 at T = 0.3; survivors are picked with probability softmax(s / T)."""
    texts, draft, target, reward = _softmax_case()
    runs = 2000
    picks = Counter(
        run_specs(draft, target, reward, n=3, seed=seed, tau_acc=tau_acc).steps[1].text
        for seed in range(runs)
    )
    scores = [7.5, 7.65, 7.8]
    weights = [math.exp(s / 0.3) if s > tau_acc else 0.0 for s in scores]
    for text, w in zip(texts, weights, strict=True):
        p = w / sum(weights)
        tolerance = 4.5 * math.sqrt(p * (1 - p) / runs) + 1e-9
        assert abs(picks[text] / runs - p) <= tolerance, (text, picks, p)


def test_zero_temperature_accepts_the_best_scored_draft():
    texts, draft, target, reward = _softmax_case()
    picks = {
        run_specs(draft, target, reward, n=3, seed=s, temperature=0).steps[1].text
        for s in range(20)
    }
    assert picks == {texts[2]}


def test_target_scoring_and_reward_scoring_run_concurrently():
    barrier = threading.Barrier(2, timeout=10)

    def meet() -> None:
        if threading.current_thread() is not threading.main_thread():
            barrier.wait()  # breaks (BrokenBarrierError) unless both run at once

    draft, target, reward = _switch_case()
    target.on_score = meet
    reward.on_score = meet
    result = run_specs(draft, target, reward, n=2)
    assert result.steps[2].decision == "draft_accepted"


def test_a_failure_in_a_verification_worker_propagates():
    draft, target, reward = _switch_case()

    def fail() -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("reward model crashed")

    reward.on_score = fail
    with pytest.raises(RuntimeError, match="reward model crashed"):
        run_specs(draft, target, reward, n=2)


def test_a_target_that_is_not_thread_safe_is_scored_on_the_calling_thread():
    threads = []
    draft, target, reward = _switch_case()
    target.capabilities = Capabilities(concurrent=False)
    target.on_score = lambda: threads.append(threading.current_thread())
    run_specs(draft, target, reward, n=2)
    assert threads == [threading.main_thread()]


def test_each_step_is_streamed_before_the_next_model_call():
    events: list[tuple[str, ...]] = []
    draft, target, reward = _switch_case()
    draft.events = target.events = events
    run_specs(draft, target, reward, n=2, on_step=lambda s: events.append(("step", str(s.index))))
    steps = [events.index(("step", str(i))) for i in range(3)]
    generations = [i for i, e in enumerate(events) if e[0] == "generate"]
    assert steps == sorted(steps)
    assert generations[1] > steps[0] and generations[2] > steps[1]


def test_a_draft_without_generation_logprobs_is_scored_by_itself():
    draft, target, reward = _switch_case()
    draft.capabilities = Capabilities(generation_logprobs=False)
    draft.scores = {"F \\boxed{3}": [-0.5, -0.5], "F2 \\boxed{2}": [-0.5]}
    result = run_specs(draft, target, reward, n=2)
    assert len(draft.score_calls) == 1
    assert result.steps[2].candidates[0].draft_logprob == pytest.approx(-0.5)
    assert result.usage.latency_s["draft_score"] > 0


def test_capabilities_are_checked_before_any_model_call():
    draft, target, reward = _switch_case()
    draft.capabilities = Capabilities(generation_logprobs=False, scoring=False)
    with pytest.raises(CapabilityError, match="generation_logprobs"):
        run_specs(draft, target, reward, n=2)
    draft, target, reward = _switch_case()
    target.capabilities = Capabilities(scoring=False)
    with pytest.raises(CapabilityError, match="scoring"):
        run_specs(draft, target, reward, n=2)
    assert target.generate_calls == [] and draft.generate_calls == []


def test_missing_roles_are_configuration_errors():
    draft, target, reward = _switch_case()
    with pytest.raises(ConfigError, match="draft"):
        SpecsPolicy(SpecsOptions(), Roles(target=target, reward=reward)).run("Q")
    with pytest.raises(ConfigError, match="reward"):
        SpecsPolicy(SpecsOptions(), Roles(target=target, draft=draft)).run("Q")


def test_the_last_step_runs_without_the_delimiter_and_an_unfinished_search_returns_its_path():
    target = ScriptedModel(
        "tgt",
        script={
            "": [cand("P\n\n")],
            "P\n\n": [cand("cut off", finish=LENGTH)],
        },
    )
    draft = ScriptedModel("drf")
    reward = ScriptedReward({"P": 0.5, "cut off": 0.4})
    result = run_specs(draft, target, reward, n=1, max_steps=2)
    stops = [params.stop for _, params in target.generate_calls]
    assert stops == [("\n\n",), ()]
    assert not result.finished
    assert result.text == "P\n\ncut off"
    assert result.solution_steps == ("P\n\n", "cut off")
    assert result.final_score == pytest.approx(0.4)

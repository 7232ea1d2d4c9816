"""SPECS decisions on scripted test doubles: acceptance, switching, selection, the 4 defects."""

from __future__ import annotations

import math
import random
import threading
from collections import Counter

import pytest
from specs_core.accounting import Accountant
from specs_core.errors import CapabilityError, ConfigError, InvalidInputError
from specs_core.policies import SpecsOptions, SpecsPolicy
from specs_core.protocols import Capabilities, Roles
from specs_core.search import CompletedPool, SolutionPath
from specs_core.text import repeated_share
from specs_core.types import Decision, SearchResult, StepRecord, StepSource, StopReason

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
    result = run_specs(draft, target, reward, n=2, aggregation=aggregation, on_finished="stop")
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
    result = run_specs(draft, target, reward, n=2, on_finished="stop")
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
    """Both calls of the draft step's verification wait for each other at a barrier: run one
    after the other (on any thread), the first waits alone and the barrier breaks."""
    barrier = threading.Barrier(2, timeout=5)
    draft, target, reward = _switch_case()
    target.on_score = barrier.wait  # the target scores only the drafts
    reward.on_score = lambda: barrier.wait() if draft.generate_calls else None
    result = run_specs(draft, target, reward, n=2)
    assert result.steps[2].decision == "draft_accepted"
    assert not barrier.broken


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


# -- boundaries of the two thresholds ----------------------------------------------------------


def _boundary_case():
    """One draft with l_t - l_d = 0 and reward 0.5: s = 10 * 0.5 = 5.0 exactly."""
    target = ScriptedModel(
        "tgt",
        script={"": [cand("A\n\n")], "A\n\n": [cand("T \\boxed{1}")]},
        scores={"D \\boxed{2}": [-1.0]},
    )
    draft = ScriptedModel("drf", script={"A\n\n": [cand("D \\boxed{2}", -1.0)]})
    reward = ScriptedReward({"A": 0.9, "D \\boxed{2}": 0.5, "T \\boxed{1}": 0.5})
    return draft, target, reward


@pytest.mark.parametrize(
    ("tau_acc", "decision", "answer"),
    [(5.0, "draft_rejected", "1"), (4.999, "draft_accepted", "2")],
)
def test_a_soft_score_equal_to_tau_acc_is_rejected(tau_acc, decision, answer):
    draft, target, reward = _boundary_case()
    result = run_specs(draft, target, reward, n=1, tau_acc=tau_acc)
    assert result.steps[1].candidates[0].score == 5.0
    assert result.steps[1].decision == decision
    assert result.answer == answer


@pytest.mark.parametrize(("tau_sw", "switched"), [(0.8, False), (0.79, True)])
def test_a_reward_equal_to_tau_sw_does_not_switch(tau_sw, switched):
    draft, target, reward = _switch_case()  # the target's best step 1 has reward 0.8
    result = run_specs(draft, target, reward, n=2, tau_sw=tau_sw)
    assert result.steps[1].reward == 0.8
    assert result.steps[1].switched_to_draft is switched
    assert bool(draft.generate_calls) is switched


# -- the mode after a rejected draft step -----------------------------------------------------


def _rejection_case(second_reward: float):
    """Step 0 switches; step 1's drafts are rejected and the target writes B (reward given)."""
    target = ScriptedModel(
        "tgt",
        script={
            "": [cand("A\n\n"), cand("A2\n\n")],
            "A\n\n": [cand("B\n\n"), cand("B2\n\n")],
            "A\n\nB\n\n": [cand("C \\boxed{1}"), cand("C2 \\boxed{2}")],
        },
        scores={
            "D1\n\n": [-20.0],
            "D2\n\n": [-20.0],
            "E \\boxed{3}": [-0.1],
            "E2 \\boxed{4}": [-0.1],
        },
    )
    draft = ScriptedModel(
        "drf",
        script={
            "A\n\n": [cand("D1\n\n", -0.1), cand("D2\n\n", -0.1)],
            "A\n\nB\n\n": [cand("E \\boxed{3}", -0.1), cand("E2 \\boxed{4}", -0.1)],
        },
    )
    reward = ScriptedReward(
        {
            "A": 0.9,
            "A2": 0.1,
            "B": second_reward,
            "B2": 0.1,
            "D1": 0.5,
            "D2": 0.5,
            "C \\boxed{1}": 0.6,
            "C2 \\boxed{2}": 0.5,
            "E \\boxed{3}": 0.9,
            "E2 \\boxed{4}": 0.8,
        }
    )
    return draft, target, reward


def test_after_a_rejected_draft_step_the_target_rewards_decide_the_next_mode():
    draft, target, reward = _rejection_case(second_reward=0.5)  # no reward above tau_sw
    result = run_specs(draft, target, reward, n=2)
    assert [s.decision for s in result.steps] == ["target", "draft_rejected", "target"]
    assert [call[0][0].partial for call in draft.generate_calls] == ["A\n\n"]
    assert result.answer == "1"

    draft, target, reward = _rejection_case(second_reward=0.8)  # above tau_sw: draft again
    result = run_specs(draft, target, reward, n=2, temperature=0)
    assert [s.decision for s in result.steps] == ["target", "draft_rejected", "draft_accepted"]
    assert [s.switched_to_draft for s in result.steps] == [True, True, False]
    assert result.switches == 2 and result.answer == "3"


# -- counters ---------------------------------------------------------------------------------


def test_step_counts_are_derived_from_the_decisions_hybrid_rejections_included():
    def step(i: int, decision: Decision, switched: bool = False) -> StepRecord:
        source = StepSource.DRAFT if decision is Decision.DRAFT_ACCEPTED else StepSource.TARGET
        return StepRecord(i, source, "s\n\n", 0.5, True, None, decision, switched)

    steps = (
        step(0, Decision.TARGET, switched=True),
        step(1, Decision.DRAFT_REJECTED),
        step(2, Decision.DRAFT_REJECTED_HYBRID, switched=True),
        step(3, Decision.DRAFT_ACCEPTED),
    )
    usage = Accountant().finish()
    result = SearchResult(
        "Q", "specs", "", None, steps, (), None, False, StopReason.MAX_STEPS, usage
    )
    assert (result.accepted_draft_steps, result.rejected_draft_steps) == (1, 2)
    assert (result.draft_steps, result.target_steps, result.switches) == (1, 3, 2)
    with pytest.raises(InvalidInputError, match="decision 'drafty' is unknown"):
        StepRecord(0, StepSource.TARGET, "s", None, False, None, "drafty")  # type: ignore[arg-type]


def test_the_targets_scoring_tokens_are_counted():
    draft, target, reward = _switch_case()
    result = run_specs(draft, target, reward, n=2)
    assert result.steps[2].decision == "draft_accepted"
    tokens = result.usage.tokens["tgt"]
    # two generations (prompts of 10 and 10 + 4 tokens, shared by their 2 samples), then one
    # scoring call: 2 drafts of 1 token after a prompt of 10 + 7 tokens
    assert tokens.prompt == 10 + 14 + 2 * (17 + 1)
    assert tokens.calls == 3


def test_the_completed_pool_holds_each_solution_once():
    target = ScriptedModel("tgt", script={"": [cand("X \\boxed{1}"), cand("X \\boxed{1}")]})
    reward = ScriptedReward({"X \\boxed{1}": 0.5})
    result = run_specs(ScriptedModel("drf"), target, reward, n=2)
    assert result.extra["completed"] == 1
    pool = CompletedPool("last")
    path = SolutionPath(("X",), (0.5,), True)
    assert pool.add(path) and not pool.add(SolutionPath(("X",), (0.9,), True))
    assert len(pool) == 1


# -- finished candidates: set aside (continue) or committed (stop) ------------------------------


def _finishing_case():
    target = ScriptedModel(
        "tgt",
        script={
            "": [cand("done \\boxed{1}"), cand("go\n\n")],
            "go\n\n": [cand("end \\boxed{2}"), cand("end2 \\boxed{3}")],
        },
    )
    reward = ScriptedReward(
        {"done \\boxed{1}": 0.9, "go": 0.6, "end \\boxed{2}": 0.5, "end2 \\boxed{3}": 0.4}
    )
    return ScriptedModel("drf"), target, reward


def test_a_finished_target_candidate_is_set_aside_and_the_search_goes_on():
    draft, target, reward = _finishing_case()
    result = run_specs(draft, target, reward, n=2)
    # "done" has the best reward but is finished: pooled, and the search continues from "go";
    # its reward does not switch to drafting (only unfinished candidates count, as the authors)
    assert [s.text for s in result.steps] == ["go\n\n", "end \\boxed{2}"]
    assert not result.steps[0].switched_to_draft
    assert result.extra["completed"] == 3
    assert result.answer == "1" and result.final_score == pytest.approx(0.9)
    assert result.stop_reason is StopReason.FINISHED


def test_with_on_finished_stop_a_committed_finished_candidate_ends_the_search():
    draft, target, reward = _finishing_case()
    result = run_specs(draft, target, reward, n=2, on_finished="stop")
    assert [s.text for s in result.steps] == ["done \\boxed{1}"]
    assert result.extra["completed"] == 1 and result.answer == "1"


def _drafting_case(weak_second: bool = False):
    """The target's first step switches; two drafts follow, one finished and one not."""
    second = "weak\n\n" if weak_second else "more\n\n"
    target = ScriptedModel(
        "tgt",
        script={
            "": [cand("S\n\n"), cand("S2\n\n")],
            "S\n\n": [cand("t \\boxed{8}"), cand("t2 \\boxed{9}")],
        },
        scores={
            "fin \\boxed{5}": [-1.0],
            "more\n\n": [-1.0],
            "weak\n\n": [-20.0],
            "last \\boxed{6}": [-1.0],
            "last2 \\boxed{7}": [-1.0],
        },
    )
    draft = ScriptedModel(
        "drf",
        script={
            "S\n\n": [cand("fin \\boxed{5}", -1.0), cand(second, -1.0)],
            "S\n\nmore\n\n": [cand("last \\boxed{6}", -1.0), cand("last2 \\boxed{7}", -1.0)],
        },
    )
    reward = ScriptedReward(
        {
            "S": 0.9,
            "S2": 0.1,
            "fin \\boxed{5}": 0.9,  # s = 9
            "more": 0.8,  # s = 8
            "weak": 0.8,  # s = -19 + 8
            "last \\boxed{6}": 0.75,
            "last2 \\boxed{7}": 0.72,
            "t \\boxed{8}": 0.5,
            "t2 \\boxed{9}": 0.3,
        }
    )
    return draft, target, reward


@pytest.mark.parametrize("seed", range(5))
def test_a_finished_surviving_draft_is_pooled_and_drafting_goes_on_from_an_unfinished_one(seed):
    draft, target, reward = _drafting_case()
    result = run_specs(draft, target, reward, n=2, seed=seed)
    assert result.steps[1].text == "more\n\n"  # the only unfinished survivor, whatever the seed
    assert result.steps[2].text in ("last \\boxed{6}", "last2 \\boxed{7}")
    assert [s.decision for s in result.steps] == ["target", *["draft_accepted"] * 2]
    assert result.extra["completed"] == 3 and result.answer == "5"


def test_with_on_finished_stop_the_finished_draft_competes_and_ends_the_search():
    draft, target, reward = _drafting_case()
    result = run_specs(draft, target, reward, n=2, on_finished="stop", temperature=0)
    assert [s.text for s in result.steps] == ["S\n\n", "fin \\boxed{5}"]
    assert result.extra["completed"] == 1


def test_when_only_a_finished_draft_survives_the_target_writes_the_step():
    draft, target, reward = _drafting_case(weak_second=True)
    result = run_specs(draft, target, reward, n=2)
    assert [s.decision for s in result.steps] == ["target", "draft_rejected"]
    assert result.steps[1].text == "t \\boxed{8}"
    assert result.extra["completed"] == 3  # the surviving finished draft and the target's two
    assert result.answer == "5"


def test_a_step_cut_by_its_token_budget_is_continued_not_finished():
    target = ScriptedModel(
        "tgt",
        script={
            "": [cand("long words", finish=LENGTH)],
            "long words": [cand(" end \\boxed{3}")],
        },
    )
    reward = ScriptedReward({"long words": 0.8, "end \\boxed{3}": 0.6})
    result = run_specs(ScriptedModel("drf"), target, reward, n=1, max_steps=3, tau_sw=1.0)
    assert [s.text for s in result.steps] == ["long words", " end \\boxed{3}"]
    assert result.extra["completed"] == 1  # the cut step never entered the pool
    assert result.text == "long words end \\boxed{3}" and result.finished


# -- duplicate drafts ---------------------------------------------------------------------------


def _duplicates_case():
    texts = ["a \\boxed{1}", "a \\boxed{1}", "b \\boxed{2}"]
    target = ScriptedModel(
        "tgt",
        script={"": [cand("S\n\n"), cand("S2\n\n"), cand("S3\n\n")]},
        scores={"a \\boxed{1}": [-1.0], "b \\boxed{2}": [-1.0]},
    )
    draft = ScriptedModel("drf", script={"S\n\n": [cand(t, -1.0) for t in texts]})
    reward = ScriptedReward({"S": 0.9, "a \\boxed{1}": 0.8, "b \\boxed{2}": 0.8})
    return draft, target, reward


@pytest.mark.parametrize(("dedupe", "p_a"), [(True, 1 / 2), (False, 2 / 3)])
def test_duplicate_drafts_are_dropped_before_the_softmax(dedupe, p_a):
    runs = 1000
    picks = Counter()
    for seed in range(runs):
        draft, target, reward = _duplicates_case()
        result = run_specs(draft, target, reward, n=3, seed=seed, dedupe=dedupe)
        picks[result.steps[1].text] += 1
    tolerance = 4.5 * math.sqrt(p_a * (1 - p_a) / runs)
    assert abs(picks["a \\boxed{1}"] / runs - p_a) <= tolerance, picks
    draft, target, reward = _duplicates_case()
    result = run_specs(draft, target, reward, n=3, dedupe=dedupe)
    assert [c.duplicate for c in result.steps[1].candidates] == [False, dedupe, False]
    scored = [text for _, texts in target.score_calls for text in texts]
    assert len(scored) == (2 if dedupe else 3)  # each distinct text scored once


# -- the theory, under its conditions -------------------------------------------------------------


class SamplingDraft(ScriptedModel):
    """Test double of a draft that samples each candidate step i.i.d. from a fixed distribution
    (seeded by the call's seed), so that SPECS's selection can be compared with the theory."""

    def __init__(self, distribution: dict[str, float]) -> None:
        super().__init__("drf")
        self.distribution = distribution

    def generate(self, prompts, params):
        rng = random.Random(params.seed)
        texts = rng.choices(
            list(self.distribution), weights=list(self.distribution.values()), k=params.n
        )
        self.script = {
            p.partial: [cand(t, math.log(self.distribution[t])) for t in texts] for p in prompts
        }
        return super().generate(prompts, params)


@pytest.mark.parametrize(
    ("dedupe", "temperature", "holds"),
    [(False, 1.0, True), (True, 1.0, False), (False, 0.3, False)],
)
def test_under_its_conditions_the_selected_draft_follows_the_kl_regularised_optimum(
    dedupe, temperature, holds
):
    """docs/policies.md: with summed log-ratios, T = 1, tau_acc = -inf and no de-duplication, the
    selected step converges (n large) to pi_t * exp(beta * r) / Z; de-duplicating, or a
    temperature other than 1, breaks it."""
    pi_d = {"a \\boxed{1}": 0.6, "b \\boxed{2}": 0.3, "c \\boxed{3}": 0.1}
    pi_t = {"a \\boxed{1}": 0.2, "b \\boxed{2}": 0.3, "c \\boxed{3}": 0.5}
    rewards = {"a \\boxed{1}": 0.5, "b \\boxed{2}": 0.2, "c \\boxed{3}": 0.1}
    n, runs = 64, 2000
    target = ScriptedModel(
        "tgt",
        script={"": [cand("S\n\n")] * n},
        scores={t: [math.log(p)] for t, p in pi_t.items()},
    )
    reward = ScriptedReward({"S": 0.9, **rewards})
    picks: Counter[str] = Counter()
    for seed in range(runs):
        result = run_specs(
            SamplingDraft(pi_d), target, reward, n=n, seed=seed, beta=1.0, temperature=temperature,
            tau_acc=-math.inf, log_ratio="sum", dedupe=dedupe,
        )  # fmt: skip
        picks[result.steps[1].text] += 1
    optimum = {t: pi_t[t] * math.exp(rewards[t]) for t in pi_t}
    z = sum(optimum.values())
    worst = max(abs(picks[t] / runs - optimum[t] / z) for t in pi_t)
    if holds:
        assert worst < 0.05, (picks, {t: v / z for t, v in optimum.items()})
    else:
        assert worst > 0.2, picks


# -- drafts that repeat the solution -----------------------------------------------------------


def _looping_case():
    first = "the sum of a and b is 7 so c is 7 too\n\n"
    loop = "the sum of a and b is 7 so c is 7 too the sum of a and b is 7\n\n"
    fresh = "then d is twice c which makes 14 in all\n\n"
    target = ScriptedModel(
        "tgt",
        script={"": [cand(first), cand(first)]},
        scores={loop: [-0.1], fresh: [-0.5]},
    )
    draft = ScriptedModel("drf", script={first: [cand(loop, -0.1), cand(fresh, -0.5)]})
    reward = ScriptedReward({first.strip(): 0.9, loop.strip(): 0.9, fresh.strip(): 0.7})
    return draft, target, reward, loop, fresh


@pytest.mark.parametrize(("limit", "committed"), [(1.0, "loop"), (0.8, "fresh")])
def test_a_draft_that_repeats_the_solution_is_rejected_under_max_repetition(limit, committed):
    draft, target, reward, loop, fresh = _looping_case()
    result = run_specs(
        draft, target, reward, n=2, temperature=0, tau_acc=0.0, max_steps=2,
        max_repetition=limit,
    )  # fmt: skip
    assert result.steps[1].text == {"loop": loop, "fresh": fresh}[committed]
    accepted = [c.accepted for c in result.steps[1].candidates]
    assert accepted == ([True, True] if limit == 1.0 else [False, True])


def test_repeated_share_counts_ngrams_already_written():
    assert repeated_share("a b c d", "") == 0.0
    assert repeated_share("a b c d", "x a b c d y") == 1.0
    assert repeated_share("a b c d a b c d", "") == 1 / 5  # the second "a b c d" repeats
    assert repeated_share("a b c d " * 5, "") == 13 / 17  # a loop inside the step
    assert repeated_share("a b c", "a b c") == 0.0  # too short to judge

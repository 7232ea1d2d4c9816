"""Beam search, best-of-N, RSD, majority vote and greedy decisions on scripted test doubles."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from specs_core.policies import (
    BeamSearchOptions,
    BeamSearchPolicy,
    BestOfNOptions,
    BestOfNPolicy,
    GreedyOptions,
    GreedyPolicy,
    MajorityOptions,
    MajorityPolicy,
    RsdOptions,
    RsdPolicy,
    majority_vote,
    weighted_majority,
)
from specs_core.protocols import Roles
from specs_core.types import StepSource

from policy_doubles import ScriptedModel, ScriptedReward, cand

# -- beam search -----------------------------------------------------------------------------


def _beam_case():
    target = ScriptedModel(
        "tgt",
        script={
            "": [cand("a\n\n"), cand("b\n\n"), cand("c\n\n"), cand("d\n\n")],
            "b\n\n": [cand("b1 \\boxed{1}"), cand("b2\n\n")],
            "d\n\n": [cand("d1 \\boxed{2}"), cand("d2\n\n")],
            "b\n\nb2\n\n": [cand("e \\boxed{3}"), cand("f \\boxed{4}")],
            "d\n\nd2\n\n": [cand("g \\boxed{5}"), cand("h \\boxed{6}")],
        },
    )
    reward = ScriptedReward(
        {
            "a": 0.1,
            "b": 0.9,
            "c": 0.5,
            "d": 0.8,
            "b1 \\boxed{1}": 0.7,
            "b2": 0.95,
            "d1 \\boxed{2}": 0.85,
            "d2": 0.2,
            "e \\boxed{3}": 0.6,
            "f \\boxed{4}": 0.75,
            "g \\boxed{5}": 0.3,
            "h \\boxed{6}": 0.4,
        }
    )
    return target, reward


@pytest.mark.parametrize(("aggregation", "answer"), [("last", "2"), ("mean", "4")])
def test_beam_search_set_to_stop_keeps_m_beams_and_completes_m_solutions(aggregation, answer):
    target, reward = _beam_case()
    options = BeamSearchOptions(n=4, beam_width=2, aggregation=aggregation, on_finished="stop")
    result = BeamSearchPolicy(options, Roles(target=target, reward=reward)).run("Q")
    kept = [(s.index, s.beam, s.text) for s in result.steps]
    assert kept == [
        (0, 0, "b\n\n"),
        (0, 1, "d\n\n"),
        (1, 0, "b2\n\n"),
        (1, 1, "d1 \\boxed{2}"),
        (2, 0, "f \\boxed{4}"),
    ]
    calls = [([p.partial for p in prompts], params.n) for prompts, params in target.generate_calls]
    assert calls == [([""], 4), (["b\n\n", "d\n\n"], 2), (["b\n\nb2\n\n"], 2)]
    assert result.extra["completed"] == 4  # b1, d1, e, f: finished candidates all enter the pool
    assert result.answer == answer
    assert result.finished
    first = result.steps[0]
    assert [c.accepted for c in first.candidates] == [False, True, False, True]


@pytest.mark.parametrize(("aggregation", "answer"), [("last", "2"), ("mean", "4")])
def test_beam_search_sets_finished_candidates_aside_and_goes_on_from_unfinished_ones(
    aggregation, answer
):
    target, reward = _beam_case()
    options = BeamSearchOptions(n=4, beam_width=2, aggregation=aggregation)
    assert options.on_finished == "continue"  # the default, as the SPECS authors run it
    result = BeamSearchPolicy(options, Roles(target=target, reward=reward)).run("Q")
    kept = [(s.index, s.beam, s.text) for s in result.steps]
    # step 1: the finished d1 (0.85) and b1 (0.7) go to the pool; b2 and d2 (0.2) go on
    assert kept == [
        (0, 0, "b\n\n"),
        (0, 1, "d\n\n"),
        (1, 0, "b2\n\n"),
        (1, 1, "d2\n\n"),
        (2, 0, "f \\boxed{4}"),
        (2, 1, "e \\boxed{3}"),
    ]
    calls = [([p.partial for p in prompts], params.n) for prompts, params in target.generate_calls]
    assert calls[-1] == (["b\n\nb2\n\n", "d\n\nd2\n\n"], 2)
    assert result.extra["completed"] == 6  # b1, d1, e, f, g, h
    assert result.answer == answer and result.finished


def test_beam_search_with_one_beam_follows_the_best_reward():
    target, reward = _beam_case()
    result = BeamSearchPolicy(BeamSearchOptions(n=2), Roles(target=target, reward=reward)).run("Q")
    # n=2: only "a" (0.1) and "b" (0.9) are sampled; then b2 (0.95) beats b1; then f beats e.
    assert [s.text for s in result.steps] == ["b\n\n", "b2\n\n", "f \\boxed{4}"]
    assert result.answer == "4" and result.final_score == pytest.approx(0.75)
    assert result.target_steps == 3 and result.draft_steps == 0


def test_beam_search_over_the_draft_uses_the_draft():
    draft, reward = _beam_case()
    options = BeamSearchOptions(n=2, model="draft")
    result = BeamSearchPolicy(options, Roles(draft=draft, reward=reward)).run("Q")
    assert result.draft_steps == 3 and result.target_steps == 0
    assert result.usage.tokens["tgt"].generated > 0  # the double's name, used as the draft


def test_beam_width_larger_than_n_is_rejected_with_both_keys_named():
    with pytest.raises(ValidationError, match=r"beam_width \(3\) must not exceed n \(2\)"):
        BeamSearchOptions(n=2, beam_width=3)


# -- best-of-N -------------------------------------------------------------------------------

_SOLUTIONS = ["a\n\nx \\boxed{3}", "p \\boxed{7}", "q\n\nr \\boxed{7}", "s \\boxed{7}"]


def _best_of_n_case():
    target = ScriptedModel("tgt", script={"": [cand(t) for t in _SOLUTIONS]})
    reward = ScriptedReward(
        {
            "a": 0.2,
            "x \\boxed{3}": 0.9,
            "p \\boxed{7}": 0.5,
            "q": 0.5,
            "r \\boxed{7}": 0.6,
            "s \\boxed{7}": 0.4,
        }
    )
    return target, reward


@pytest.mark.parametrize(
    ("selection", "aggregation", "text", "score"),
    [
        ("prm", "last", _SOLUTIONS[0], 0.9),
        ("prm", "min", _SOLUTIONS[1], 0.5),  # ties with solution 2: the first wins
        ("weighted_majority", "last", _SOLUTIONS[2], 0.6),  # 7 sums 1.5 > 0.9; its best is 0.6
    ],
)
def test_best_of_n_selection(selection, aggregation, text, score):
    target, reward = _best_of_n_case()
    options = BestOfNOptions(n=4, selection=selection, aggregation=aggregation)
    result = BestOfNPolicy(options, Roles(target=target, reward=reward)).run("Q")
    assert result.text == text and result.final_score == pytest.approx(score)
    _, params = target.generate_calls[0]
    assert params.stop == () and params.max_tokens == 2048 and params.n == 4
    assert {tuple(s) for s in reward.scored} >= {("a", "x \\boxed{3}"), ("q", "r \\boxed{7}")}
    assert [s.text for s in result.steps] == list(result.solution_steps)
    assert all(s.reward is not None and s.decision == "best_of_n" for s in result.steps)
    assert [entry["answer"] for entry in result.extra["solutions"]] == ["3", "7", "7", "7"]


def test_weighted_majority_ignores_solutions_without_answer_or_score():
    assert weighted_majority([None, "1", "2", "2"], [5.0, 0.9, 0.5, None]) == 1
    assert weighted_majority([None, None], [0.1, 0.2]) is None


# -- RSD -------------------------------------------------------------------------------------


def _rsd_case():
    draft = ScriptedModel(
        "drf",
        script={
            "": [cand("d1\n\n")],
            "d1\n\n": [cand("d2\n\n")],
            "d1\n\nt2\n\n": [cand("d3 \\boxed{5}")],
            "d1\n\nd2\n\n": [cand("d3 \\boxed{5}")],
        },
    )
    target = ScriptedModel("tgt", script={"d1\n\n": [cand("t2\n\n")]})
    reward = ScriptedReward({"d1": 0.8, "d2": 0.3, "t2": 0.9, "d3 \\boxed{5}": 0.75})
    return draft, target, reward


def test_rsd_accepts_a_draft_step_when_its_reward_reaches_delta():
    draft, target, reward = _rsd_case()
    result = RsdPolicy(RsdOptions(delta=0.7), Roles(target, draft, reward)).run("Q")
    assert [s.decision for s in result.steps] == [
        "draft_accepted",
        "draft_rejected",
        "draft_accepted",
    ]
    assert [s.source for s in result.steps] == [
        StepSource.DRAFT,
        StepSource.TARGET,
        StepSource.DRAFT,
    ]
    assert (result.accepted_draft_steps, result.rejected_draft_steps) == (2, 1)
    assert result.text == "d1\n\nt2\n\nd3 \\boxed{5}" and result.answer == "5"
    assert result.steps[1].reward is None  # with n=1 the target's step is taken unscored
    assert result.final_score is None
    assert not any(s == ("d1", "t2") for s in reward.scored)


@pytest.mark.parametrize(("delta", "first"), [(0.8, "draft_accepted"), (0.8001, "draft_rejected")])
def test_rsd_accepts_a_draft_whose_reward_equals_delta(delta, first):
    draft, target, reward = _rsd_case()  # the first draft's reward is exactly 0.8
    target.script = {**target.script, "": [cand("t1\n\n")], "t1\n\n": [cand("t9 \\boxed{9}")]}
    draft.script = {**draft.script, "t1\n\n": [cand("d9 \\boxed{9}")]}
    result = RsdPolicy(RsdOptions(delta=delta, max_steps=2), Roles(target, draft, reward)).run("Q")
    assert result.steps[0].decision == first


def test_rsd_with_a_low_delta_never_calls_the_target():
    draft, target, reward = _rsd_case()
    result = RsdPolicy(RsdOptions(delta=0.2), Roles(target, draft, reward)).run("Q")
    assert result.accepted_draft_steps == 3 and result.rejected_draft_steps == 0
    assert target.generate_calls == []
    assert result.final_score == pytest.approx(0.75)


def test_rsd_with_several_candidates_lets_the_reward_model_pick_the_target_step():
    draft = ScriptedModel("drf", script={"": [cand("w1\n\n"), cand("w2\n\n")]})
    target = ScriptedModel("tgt", script={"": [cand("t1 \\boxed{0}"), cand("t2 \\boxed{1}")]})
    reward = ScriptedReward({"w1": 0.1, "w2": 0.3, "t1 \\boxed{0}": 0.2, "t2 \\boxed{1}": 0.8})
    result = RsdPolicy(RsdOptions(n=2), Roles(target, draft, reward)).run("Q")
    assert result.answer == "1" and result.final_score == pytest.approx(0.8)
    assert [c.accepted for c in result.steps[0].candidates] == [False, False, False, True]


# -- majority and greedy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "index"),
    [
        (["3", "7", "7"], 1),
        (["3", "7", "7", "3"], 0),
        ([None, "4"], 1),
        ([None, None], 0),
    ],
)
def test_majority_vote(answers, index):
    assert majority_vote(answers)[0] == index


def test_majority_policy_needs_no_reward_model():
    texts = ["x \\boxed{3}", "y\n\nz \\boxed{7}", "w \\boxed{7}"]
    target = ScriptedModel("tgt", script={"": [cand(t) for t in texts]})
    result = MajorityPolicy(MajorityOptions(n=3), Roles(target=target)).run("Q")
    assert result.text == texts[1] and result.answer == "7"
    assert result.extra["votes"] == {"3": 1, "7": 2}
    assert result.final_score is None
    assert [s.text for s in result.steps] == ["y\n\n", "z \\boxed{7}"]
    _, params = target.generate_calls[0]
    assert params.temperature == pytest.approx(0.7) and params.n == 3


def test_greedy_decodes_one_solution_at_temperature_zero():
    target = ScriptedModel("tgt", script={"": [cand("g\n\nh \\boxed{2}")]})
    result = GreedyPolicy(GreedyOptions(max_solution_tokens=64), Roles(target=target)).run("Q")
    _, params = target.generate_calls[0]
    assert (params.n, params.temperature, params.max_tokens, params.stop) == (1, 0.0, 64, ())
    assert result.answer == "2" and result.solution_steps == ("g\n\n", "h \\boxed{2}")
    assert result.usage.tokens["tgt"].generated == 1

"""``specs rewards eval``: reading labelled solutions, scoring them resumably, and the figures
(AUC across and within problems, step AUC, selection, calibration, cost)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
import typer
from specs_core.errors import InvalidInputError
from specs_core.eval.cli import add_commands
from specs_core.eval.stats import auc
from specs_core.eval.verifiers import (
    RECORDED,
    LabelledSolution,
    ScoreCache,
    evaluate,
    fit_platt,
    load_solutions,
    score_solutions,
)
from typer.testing import CliRunner

from eval_support import TOY_CONFIG, toy_cli_args, write_toy_dataset

pytest.importorskip("math_verify", reason="grading needs the eval extra (math-verify)")


def _solution(
    problem: str, correct: bool, *steps: str, answer: str | None = None
) -> LabelledSolution:
    return LabelledSolution(
        problem=problem,
        question=f"question {problem}",
        steps=tuple(steps),
        correct=correct,
        answer=answer,
        origin="test",
    )


class KeywordRewardModel:
    """A reward-model plugin as a user would write one: the reward of a step is 0.9 when it holds
    the word "right", else 0.2; it counts its calls."""

    name = "keyword"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        self.calls.append(len(solutions))
        return [[0.9 if "right" in s else 0.2 for s in sol] for sol in solutions]

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        return [row[-1] for row in self.score(question, solutions)]

    def close(self) -> None:
        pass


# -- AUC ------------------------------------------------------------------------------------------


def test_auc_is_the_chance_that_a_positive_outranks_a_negative() -> None:
    rng = random.Random(3)
    scores = [rng.choice([0.1, 0.2, 0.3, 0.5, 0.8]) for _ in range(60)]
    labels = [rng.random() < 0.4 for _ in range(60)]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert auc(scores, labels) == pytest.approx(sum(pairs) / len(pairs))
    assert auc([1, 2, 3], [False, False, True]) == 1.0
    assert auc([3, 2, 1], [False, False, True]) == 0.0
    assert auc([1, 1], [True, False]) == 0.5
    assert auc([1, 2], [True, True]) is None


# -- figures --------------------------------------------------------------------------------------


def test_within_problem_auc_differs_from_auc_across_problems() -> None:
    # Problem a is easy (both right), b is hard (both wrong): scores track difficulty, so across
    # problems the verifier looks perfect, while inside c it prefers the wrong solution.
    sols = [
        _solution("a", True, "x"), _solution("a", True, "y"),
        _solution("b", False, "x"), _solution("b", False, "y"),
        _solution("c", True, "good"), _solution("c", False, "bad"),
    ]  # fmt: skip
    score = {"a": 0.9, "b": 0.1}
    rewards = {s.key: [score.get(s.problem, 0.4 if s.correct else 0.6)] for s in sols}
    report = evaluate("v", sols, rewards, resamples=0)
    assert report.within_auc == 0.0 and report.within_problems == 1
    assert report.solution_auc is not None and report.solution_auc > 0.7


def test_selection_against_majority_first_and_oracle() -> None:
    sols = [
        # p1: majority is wrong (7 twice), the verifier picks the right one, the first is wrong
        _solution("p1", False, "7", answer="7"), _solution("p1", False, "7", answer="7 "),
        _solution("p1", True, "right 5", answer="5"),
        # p2: all wrong
        _solution("p2", False, "3", answer="3"), _solution("p2", False, "4", answer="4"),
        # p3: a single solution is not a selection problem
        _solution("p3", True, "right", answer="1"),
    ]  # fmt: skip
    rewards = {s.key: [0.9 if "right" in s.steps[0] else 0.2] for s in sols}
    report = evaluate("v", sols, rewards, resamples=0)
    assert report.selection_problems == 2
    assert report.selection == {"verifier": 0.5, "majority": 0.0, "first": 0.0, "oracle": 0.5}


def test_majority_counts_answers_and_breaks_ties_by_first_seen() -> None:
    sols = [
        _solution("p", True, "a", answer="5"), _solution("p", False, "b", answer="6"),
        _solution("p", False, "c", answer="6"), _solution("q", True, "d", answer="1"),
        _solution("q", False, "e", answer="2"),
    ]  # fmt: skip
    report = evaluate("v", sols, {s.key: [0.5] for s in sols}, resamples=0)
    assert report.selection["majority"] == 0.5  # p: 6 wins (wrong); q: tie, first (right)


def test_step_auc_uses_outcome_labels_and_monte_carlo_labels_when_given() -> None:
    right = LabelledSolution("p", "q", ("s1", "s2"), True, "1", "t", step_labels=(0.5, 0.0))
    wrong = LabelledSolution("p", "q", ("s3", "s4"), False, "2", "t", step_labels=(0.25, 0.0))
    rewards = {right.key: [0.9, 0.1], wrong.key: [0.8, 0.7]}
    report = evaluate("v", [right, wrong], rewards, resamples=0)
    # outcome labels: positives 0.9, 0.1 against negatives 0.8, 0.7 -> 2 of 4 pairs
    assert report.step_auc == 0.5 and report.steps == 4
    # MC labels (positive when > 0): 0.9 and 0.8 positive, 0.1 and 0.7 negative -> 4 of 4
    assert report.mc_step_auc == 1.0


def test_aggregation_decides_the_solution_score() -> None:
    a = _solution("p", True, "s1", "s2")
    b = _solution("p", False, "s3", "s4")
    rewards = {a.key: [0.1, 0.9], b.key: [0.5, 0.6]}
    assert evaluate("v", [a, b], rewards, aggregation="last", resamples=0).solution_auc == 1.0
    assert evaluate("v", [a, b], rewards, aggregation="min", resamples=0).solution_auc == 0.0


def test_calibration_bins_and_expected_calibration_error() -> None:
    sols = [_solution(f"p{i}", i < 3, str(i)) for i in range(4)]
    rewards = {s.key: [0.75] for s in sols}  # one bin: mean 0.75, 3 of 4 right
    report = evaluate("v", sols, rewards, resamples=0)
    assert report.calibration == [(0.75, 0.75, 4)]
    assert report.ece == pytest.approx(0.0)
    rewards = {s.key: [0.95] for s in sols}
    assert evaluate("v", sols, rewards, resamples=0).ece == pytest.approx(0.2)


def test_the_bootstrap_interval_holds_the_estimate_and_is_seeded() -> None:
    rng = random.Random(0)
    sols = [_solution(f"p{i}", rng.random() < 0.5, str(i)) for i in range(80)]
    rewards = {s.key: [0.6 * s.correct + 0.7 * rng.random()] for s in sols}
    one = evaluate("v", sols, rewards, resamples=300, seed=1)
    two = evaluate("v", sols, rewards, resamples=300, seed=1)
    assert one.solution_auc_ci == two.solution_auc_ci
    assert one.solution_auc_ci is not None and one.solution_auc is not None
    low, high = one.solution_auc_ci
    assert low < one.solution_auc < high and high - low < 0.4


def test_platt_fit_recovers_a_known_calibration() -> None:
    rng = random.Random(5)
    scores, labels = [], []
    for _ in range(3000):
        s = rng.uniform(0.02, 0.98)
        logit = math.log(s / (1 - s))
        p = 1 / (1 + math.exp(-(2.0 * logit - 1.0)))
        scores.append(s)
        labels.append(rng.random() < p)
    a, b = fit_platt(scores, labels)
    assert a == pytest.approx(2.0, abs=0.25) and b == pytest.approx(-1.0, abs=0.25)
    with pytest.raises(InvalidInputError, match="two correct and two wrong"):
        fit_platt([0.5, 0.6, 0.7], [True, True, False])


# -- scoring --------------------------------------------------------------------------------------


def test_scoring_is_cached_resumable_and_one_call_per_problem(tmp_path: Path) -> None:
    sols = [
        _solution("p", True, "right\n\n", "done"), _solution("p", False, "oops"),
        _solution("q", True, "right"),
    ]  # fmt: skip
    model = KeywordRewardModel()
    cache = ScoreCache(tmp_path / "scores.jsonl")
    scored = score_solutions(sols, {"kw": model}, cache)
    assert model.calls == [2, 1]  # one call per problem, with all its solutions
    assert scored["kw"][sols[0].key].rewards == (0.9, 0.2)
    again = KeywordRewardModel()
    rescored = score_solutions(sols, {"kw": again}, ScoreCache(tmp_path / "scores.jsonl"))
    assert again.calls == [] and rescored["kw"] == scored["kw"]
    more = [*sols, _solution("r", False, "nope")]
    score_solutions(more, {"kw": again}, ScoreCache(tmp_path / "scores.jsonl"))
    assert again.calls == [1]


def test_a_reward_model_returning_the_wrong_shape_is_a_clear_error() -> None:
    class Short(KeywordRewardModel):
        def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
            return [[0.5] for _ in solutions]

    with pytest.raises(InvalidInputError, match="must return 2 finite rewards"):
        score_solutions([_solution("p", True, "a", "b")], {"s": Short()}, ScoreCache(None))


# -- reading --------------------------------------------------------------------------------------


def test_reading_jsonl_grades_with_gold_and_checks_fields(tmp_path: Path) -> None:
    path = tmp_path / "sols.jsonl"
    lines = [
        {"id": "a", "question": "1+1?", "steps": ["1+1=2.\n\n", "The answer is 2."], "gold": "2",
         "answer_format": "numeric"},
        {"id": "a", "question": "1+1?", "solution": "It is 3.", "gold": "2",
         "answer_format": "numeric"},
        {"question": "2+2?", "solution": "4", "correct": True, "step_labels": [1.0]},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    sols = load_solutions([path])
    assert [(s.problem, s.correct, len(s.steps)) for s in sols] == [
        ("a", True, 2), ("a", False, 1), ("2+2?", True, 1),
    ]  # fmt: skip
    assert sols[2].step_labels == (1.0,)
    bad = tmp_path / "bad.jsonl"
    for record, message in [
        ({"steps": ["x"], "correct": True}, "'question'"),
        ({"question": "q", "correct": True}, "'steps'"),
        ({"question": "q", "steps": ["x"]}, "'correct'"),
        ({"question": "q", "steps": ["x"], "correct": "yes"}, "true or false"),
        ({"question": "q", "steps": ["x"], "correct": True, "step_labels": [1, 2]}, "one number"),
    ]:
        bad.write_text(json.dumps(record) + "\n")
        with pytest.raises(InvalidInputError, match=message):
            load_solutions([bad])
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_solutions([tmp_path / "missing.jsonl"])
    with pytest.raises(InvalidInputError, match="not a specs bench run"):
        load_solutions([tmp_path])


# -- the command, on real toy bench runs -----------------------------------------------------------


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    add_commands(app)
    return app


def test_rewards_eval_on_bench_runs_writes_figures_plots_and_reuses_scores(
    app: typer.Typer, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="plots need the eval extra (matplotlib)")
    data = write_toy_dataset(tmp_path / "toy.jsonl", size=6)
    runs = []
    for policy in ("best_of_n", "majority", "beam_search"):
        out = tmp_path / policy
        args = ["bench", *toy_cli_args(data), "-c", str(TOY_CONFIG), "-p", policy, "-o", str(out)]
        result = CliRunner().invoke(app, [*args, "--no-progress"])
        assert result.exit_code == 0, result.output
        runs.append(str(out))
    rows = [
        json.loads(x) for x in (tmp_path / "best_of_n" / "results.jsonl").read_text().splitlines()
    ]
    # best-of-N keeps every sampled solution with its grade, so a verifier can be judged on them
    assert all(len(r["extra"]["solutions"]) == 4 for r in rows)
    assert all(isinstance(s["correct"], bool) for r in rows for s in r["extra"]["solutions"])
    sols = load_solutions(runs)
    # majority samples the very solutions best-of-N does (same seeds): each is read once
    assert len(sols) > 6 and {s.origin for s in sols} == {"best_of_n", "beam_search"}

    out = tmp_path / "eval"
    args = ["rewards", "eval", *runs, "-c", str(TOY_CONFIG), "-r", "toy", "-r", "toy:salt=x"]
    result = CliRunner().invoke(app, [*args, "-o", str(out), "--no-progress", "--fit"])
    assert result.exit_code == 0, result.output
    assert "| toy |" in result.stdout and "| toy:salt=x |" in result.stdout
    assert f"| {RECORDED} |" in result.stdout and "Logistic calibration" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["name"] for m in metrics] == [RECORDED, "toy", "toy:salt=x"]
    assert metrics[1]["solutions"] == len(sols) and metrics[1]["steps"] > len(sols)
    assert (out / "reliability.png").stat().st_size and (out / "histograms.png").stat().st_size
    lines = (out / "scores.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(sols)
    again = CliRunner().invoke(app, [*args, "-o", str(out), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert (out / "scores.jsonl").read_text().splitlines() == lines  # nothing scored twice


def test_rewards_eval_rejects_bad_reward_specs_and_aggregations(
    app: typer.Typer, tmp_path: Path
) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"question": "q", "solution": "1", "correct": True}) + "\n")
    for extra, message in [
        (["-r", ":model=x"], "names no reward model"),
        (["-r", "toy:salt"], "key=value"),
        (["--aggregation", "median"], "use one of"),
        (["--no-recorded"], "nothing to evaluate"),
    ]:
        result = CliRunner().invoke(app, ["rewards", "eval", str(path), *extra])
        assert result.exit_code != 0
        assert message in str(result.exception)

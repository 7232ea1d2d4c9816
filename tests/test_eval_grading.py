"""Grading with math-verify: equal and unequal answer pairs in each set's style, and robustness."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from specs_core.eval.datasets import AnswerFormat, load_dataset
from specs_core.eval.grading import grade, grade_problem

pytest.importorskip("math_verify", reason="grading needs the eval extra (math-verify)")

GSM8K, MATH, NUMERIC = AnswerFormat.GSM8K, AnswerFormat.MATH, AnswerFormat.NUMERIC

EQUAL = [
    # GSM8K: the gold is the number after ####; predictions state it in many ways.
    ("Janet makes 9 * 2 = 18 dollars.\n#### 18", "18", GSM8K),
    ("So the total is 1,000 apples.\n\nThe answer is 1,000.", "1000", GSM8K),
    ("Therefore, the final answer is $\\boxed{\\$18}$.", "18", GSM8K),
    ("The answer is 18 dollars.", "18", GSM8K),
    ("$\\boxed{18 \\text{ dollars}}$", "18", GSM8K),
    ("She pays 5 * 2 = 10, so 10 in total", "10", GSM8K),
    ("The answer is: -3.5", "-3.5", GSM8K),
    # MATH: LaTeX answers compared symbolically.
    ("Thus $\\boxed{\\frac{1}{2}}$.", "\\frac12", MATH),
    ("Thus $\\boxed{0.5}$.", "\\frac{1}{2}", MATH),
    ("$\\boxed{(3, \\frac{\\pi}{2})}$", "\\left( 3, \\frac{\\pi}{2} \\right)", MATH),
    ("$\\boxed{\\sqrt{3}/2}$", "\\frac{\\sqrt{3}}{2}", MATH),
    ("$\\boxed{58500}$", "58,500", MATH),
    ("$\\boxed{(2,12) \\cup (12,102)}$", "(2,12) \\cup (12,102)", MATH),
    ("$\\boxed{\\text{(C)}}$", "\\text{(C)}", MATH),
    ("$\\boxed{x^2+2x+1}$", "(x+1)^2", MATH),
    # AMC / AIME: numbers.
    ("The final answer is $\\boxed{27}$.", "27", NUMERIC),
    ("so m + n = 33, the answer is $\\boxed{033}$", "33", NUMERIC),
    ("The answer is 3159.0", "3159", NUMERIC),
]

UNEQUAL = [
    ("#### 17", "18", GSM8K),
    ("The answer is 1,001.", "1000", GSM8K),
    ("$\\boxed{-18}$", "18", GSM8K),
    ("Thus $\\boxed{\\frac{1}{3}}$.", "\\frac{1}{2}", MATH),
    ("$\\boxed{(3, \\pi)}$", "\\left( 3, \\frac{\\pi}{2} \\right)", MATH),
    ("$\\boxed{[2,5]}$", "[2,5)", MATH),
    ("$\\boxed{(100,201)}$", "(100,200)", MATH),
    ("$\\boxed{\\text{(D)}}$", "\\text{(C)}", MATH),
    ("The final answer is $\\boxed{28}$.", "27", NUMERIC),
]


@pytest.mark.parametrize(("text", "gold", "fmt"), EQUAL)
def test_equal_answers_are_graded_correct(text: str, gold: str, fmt: AnswerFormat) -> None:
    verdict = grade(text, gold, fmt)
    assert verdict.correct, verdict
    assert verdict.reason == "match"
    assert verdict.extracted is not None and verdict.parsed is not None


@pytest.mark.parametrize(("text", "gold", "fmt"), UNEQUAL)
def test_unequal_answers_are_graded_wrong(text: str, gold: str, fmt: AnswerFormat) -> None:
    verdict = grade(text, gold, fmt)
    assert not verdict.correct, verdict
    assert verdict.reason == "mismatch"


def test_olympiad_style_multiple_answers_and_units() -> None:
    assert grade("$\\boxed{5, 3}$", "3, 5", MATH).correct
    assert not grade("$\\boxed{3}$", "3, 5", MATH).correct
    assert grade("The rod is $\\boxed{12 cm}$ long.", "12", MATH, unit="cm").correct
    assert grade("$\\boxed{12 \\mathrm{~cm}}$", "12", MATH, unit="cm").correct


def test_extracted_answer_is_recorded() -> None:
    verdict = grade("step one\n\nstep two gives \\boxed{\\frac{3}{4}}", "0.75", MATH)
    assert verdict.extracted == "\\frac{3}{4}"
    assert verdict.correct


def test_missing_answer_is_wrong_with_a_reason() -> None:
    assert grade("", "18", GSM8K).reason == "no answer found"
    assert grade("I cannot solve this.", "18", GSM8K).reason == "no answer found"
    assert not grade("I cannot solve this.", "18", GSM8K).correct


def test_unparseable_gold_is_reported_not_raised() -> None:
    verdict = grade("$\\boxed{1}$", "", MATH)
    assert not verdict.correct
    assert "gold answer" in verdict.reason


def test_math_verify_failures_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    import math_verify
    from math_verify.errors import TimeoutException

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("sympy exploded")

    monkeypatch.setattr(math_verify, "verify", broken)
    verdict = grade("$\\boxed{1}$", "1", MATH)
    assert not verdict.correct
    assert verdict.reason == "grading error: RuntimeError: sympy exploded"

    def slow(*args: Any, **kwargs: Any) -> bool:
        raise TimeoutException("Operation timed out!")

    monkeypatch.setattr(math_verify, "verify", slow)
    assert grade("$\\boxed{1}$", "1", MATH).reason == "grading timed out"


def test_grading_works_outside_the_main_thread() -> None:
    verdicts = []
    thread = threading.Thread(
        target=lambda: verdicts.append(grade("$\\boxed{\\frac{1}{2}}$", "0.5", MATH))
    )
    thread.start()
    thread.join()
    assert len(verdicts) == 1 and verdicts[0].correct, verdicts


@pytest.mark.slow
@pytest.mark.parametrize("name", ["math500", "gsm8k", "amc23"])
def test_every_shipped_gold_answer_grades_against_itself(name: str) -> None:
    problems = load_dataset(name)
    wrong = [
        p.id
        for p in problems
        if not grade_problem(p, f"Therefore, the final answer is $\\boxed{{{p.answer}}}$.").correct
    ]
    assert wrong == []


@pytest.mark.parametrize("name", ["gsm8k", "amc23"])
def test_a_different_number_is_wrong_for_every_numeric_gold(name: str) -> None:
    problems = load_dataset(name)[:40]
    right = [
        p.id
        for p in problems
        if grade_problem(p, f"The answer is $\\boxed{{{float(p.answer) + 1:g}}}$").correct
    ]
    assert right == []

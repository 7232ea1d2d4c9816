"""The example plugin's own tests: its verifier, and the specs reward-model conformance suite."""

from __future__ import annotations

import pytest
from specs_arithmetic_prm import ArithmeticOptions, ArithmeticVerifier, check_equations
from specs_core.testing.conformance import REWARD_MODEL_CHECKS, check_reward_model


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("Janet sells 16 - 3 - 4 = 9 duck eggs a day.", [True]),
        ("She makes 9 * $2 = $18 every day.", [True]),
        ("So 2 + 2 = 5.", [False]),
        ("Then (3+4)*2 = 14 = 7*2.", [True]),
        ("Then (3+4)*2 = 14 = 7*3.", [False]),
        ("1,000 + 24 = 1,024", [True]),
        ("10 / 3 = 3.33", [True]),
        ("10 / 3 = 3.3", [True]),
        ("10 / 3 = 3.4", [False]),
        (r"$\frac{1}{2} \times 8 = 4$", [True]),
        ("1/3 + 1/6 = 1/2", [True]),
        ("5 / 0 = 1", [False]),
        ("2^10 = 1024", [True]),
        ("She has <<48/2=24>>24 clips", [True]),
    ],
)
def test_equations_are_checked_exactly(text: str, holds: list[bool]) -> None:
    assert [e.holds for e in check_equations(text)] == holds


@pytest.mark.parametrize("text", ["x = 5", "5 = 5", "The answer is 7.", "Step 2: add them."])
def test_text_without_arithmetic_has_no_equation(text: str) -> None:
    assert check_equations(text) == []


def test_rounding_can_be_disabled() -> None:
    assert [e.holds for e in check_equations("10 / 4 = 2.5", allow_rounding=False)] == [True]
    assert [e.holds for e in check_equations("10 / 3 = 3.33", allow_rounding=False)] == [False]


def test_step_rewards_share_neutral_and_all_or_nothing() -> None:
    steps = [["2 + 2 = 4 and 3 * 3 = 10", "We are done.", "1 + 1 = 2"]]
    assert ArithmeticVerifier().score("q", steps) == [[0.5, 0.5, 1.0]]
    strict = ArithmeticVerifier(ArithmeticOptions(neutral=0.25, all_or_nothing=True))
    assert strict.score("q", steps) == [[0.0, 0.25, 1.0]]
    assert strict.score_last("q", steps) == [1.0]


@pytest.mark.parametrize("check", sorted(REWARD_MODEL_CHECKS))
def test_conformance(check: str) -> None:
    check_reward_model(ArithmeticVerifier(), checks=[check])

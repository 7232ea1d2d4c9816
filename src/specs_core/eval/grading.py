r"""Grading a model's solution against a gold answer with math-verify.

The predicted answer is taken from the solution text: the last ``\boxed{}`` first, then
:func:`specs_core.text.extract_answer` (a ``#### N`` line, "the answer is X", the last number).
Both sides are parsed by math-verify as ``$\boxed{...}$`` and compared symbolically, so
``\frac{1}{2}`` equals ``0.5`` and ``1,000`` equals ``1000``. When the extracted answer does not
parse, math-verify's own extraction over the whole text is tried.

Grading never raises: a parse failure, a math-verify error or a timeout marks the answer wrong
and says why in :attr:`Grade.reason`. math-verify's timeouts use ``signal.alarm``, which only
works in the main thread; elsewhere they are disabled.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from specs_core.errors import SpecsError, install_hint
from specs_core.eval.datasets import AnswerFormat, Problem
from specs_core.text import extract_answer, extract_boxed

__all__ = [
    "GRADING_TIMEOUT_S",
    "Grade",
    "extract_prediction",
    "gold_expression",
    "grade",
    "grade_problem",
]

log = logging.getLogger(__name__)

#: Seconds math-verify may spend parsing or comparing one expression (main thread only).
GRADING_TIMEOUT_S = 5

_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+)(?![\d,])")
_SEPARATED_NUMBER = re.compile(r"-?\d{1,3}(?:,\s*\d{3})+(?:\.\d+)?")
_WORD = re.compile(r"(?<![\\a-zA-Z{])([a-zA-Z]{2,}(?:\s+[a-zA-Z]{2,})*)")
_NUMERIC_FORMATS = (AnswerFormat.GSM8K, AnswerFormat.NUMERIC)


@dataclass(frozen=True)
class Grade:
    """The verdict on one solution.

    Attributes:
        correct: the predicted answer equals the gold answer.
        extracted: the answer taken from the solution text (``None`` when none was found).
        parsed: what math-verify understood the prediction to be (``None`` when nothing parsed).
        reason: ``"match"``, ``"mismatch"``, or why the solution could not be graded.
    """

    correct: bool
    extracted: str | None
    parsed: str | None
    reason: str


def _math_verify() -> Any:
    try:
        import math_verify
    except ImportError as e:
        raise SpecsError(
            f"grading needs math-verify: install it with {install_hint('eval')}"
        ) from e
    return math_verify


def _timeout() -> int | None:
    return GRADING_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list[Any]:
    mv = _math_verify()
    result: list[Any] = mv.parse(text, parsing_timeout=_timeout(), raise_on_error=False)
    return result


def _boxed(answer: str) -> str:
    return "$\\boxed{" + answer + "}$"


def _clean(answer: str, answer_format: AnswerFormat, unit: str) -> str:
    """Normalise a predicted answer: thousands separators, dollar signs, units and words."""
    text = answer.strip()
    if unit and text.endswith(unit):
        text = text[: -len(unit)].strip()
    text = text.replace("\\$", "").replace("\\!", "")
    if _SEPARATED_NUMBER.fullmatch(text):
        text = re.sub(r"[,\s]", "", text)  # "11,\! 111,\! 100" -> "11111100"
    elif answer_format in _NUMERIC_FORMATS:
        # "1,000" -> "1000"; only in numeric answers, as "(100,200)" is a pair in LaTeX.
        text = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), text)
    if answer_format in _NUMERIC_FORMATS:
        text = text.replace("$", "").strip()
        # "18 dollars" -> "18 \text{dollars}": math-verify drops text units.
        text = _WORD.sub(lambda m: "\\text{" + m.group(1) + "}", text)
    return text.rstrip(".").strip()


def extract_prediction(text: str) -> str | None:
    r"""The answer a solution states: the last ``\boxed{}``, else :func:`extract_answer`."""
    boxed = extract_boxed(text)
    return boxed if boxed is not None else extract_answer(text)


def gold_expression(answer: str, answer_format: AnswerFormat) -> list[Any]:
    """math-verify's parse of a gold answer written in ``answer_format``."""
    gold = answer.strip()
    if answer_format in _NUMERIC_FORMATS:
        gold = gold.replace(",", "").replace("$", "")
    return _parse(_boxed(gold))


def grade(
    text: str,
    answer: str,
    answer_format: AnswerFormat | str = AnswerFormat.MATH,
    *,
    unit: str = "",
) -> Grade:
    """Grade a solution text against a gold answer.

    Args:
        text: the model's solution (or just its answer).
        answer: the gold answer in the canonical form of :class:`~specs_core.eval.datasets.Problem`.
        answer_format: how the gold answer is written.
        unit: a unit to remove from the prediction before comparing.

    Returns:
        The verdict; never raises for a bad prediction (it is graded wrong, with a reason).
    """
    fmt = AnswerFormat(answer_format)
    extracted = extract_prediction(text or "")
    mv = _math_verify()
    from math_verify.errors import TimeoutException

    try:
        gold = gold_expression(answer, fmt)
        if not gold:
            return Grade(False, extracted, None, f"gold answer {answer!r} could not be parsed")
        predicted: list[Any] = []
        if extracted is not None:
            predicted = _parse(_boxed(_clean(extracted, fmt, unit)))
        if not predicted and text:
            predicted = _parse(text)
        if not predicted:
            reason = "no answer found" if extracted is None else "answer could not be parsed"
            return Grade(False, extracted, None, reason)
        correct = bool(mv.verify(gold, predicted, timeout_seconds=_timeout(), raise_on_error=False))
    except Exception as e:
        log.debug("grading failed", exc_info=True)
        return Grade(False, extracted, None, f"grading error: {type(e).__name__}: {e}")
    except TimeoutException:  # a BaseException in math-verify
        return Grade(False, extracted, None, "grading timed out")
    parsed = str(predicted[0])
    return Grade(correct, extracted, parsed, "match" if correct else "mismatch")


def grade_problem(problem: Problem, text: str) -> Grade:
    """Grade a solution to ``problem`` (its gold answer, format and unit)."""
    return grade(text, problem.answer, problem.answer_format, unit=problem.unit)

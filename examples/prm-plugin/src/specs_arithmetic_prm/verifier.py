"""Check the equations written in a step with exact rational arithmetic.

An equation is a chain ``e1 = e2 = ... = ek`` of arithmetic expressions (numbers, ``+ - * / ^``,
parentheses, ``%``), as in "16 - 3 - 4 = 9 eggs" or "9 * $2 = $18". LaTeX operators (``\\times``,
``\\cdot``, ``\\div``, ``\\frac{a}{b}``), Unicode operators and GSM8K calculator annotations
(``<<16-3-4=9>>``) are understood. A chain holds when every adjacent pair is equal; a side written
as a decimal literal may be rounded to the digits it shows ("10 / 3 = 3.33" holds).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ArithmeticOptions", "ArithmeticVerifier", "Equation", "check_equations"]


class ArithmeticOptions(BaseModel):
    """Options of the ``arithmetic`` reward model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    neutral: float = Field(
        default=0.5, ge=0.0, le=1.0, description="score of a step with no equation"
    )
    all_or_nothing: bool = Field(
        default=False, description="score 1 only when every equation holds, else 0"
    )
    allow_rounding: bool = Field(
        default=True, description="accept a decimal literal rounded to the digits it shows"
    )


@dataclass(frozen=True)
class Equation:
    """One equation chain found in a text, and whether it holds."""

    text: str
    holds: bool


class _ParseError(ValueError):
    pass


_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|(\*\*|[-+*/^()%]))")


def _tokenize(expr: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise _ParseError(f"unexpected {expr[pos:]!r}")
        tokens.append(match.group(1) or ("^" if match.group(2) == "**" else match.group(2)))
        pos = match.end()
    return tokens


class _Parser:
    """Recursive descent over + - (lowest), * /, unary -, ^ (right assoc.), postfix %."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.i = 0

    def parse(self) -> Fraction:
        if not self.tokens:
            raise _ParseError("empty expression")
        value = self._sum()
        if self.i != len(self.tokens):
            raise _ParseError(f"trailing {self.tokens[self.i]!r}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise _ParseError("unexpected end")
        self.i += 1
        return token

    def _sum(self) -> Fraction:
        value = self._product()
        while self._peek() in ("+", "-"):
            op = self._take()
            rhs = self._product()
            value = value + rhs if op == "+" else value - rhs
        return value

    def _product(self) -> Fraction:
        value = self._unary()
        while self._peek() in ("*", "/"):
            op = self._take()
            rhs = self._unary()
            if op == "*":
                value *= rhs
            elif rhs == 0:
                raise ZeroDivisionError
            else:
                value /= rhs
        return value

    def _unary(self) -> Fraction:
        if self._peek() == "-":
            self._take()
            return -self._unary()
        if self._peek() == "+":
            self._take()
            return self._unary()
        return self._power()

    def _power(self) -> Fraction:
        base = self._postfix()
        if self._peek() == "^":
            self._take()
            exponent = self._unary()
            if exponent.denominator != 1 or abs(exponent) > 64:
                raise _ParseError("only small integer exponents are checked")
            if base == 0 and exponent < 0:
                raise ZeroDivisionError
            return base ** int(exponent)
        return base

    def _postfix(self) -> Fraction:
        value = self._atom()
        while self._peek() == "%":
            self._take()
            value /= 100
        return value

    def _atom(self) -> Fraction:
        token = self._take()
        if token == "(":
            value = self._sum()
            if self._take() != ")":
                raise _ParseError("unbalanced parenthesis")
            return value
        if token[0].isdigit() or token[0] == ".":
            return Fraction(token)
        raise _ParseError(f"unexpected {token!r}")


def _evaluate(expr: str) -> Fraction:
    return _Parser(_tokenize(expr)).parse()


_LITERAL = re.compile(r"^\s*-?(\d+)(?:\.(\d+))?\s*$")


def _rounding_slack(side: str) -> Fraction:
    """Half a unit in the last place of a decimal literal, else 0 (exact)."""
    match = _LITERAL.match(side)
    if match is None or match.group(2) is None:
        return Fraction(0)
    return Fraction(1, 2 * 10 ** len(match.group(2)))


def _normalise(text: str) -> str:
    frac = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
    while frac.search(text):
        text = frac.sub(r"((\1)/(\2))", text)
    replacements = {
        "\\times": "*",
        "\\cdot": "*",
        "\\div": "/",
        "×": "*",
        "·": "*",
        "÷": "/",
        "−": "-",
        "–": "-",
        "\\left": "",
        "\\right": "",
        "\\(": " ",
        "\\)": " ",
        "\\[": " ",
        "\\]": " ",
        "$": "",
        "\\$": "",
        "\\%": "%",
        "{": "(",
        "}": ")",
    }
    for old, new in replacements.items():
        text = text.replace(old, new)
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # thousands separators
    return text


_CALCULATOR = re.compile(r"<<([^<>]*)>>")
_CHAIN = re.compile(r"[-(.\d][\d\s.+\-*/^()%]*(?:\s*=[\d\s.+\-*/^()%]*[\d)%])+")


def _chain_holds(sides: list[str], allow_rounding: bool) -> bool | None:
    """True/False when every side evaluates, None when a side is not arithmetic."""
    try:
        values = [_evaluate(side) for side in sides]
    except ZeroDivisionError:
        return False
    except _ParseError:
        return None
    for (left, lv), (right, rv) in zip(
        zip(sides, values, strict=True), zip(sides[1:], values[1:], strict=True), strict=False
    ):
        slack = max(_rounding_slack(left), _rounding_slack(right)) if allow_rounding else 0
        if abs(lv - rv) > slack:
            return False
    return True


def _has_operator(side: str) -> bool:
    """A binary operator or a percent sign (a leading minus sign does not count)."""
    try:
        tokens = _tokenize(side)
    except _ParseError:
        return False
    return any(t in "+-*/^%" and (i > 0 or t == "%") for i, t in enumerate(tokens))


def check_equations(text: str, *, allow_rounding: bool = True) -> list[Equation]:
    """Find the equation chains in ``text`` and check each one.

    Only chains with at least one operator count: "x = 5" or "5 = 5" is not arithmetic.
    """
    text = _normalise(text)
    found: list[Equation] = []
    chunks = _CALCULATOR.findall(text)
    chunks.append(_CALCULATOR.sub(" ", text))
    for chunk in chunks:
        for match in _CHAIN.finditer(chunk):
            raw = match.group(0).strip()
            sides = [s.strip() for s in raw.split("=")]
            if len(sides) < 2 or not all(sides):
                continue
            if not any(_has_operator(side) for side in sides):
                continue
            holds = _chain_holds(sides, allow_rounding)
            if holds is not None:
                found.append(Equation(raw, holds))
    return found


class ArithmeticVerifier:
    """A reward model: the share of a step's equations that hold (neutral without equations)."""

    name = "arithmetic"

    def __init__(self, options: ArithmeticOptions | None = None) -> None:
        self.options = options or ArithmeticOptions()

    def _step_reward(self, step: str) -> float:
        equations = check_equations(step, allow_rounding=self.options.allow_rounding)
        if not equations:
            return self.options.neutral
        good = sum(e.holds for e in equations)
        if self.options.all_or_nothing:
            return 1.0 if good == len(equations) else 0.0
        return good / len(equations)

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """One reward per step: each step is judged on its own arithmetic."""
        return [[self._step_reward(step) for step in steps] for steps in solutions]

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        """The reward of each solution's last step."""
        return [self._step_reward(steps[-1]) for steps in solutions]

    def close(self) -> None:
        """Nothing to free."""

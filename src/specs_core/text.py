"""Steps and answers in plain text: the system prompt, step splitting and answer extraction."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "DEFAULT_STEP_DELIMITER",
    "DEFAULT_SYSTEM_PROMPT",
    "as_generated",
    "extract_answer",
    "extract_boxed",
    "partial_as_generated",
    "repeated_share",
    "split_steps",
    "states_final_answer",
    "step_content",
    "terminal_safe",
]

DEFAULT_STEP_DELIMITER = "\n\n"

DEFAULT_SYSTEM_PROMPT = (
    "Solve the math problem efficiently and clearly. Think step by step and separate the steps "
    "with a blank line. Finish with: Therefore, the final answer is $\\boxed{ANSWER}$."
)


def step_content(step: str, delimiter: str = DEFAULT_STEP_DELIMITER) -> str:
    """A step's text without its trailing delimiter and surrounding whitespace."""
    if delimiter and step.endswith(delimiter):
        step = step[: -len(delimiter)]
    return step.strip()


def states_final_answer(step: str) -> bool:
    r"""Whether a step states the final answer (a ``\boxed{}`` or a GSM8K ``#### N`` line): the
    step a model ends with its end token rather than the step delimiter."""
    return extract_boxed(step) is not None or re.search(r"^####\s*\S", step, re.M) is not None


def as_generated(step: str, delimiter: str = DEFAULT_STEP_DELIMITER) -> str:
    r"""A step's content as a model wrote it: followed by the delimiter, unless it states the
    final answer (then the end token followed it).

    Scoring a step without the delimiter it was written with misreads its last token: a
    tokenizer that merges the delimiter into the preceding text (Qwen writes ``.\n\n`` as one
    token) gives the bare ``.`` a log-probability the model never sampled, often below -9.
    """
    return step if states_final_answer(step) else step + delimiter


def partial_as_generated(steps: Sequence[str], delimiter: str = DEFAULT_STEP_DELIMITER) -> str:
    """A partial solution as the model wrote it: each step :func:`as_generated`, in order."""
    return "".join(as_generated(s, delimiter) for s in steps)


def repeated_share(step: str, before: str, n: int = 4) -> float:
    """The share of a step's word ``n``-grams already written: in ``before`` (the solution so
    far) or earlier in the step itself. Near 1 for a step that copies earlier steps or loops
    inside itself; 0 for a step with fewer than ``n`` words."""
    words = step.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    prior = before.split()
    seen = {tuple(prior[i : i + n]) for i in range(len(prior) - n + 1)}
    repeated = 0
    for gram in grams:
        repeated += gram in seen
        seen.add(gram)
    return repeated / len(grams)


def split_steps(text: str, delimiter: str = DEFAULT_STEP_DELIMITER) -> list[str]:
    """Split a solution into steps, each keeping its trailing delimiter (empty steps dropped)."""
    if not delimiter:
        return [text] if text.strip() else []
    parts = text.split(delimiter)
    steps = [p + delimiter for p in parts[:-1]] + [parts[-1]]
    return [s for s in steps if s.strip()]


def extract_boxed(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` (or ``\fbox{...}``), braces balanced."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    i = start = starts[-1]
    depth = 1
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip()
        i += 1
    return None


_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"


def extract_answer(text: str) -> str | None:
    r"""The final answer of a solution.

    Tries, in order: the last ``\boxed{}``, a GSM8K-style ``#### N`` line, "the (final) answer is
    X", and the last number in the text.
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    hashes = re.findall(r"####\s*(.+)", text)
    if hashes:
        return hashes[-1].strip()
    stated = re.findall(r"answer is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.\s|\.?$|\n)", text, flags=re.I)
    if stated:
        return stated[-1].strip()
    numbers = re.findall(_NUMBER, text)
    if numbers:
        return numbers[-1].replace("$", "").replace(",", "")
    return None


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` with its control characters (all but newline and tab) written as escapes
    (``\\x1b``), so that text from a model, a plugin or a server cannot drive the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)

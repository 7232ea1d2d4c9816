"""Shared pieces of the evaluation tests: a small problem file the toy models half solve, toy
configs, and a failure-injecting wrapper around a real :class:`specs_core.Specs`."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from specs_core import Specs
from specs_core.errors import BackendError
from specs_core.eval.datasets import Problem, load_dataset
from specs_core.testing.toy import toy_answer
from specs_core.types import SearchResult, StepCallback

REPO = Path(__file__).resolve().parents[1]
TOY_CONFIG = REPO / "examples" / "configs" / "toy.yaml"
TOY_FIELDS = {"id": "uid", "question": "q", "answer": "ans"}


def write_toy_dataset(path: Path, size: int = 12, seed: int = 1) -> Path:
    """Questions "What is a + b + c?"; the gold is the toy's answer on two rows of three, off by
    one on the others, so the toy models score about two thirds."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(size):
            q = f"What is {rng.randint(0, 9)} + {rng.randint(0, 9)} + {rng.randint(0, 9)}?"
            gold = toy_answer(q) + (1 if i % 3 == 2 else 0)
            f.write(json.dumps({"uid": f"t{i:02d}", "q": q, "ans": str(gold)}) + "\n")
    return path


def toy_problems(path: Path) -> list[Problem]:
    """The problems of a file written by :func:`write_toy_dataset`."""
    return load_dataset(str(path), fields=TOY_FIELDS, answer_format="numeric")


def toy_cli_args(path: Path) -> list[str]:
    """``specs bench`` arguments selecting a file written by :func:`write_toy_dataset`."""
    args = ["--dataset", str(path), "--answer-format", "numeric"]
    for key, column in TOY_FIELDS.items():
        args += ["--field", f"{key}={column}"]
    return args


class FailingSolver:
    """Test double around a real toy :class:`Specs`: raises on chosen questions (an engine
    failure cannot be provoked on demand in the toy) and counts every question it is asked."""

    def __init__(self, specs: Specs, fail_on: set[str], error: Exception | None = None) -> None:
        self.specs = specs
        self.fail_on = fail_on
        self.error = error or BackendError("the engine crashed")
        self.asked: list[str] = []

    def solve(
        self,
        question: str,
        *,
        policy: str | None = None,
        options: Mapping[str, Any] | None = None,
        on_step: StepCallback | None = None,
    ) -> SearchResult:
        self.asked.append(question)
        if question in self.fail_on:
            raise self.error
        return self.specs.solve(question, policy=policy, options=options, on_step=on_step)

"""A composite reward model: a weighted combination of several registered reward models.

Configured in YAML::

    reward:
      name: composite
      parts:
        - {name: judge, model: target, weight: 0.7}
        - {name: arithmetic, weight: 0.3}

The reward of a step is ``sum(w_i * r_i) / sum(w_i)``, so it stays within [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from specs_core.errors import RewardError
from specs_core.hookspecs import hookimpl
from specs_core.protocols import (
    LastStepRewardModel,
    ModelResolver,
    RewardModel,
    TokenUsageReporter,
)

__all__ = ["CompositeOptions", "CompositeRewardModel"]


class CompositeOptions(BaseModel):
    """Options of the ``composite`` reward model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parts: list[dict[str, Any]] = Field(
        min_length=1,
        description="reward models to combine: each {name: ..., weight: w, **its options}",
    )

    @field_validator("parts")
    @classmethod
    def _check_parts(cls, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, part in enumerate(parts):
            if "name" not in part:
                raise ValueError(f"parts[{i}] needs a 'name' naming a reward model")
            weight = part.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ValueError(f"parts[{i}].weight must be a number, got {weight!r}")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"parts[{i}].weight must be finite and >= 0, got {weight}")
        if sum(float(p.get("weight", 1.0)) for p in parts) <= 0:
            raise ValueError("the weights of parts must not all be 0")
        return parts


class CompositeRewardModel:
    """Weighted mean of several reward models' per-step rewards.

    Args:
        parts: ``(weight, reward model)`` pairs; weights are >= 0 and not all 0.
    """

    def __init__(self, parts: Sequence[tuple[float, RewardModel]]) -> None:
        if not parts:
            raise RewardError("a composite reward model needs at least one part")
        self.parts = list(parts)
        self._total = sum(w for w, _ in self.parts)

    @property
    def name(self) -> str:
        """``composite(w1*name1+w2*name2...)``."""
        inner = "+".join(f"{w:g}*{m.name}" for w, m in self.parts)
        return f"composite({inner})"

    def _combine(self, rows: list[list[float]], part_rows: list[list[float]], w: float) -> None:
        for row, part_row in zip(rows, part_rows, strict=True):
            for j, r in enumerate(part_row):
                row[j] += w * r / self._total

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """Weighted mean of every part's per-step rewards."""
        rows = [[0.0] * len(s) for s in solutions]
        for w, model in self.parts:
            part_rows = model.score(question, solutions)
            if len(part_rows) != len(solutions) or any(
                len(p) != len(s) for p, s in zip(part_rows, solutions, strict=False)
            ):
                raise RewardError(
                    f"reward model {model.name!r} (part of a composite) returned rewards that do "
                    "not match the solutions' step counts"
                )
            self._combine(rows, part_rows, w)
        return rows

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        """Weighted mean of every part's last-step reward."""
        total = [0.0] * len(solutions)
        for w, model in self.parts:
            if isinstance(model, LastStepRewardModel):
                last = list(model.score_last(question, solutions))
            else:
                last = [row[-1] for row in model.score(question, solutions)]
            if len(last) != len(solutions):
                raise RewardError(
                    f"reward model {model.name!r} (part of a composite) returned {len(last)} "
                    f"rewards for {len(solutions)} solutions"
                )
            for i, r in enumerate(last):
                total[i] += w * r / self._total
        return total

    def take_token_usage(self) -> Mapping[str, int]:
        """Tokens the parts evaluated since the last call."""
        usage = {"prompt": 0, "cached": 0}
        for _, model in self.parts:
            if isinstance(model, TokenUsageReporter):
                for key, value in model.take_token_usage().items():
                    usage[key] = usage.get(key, 0) + int(value)
        return usage

    def close(self) -> None:
        """Close every part."""
        for _, model in self.parts:
            model.close()


def _build_composite(options: CompositeOptions, models: ModelResolver) -> CompositeRewardModel:
    parts = []
    for i, part in enumerate(options.parts):
        config = {k: v for k, v in part.items() if k != "weight"}
        model = models.reward_model(config, f"reward.parts[{i}]")
        parts.append((float(part.get("weight", 1.0)), model))
    return CompositeRewardModel(parts)


@hookimpl
def register_reward_models(register: Any) -> None:
    """Register the ``composite`` reward model."""
    register(
        "composite",
        _build_composite,
        options=CompositeOptions,
        description="weighted mean of several reward models (reward.parts: [{name, weight, ...}])",
    )

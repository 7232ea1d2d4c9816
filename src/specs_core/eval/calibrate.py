"""Fit SPECS's thresholds to a reward model's scores (``specs calibrate``).

``tau_sw`` and ``tau_acc`` only mean something against the distribution of one reward model's
scores: the paper's 0.7 for a trained PRM never passes for a judge whose rewards sit in 0.44 to
0.64. This module reads the step traces of runs made with the reward model to calibrate
(``traces.jsonl.gz`` of ``specs bench``) and chooses each threshold for a target rate or a
target precision:

- ``tau_sw`` from the target's steps: the next step is drafted when a target candidate's reward
  exceeds ``tau_sw``, so a step's value is its best target reward. A *switch rate* ``R`` puts
  ``tau_sw`` where a share ``R`` of target steps would switch; a *switch precision* ``P`` puts it
  at the lowest value where at least ``P`` of the switching steps belong to correctly solved
  problems.
- ``tau_acc`` from drafted steps: a draft step is accepted when a distinct draft's soft score
  ``s = (l_t - l_d) + beta * r`` exceeds ``tau_acc``, so a step's value is its best ``s``,
  recomputed from the traced log-probabilities and rewards with the config's ``beta``. An
  *acceptance rate* ``A`` and an *acceptance precision* work the same way. Drafted steps come from
  SPECS runs; a run with ``tau_sw: -inf`` and ``tau_acc: -inf`` drafts and traces every step.

Step labels are outcome-propagated: a step is "good" when its problem was solved.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from specs_core.errors import ConfigError, InvalidInputError
from specs_core.eval.results import ResultsLog, TraceLog

__all__ = ["Calibration", "StepValues", "choose_threshold", "read_step_values"]


@dataclass(frozen=True)
class StepValues:
    """What decides each traced step, with its outcome label.

    Attributes:
        target: each target step's best target-candidate reward, with its problem's outcome.
        draft: each drafted step's best distinct-draft soft score, with its problem's outcome.
        runs: the run directories read.
        reward: the reward-model config the runs used.
    """

    target: list[tuple[float, bool]]
    draft: list[tuple[float, bool]]
    runs: list[str]
    reward: dict[str, Any]


def _run_config(path: Path) -> dict[str, Any]:
    file = path / "config.yaml"
    if not file.is_file():
        raise InvalidInputError(f"{path} holds no config.yaml (not a specs bench run)")
    data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise InvalidInputError(f"{file} is not a mapping")
    return data


def _best_score(step: Mapping[str, Any], beta: float) -> float | None:
    """The best soft score of a step's distinct drafts, recomputed with ``beta``."""
    best = None
    for c in step.get("candidates", []):
        if c.get("source") != "draft" or c.get("duplicate"):
            continue
        lt, ld, r = c.get("target_logprob"), c.get("draft_logprob"), c.get("reward")
        if lt is None or ld is None or r is None:
            continue
        s = (float(lt) - float(ld)) + beta * float(r)
        best = s if best is None else max(best, s)
    return best


def read_step_values(
    runs: Sequence[str | Path], reward: Mapping[str, Any], beta: float
) -> StepValues:
    """The deciding value of every traced step of ``runs``.

    Raises:
        InvalidInputError: a run has no traces, or was made with another reward model.
    """
    target: list[tuple[float, bool]] = []
    draft: list[tuple[float, bool]] = []
    for run in runs:
        path = Path(run)
        used = _run_config(path).get("reward") or {}
        if used != dict(reward):
            raise InvalidInputError(
                f"{path} was run with reward model {used!r}, not the config's {dict(reward)!r}: "
                "thresholds fit one reward model's scores only; rerun it with this reward model"
            )
        traces = TraceLog(path / "traces.jsonl.gz").load()
        if not traces:
            raise InvalidInputError(
                f"{path} holds no traces.jsonl.gz; rerun it with this version of specs bench"
            )
        rows = ResultsLog(path / "results.jsonl").load(repair=False)
        outcome = {str(r["id"]): bool(r.get("correct")) for r in rows if not r.get("error")}
        for problem, trace in traces.items():
            if problem not in outcome:
                continue
            label = outcome[problem]
            for step in trace.get("steps", []):
                candidates = step.get("candidates", [])
                rewards = [
                    float(c["reward"])
                    for c in candidates
                    if c.get("source") == "target" and c.get("reward") is not None
                ]
                if rewards:
                    target.append((max(rewards), label))
                if step.get("drafted"):
                    best = _best_score(step, beta)
                    if best is not None:
                        draft.append((best, label))
    return StepValues(target, draft, [str(r) for r in runs], dict(reward))


def choose_threshold(
    values: Sequence[tuple[float, bool]],
    *,
    rate: float | None = None,
    precision: float | None = None,
    min_steps: int = 10,
) -> tuple[float, dict[str, Any]]:
    """A threshold ``t`` such that ``value > t`` passes: a share ``rate`` of the steps, or the
    lowest ``t`` where at least ``precision`` of the passing steps are good.

    Returns:
        The threshold and what it achieves on ``values`` (rate, precision, steps).

    Raises:
        InvalidInputError: not exactly one goal, no steps, or a precision no threshold reaches
            with at least ``min_steps`` passing.
    """
    if (rate is None) == (precision is None):
        raise InvalidInputError("give exactly one goal: a rate or a precision")
    if not values:
        raise InvalidInputError("no traced steps to calibrate on")
    ordered = sorted(values, key=lambda v: v[0], reverse=True)
    n = len(ordered)
    if rate is not None:
        if not 0.0 <= rate <= 1.0:
            raise InvalidInputError(f"a rate lies in [0, 1], got {rate}")
        k = round(rate * n)  # steps that should pass
        if k == 0:
            threshold = ordered[0][0]
        elif k >= n:
            threshold = math.nextafter(ordered[-1][0], -math.inf)
        else:
            # between the k-th and (k+1)-th values; ties may make the achieved rate differ
            threshold = (ordered[k - 1][0] + ordered[k][0]) / 2
    else:
        assert precision is not None
        if not 0.0 < precision <= 1.0:
            raise InvalidInputError(f"a precision lies in (0, 1], got {precision}")
        best_precision, threshold_found = 0.0, None
        good = 0
        for i, (value, label) in enumerate(ordered):
            good += label
            count = i + 1
            tied_next = i + 1 < n and ordered[i + 1][0] == value
            if tied_next or count < min_steps:
                continue
            p = good / count
            best_precision = max(best_precision, p)
            if p >= precision:
                nxt = ordered[i + 1][0] if i + 1 < n else None
                threshold_found = (
                    (value + nxt) / 2 if nxt is not None else math.nextafter(value, -math.inf)
                )
        if threshold_found is None:
            raise InvalidInputError(
                f"no threshold passes {min_steps} or more steps at precision {precision:.2f} "
                f"(the best is {best_precision:.2f}); ask for a lower precision or a rate"
            )
        threshold = threshold_found
    passing = [label for value, label in values if value > threshold]
    achieved = {
        "steps": n,
        "rate": len(passing) / n,
        "precision": sum(passing) / len(passing) if passing else None,
    }
    return threshold, achieved


@dataclass(frozen=True)
class Calibration:
    """Chosen thresholds and their provenance, ready to write into a config."""

    values: dict[str, float]
    provenance: dict[str, Any]

    def apply(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` (plain data) with the thresholds set and the provenance recorded."""
        data = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in config.items()}
        policy = dict(data.get("policy") or {"name": "specs"})
        if policy.get("name", "specs") != "specs":
            raise ConfigError(
                f"calibrated thresholds are SPECS options, but the config's policy is "
                f"{policy.get('name')!r}; calibrate a SPECS config"
            )
        policy.update(self.values)
        data["policy"] = policy
        data["calibration"] = self.provenance
        return data


def calibrate(
    steps: StepValues,
    *,
    switch_rate: float | None = None,
    switch_precision: float | None = None,
    accept_rate: float | None = None,
    accept_precision: float | None = None,
    beta: float,
) -> Calibration:
    """Choose ``tau_sw`` and/or ``tau_acc`` for the goals given (at least one threshold).

    Raises:
        InvalidInputError: no goal, or a goal the traces cannot meet.
    """
    values: dict[str, float] = {}
    provenance: dict[str, Any] = {"runs": steps.runs, "reward": steps.reward, "beta": beta}
    if switch_rate is not None or switch_precision is not None:
        t, achieved = choose_threshold(steps.target, rate=switch_rate, precision=switch_precision)
        values["tau_sw"] = round(t, 6)
        goal = {"switch_rate": switch_rate} if switch_rate is not None else {}
        goal |= {"switch_precision": switch_precision} if switch_precision is not None else {}
        provenance["tau_sw"] = {**goal, "achieved": achieved}
    if accept_rate is not None or accept_precision is not None:
        if not steps.draft:
            raise InvalidInputError(
                "the runs hold no drafted step to fit tau_acc: add a SPECS run that drafts "
                "(e.g. --set policy.tau_sw=-inf --set policy.tau_acc=-inf)"
            )
        t, achieved = choose_threshold(steps.draft, rate=accept_rate, precision=accept_precision)
        values["tau_acc"] = round(t, 6)
        goal = {"accept_rate": accept_rate} if accept_rate is not None else {}
        goal |= {"accept_precision": accept_precision} if accept_precision is not None else {}
        provenance["tau_acc"] = {**goal, "achieved": achieved}
    if not values:
        raise InvalidInputError(
            "nothing to calibrate: give --switch-rate or --switch-precision (tau_sw) and/or "
            "--accept-rate or --accept-precision (tau_acc)"
        )
    return Calibration(values, provenance)


def describe(calibration: Calibration) -> Iterable[str]:
    """One line per chosen threshold."""
    for name, value in calibration.values.items():
        achieved = calibration.provenance[name]["achieved"]
        precision = achieved["precision"]
        yield (
            f"{name} = {value:.4g}: passes {100 * achieved['rate']:.0f}% of "
            f"{achieved['steps']} traced steps"
            + (
                f", {100 * precision:.0f}% of them from solved problems"
                if precision is not None
                else ""
            )
        )

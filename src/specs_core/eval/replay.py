"""``specs replay``: what a stored run would cost on other hardware.

A bench run's trace (``traces.jsonl.gz``) records every step of every search: which model wrote
each candidate and how many tokens it has, and which one was committed. A cost table
(``benchmarks/gpu_step_costs.py``: the seconds of one draft step, one target step, the target's
verification prefill and a PRM call, for ``n`` candidates of ``L`` tokens after a prefix of ``P``
tokens) prices each step's calls:

- drafted candidates: ``draft_generate(n_d, L_max, P)`` plus ``target_verify(n_d, L, P)``;
- candidates the target wrote: ``target_generate(n_t, L_max, P)``;
- with a priced reward model (``--reward prm``): ``prm_score(n, L, P)`` for the step's candidates;

with ``L_max`` the longest of those candidates (the n candidates of a step decode as one batch,
and the step waits for the last of them to stop), ``L`` their mean length (a prefill costs what
its tokens cost, whatever their split), and ``P`` the prompt plus the committed steps so far. A
cost between grid points is interpolated bilinearly in (``L``, ``P``), then linearly in ``n``
(and extrapolated linearly beyond the grid). Summed per problem this is the modelled latency of
the run on the table's hardware; on the hardware the run was measured on it should come close to
the measured latency, minus what the table leaves out (policy logic, a free reward
model, tokenization).

:func:`speculation_ratio` models SPECS against target beam search for a step profile as a
function of the share of steps whose draft is accepted.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specs_core.errors import InvalidInputError
from specs_core.eval.results import ResultsLog, TraceLog
from specs_core.eval.runner import RESULTS_FILE, TRACES_FILE

__all__ = [
    "COST_FORMAT",
    "OPS",
    "CostTable",
    "ProblemCost",
    "price_trace",
    "replay_run",
    "speculation_ratio",
]

COST_FORMAT = "specs-step-costs/1"
OPS = ("draft_generate", "target_generate", "target_verify", "prm_score")


def _bracket(values: Sequence[float], x: float) -> tuple[float, float]:
    """The two grid values around ``x`` (the two nearest ends outside the grid)."""
    ordered = sorted(set(values))
    if len(ordered) == 1:
        return ordered[0], ordered[0]
    for lo, hi in itertools.pairwise(ordered):
        if x <= hi:
            return lo, hi
    return ordered[-2], ordered[-1]


def _lerp(x: float, x0: float, x1: float, y0: float, y1: float) -> float:
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@dataclass(frozen=True)
class CostTable:
    """Seconds of each model call on one machine, on a grid of (n, L, P).

    Attributes:
        points: ``op -> {(n, L, P): seconds}``.
        meta: where it was measured (device, dtype, models, ``source``).
    """

    points: Mapping[str, Mapping[tuple[int, int, int], float]]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> CostTable:
        """Read a table written by ``benchmarks/gpu_step_costs.py``.

        Raises:
            InvalidInputError: the file is missing, not JSON, or not a cost table.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidInputError(
                f"cost table {str(path)!r} does not exist; measure one with "
                "python benchmarks/gpu_step_costs.py"
            ) from None
        except (OSError, ValueError) as e:
            raise InvalidInputError(f"cost table {str(path)!r} is not readable JSON: {e}") from e
        if not isinstance(data, dict) or data.get("format") != COST_FORMAT:
            raise InvalidInputError(f"{str(path)!r} is not a {COST_FORMAT} cost table")
        points: dict[str, dict[tuple[int, int, int], float]] = {}
        for row in data.get("entries") or []:
            try:
                key = (int(row["n"]), int(row["L"]), int(row["P"]))
                seconds = float(row["seconds"])
                op = str(row["op"])
            except (KeyError, TypeError, ValueError) as e:
                raise InvalidInputError(f"cost table {str(path)!r}: a bad entry {row!r}") from e
            if not math.isfinite(seconds) or seconds < 0:
                raise InvalidInputError(f"cost table {str(path)!r}: {seconds} seconds in {row!r}")
            points.setdefault(op, {})[key] = seconds
        meta = {k: v for k, v in data.items() if k != "entries"}
        return cls(points, meta)

    def has(self, op: str) -> bool:
        """The table prices ``op``."""
        return bool(self.points.get(op))

    def cost(self, op: str, n: float, length: float, prefix: float) -> float:
        """Seconds of ``op`` for ``n`` candidates of ``length`` tokens after ``prefix`` tokens.

        Raises:
            InvalidInputError: the table has no entry for ``op``.
        """
        grid = self.points.get(op)
        if not grid:
            raise InvalidInputError(f"the cost table has no {op!r} entries")
        ns = [k[0] for k in grid]
        n0, n1 = _bracket(ns, n)
        at = [self._plane(grid, m, length, prefix) for m in (n0, n1)]
        return max(0.0, _lerp(n, n0, n1, at[0], at[1]))

    @staticmethod
    def _plane(grid: Mapping[tuple[int, int, int], float], n: float, x: float, y: float) -> float:
        cells: dict[tuple[float, float], float] = {
            (float(k[1]), float(k[2])): v for k, v in grid.items() if k[0] == n
        }
        x0, x1 = _bracket([k[0] for k in cells], x)
        y0, y1 = _bracket([k[1] for k in cells], y)

        def value(a: float, b: float) -> float:
            if (a, b) in cells:
                return cells[(a, b)]
            raise InvalidInputError(
                f"the cost table's grid is not complete (no entry for n={n} L={a} P={b})"
            )

        low = _lerp(x, x0, x1, value(x0, y0), value(x1, y0))
        high = _lerp(x, x0, x1, value(x0, y1), value(x1, y1))
        return _lerp(y, y0, y1, low, high)


@dataclass
class ProblemCost:
    """The modelled seconds of one problem's search, per model call kind."""

    problem: str
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OPS, 0.0))
    steps: int = 0
    drafted_steps: int = 0
    accepted_steps: int = 0

    @property
    def total(self) -> float:
        """All calls together."""
        return sum(self.seconds.values())


def _tokens(candidates: Sequence[Mapping[str, Any]]) -> list[float]:
    return [float(c.get("tokens") or 0) for c in candidates]


def _mean_tokens(candidates: Sequence[Mapping[str, Any]]) -> float:
    tokens = _tokens(candidates)
    return sum(tokens) / len(tokens) if tokens else 0.0


def _longest(candidates: Sequence[Mapping[str, Any]]) -> float:
    return max(_tokens(candidates), default=0.0)


def price_trace(
    trace: Mapping[str, Any], table: CostTable, *, prompt_tokens: int, reward: bool
) -> ProblemCost:
    """The modelled cost of one problem's trace (see the module docstring).

    Raises:
        InvalidInputError: a step has no candidates (whole-solution policies are not priced).
    """
    cost = ProblemCost(str(trace.get("id")))
    prefix: dict[int, float] = {}  # per beam: the prompt plus its committed steps
    for step in trace.get("steps") or []:
        candidates = step.get("candidates") or []
        if not candidates:
            raise InvalidInputError(
                f"problem {cost.problem}: a step without candidates; replay prices step "
                "searches (specs, beam_search, rsd...), not whole-solution policies"
            )
        beam = int(step.get("beam") or 0)
        at = prefix.get(beam, float(prompt_tokens))
        drafts = [c for c in candidates if c.get("source") == "draft"]
        targets = [c for c in candidates if c.get("source") == "target"]
        if drafts:
            n = len(drafts)
            cost.seconds["draft_generate"] += table.cost("draft_generate", n, _longest(drafts), at)
            cost.seconds["target_verify"] += table.cost(
                "target_verify", n, _mean_tokens(drafts), at
            )
            cost.drafted_steps += 1
            cost.accepted_steps += bool(step.get("accepted"))
        if targets:
            cost.seconds["target_generate"] += table.cost(
                "target_generate", len(targets), _longest(targets), at
            )
        if reward:
            length = _mean_tokens(candidates)
            cost.seconds["prm_score"] += table.cost("prm_score", len(candidates), length, at)
        chosen = [c for c in candidates if c.get("text") == step.get("text")]
        prefix[beam] = at + _mean_tokens(chosen or candidates)
        cost.steps += 1
    return cost


def replay_run(
    run: str | Path, table: CostTable, *, prompt_tokens: int = 128, reward: bool = False
) -> dict[str, Any]:
    """Price every problem of a bench run and compare with its measured latency.

    Returns:
        ``problems``, the modelled and measured seconds (totals, per-phase modelled), their
        ratio, and the share of drafted steps whose draft was accepted.

    Raises:
        InvalidInputError: the run has no traces.
    """
    run = Path(run)
    if not (run / TRACES_FILE).is_file():
        raise InvalidInputError(
            f"{run} has no {TRACES_FILE}; replay needs a run written by specs bench"
        )
    traces = TraceLog(run / TRACES_FILE).load()
    rows = {
        str(r.get("id")): r for r in ResultsLog(run / RESULTS_FILE).load() if not r.get("error")
    }
    priced = [
        price_trace(traces[i], table, prompt_tokens=prompt_tokens, reward=reward)
        for i in rows
        if i in traces
    ]
    measured = sum(float(rows[p.problem]["latency_s"]["total"]) for p in priced)
    modelled = sum(p.total for p in priced)
    drafted = sum(p.drafted_steps for p in priced)
    return {
        "run": str(run),
        "problems": len(priced),
        "modelled_s": modelled,
        "measured_s": measured,
        "modelled_over_measured": modelled / measured if measured else None,
        "phases_s": {op: sum(p.seconds[op] for p in priced) for op in OPS},
        "steps": sum(p.steps for p in priced),
        "draft_acceptance": sum(p.accepted_steps for p in priced) / drafted if drafted else None,
        "per_problem": {
            p.problem: (p.total, float(rows[p.problem]["latency_s"]["total"])) for p in priced
        },
    }


def speculation_ratio(
    table: CostTable,
    acceptance: Iterable[float],
    *,
    n: int = 4,
    step_tokens: float = 64,
    steps: int = 8,
    prompt_tokens: int = 128,
    reward: bool = False,
) -> dict[float, float]:
    """Modelled SPECS / target beam search latency for a step profile, by acceptance rate.

    Target beam search: each step ``target_generate(n, L, P)``. SPECS: each step the draft
    proposes ``n`` candidates and the target verifies them; with probability ``1 - a`` the target
    then writes the step as beam search does. With ``reward``, both pay ``prm_score`` once per
    step (twice for a rejected SPECS step).
    """
    out = {}
    for a in acceptance:
        beam = specs = 0.0
        for k in range(steps):
            at = prompt_tokens + k * step_tokens
            target = table.cost("target_generate", n, step_tokens, at)
            prm = table.cost("prm_score", n, step_tokens, at) if reward else 0.0
            beam += target + prm
            specs += table.cost("draft_generate", n, step_tokens, at)
            specs += table.cost("target_verify", n, step_tokens, at) + prm
            specs += (1 - a) * (target + prm)
        out[a] = specs / beam if beam else math.nan
    return out

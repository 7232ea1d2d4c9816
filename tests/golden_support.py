"""Golden results of every built-in policy on the deterministic toy backend.

:func:`cases` lists policy runs (policy, question, options); :func:`project` keeps every figure
of a result that does not depend on timing (texts, decisions, scores, token counts, counters).

Two golden files (gzipped JSON, one projection per case):

- ``toy_policies.json.gz``: the results with today's defaults. Regenerate on purpose only:
  ``SPECS_REGEN_GOLDEN=1 python -m pytest tests/test_policy_golden.py``.
- ``toy_policies_before_fidelity.json.gz``: the results before finished candidates, duplicate
  drafts and the last step's budget were handled as the SPECS authors do. The options of
  :func:`legacy_options` restore that behaviour, and must reproduce these results exactly.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN_FILE = GOLDEN_DIR / "toy_policies.json.gz"
BEFORE_FIDELITY_FILE = GOLDEN_DIR / "toy_policies_before_fidelity.json.gz"

QUESTIONS = (
    "What is 2 + 3?",
    "Tom has 4 apples and buys 9 more. How many now?",
    "What is 7 + 8?",
    "Add 6 and 11, then 3.",
)

_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "specs": [
        {},
        {"tau_acc": 4.0},
        {"tau_acc": 4.0, "tau_sw": 0.3},
        {"tau_acc": -math.inf, "tau_sw": 0.0},
        {"tau_acc": math.inf},
        {"tau_acc": 4.0, "log_ratio": "sum", "tau_sw": 0.4},
        {"tau_acc": 8.0, "tau_sw": 0.3, "hybrid": True},
        {"tau_acc": 4.0, "n": 2, "temperature": 0.0, "tau_sw": 0.3},
        {"tau_acc": 4.0, "aggregation": "min", "max_steps": 4},
        {"tau_acc": 4.0, "tau_sw": 0.3, "max_steps": 3, "max_step_tokens": 6},
    ],
    "rsd": [{}, {"n": 2, "delta": 0.5}, {"delta": 0.0}],
    "beam_search": [
        {},
        {"beam_width": 2, "n": 4},
        {"aggregation": "mean", "max_steps": 3},
        {"max_steps": 2, "max_step_tokens": 5},
    ],
    "draft_beam_search": [{}, {"beam_width": 2, "n": 6}],
    "best_of_n": [{}, {"selection": "weighted_majority"}, {"aggregation": "min", "n": 6}],
    "draft_best_of_n": [{}],
    "majority": [{}, {"n": 7}, {"max_solution_tokens": 8}],
    "draft_majority": [{}],
    "greedy": [{}],
    "draft_greedy": [{}],
}


def cases() -> list[tuple[str, str, dict[str, Any]]]:
    """Every (policy, question, options) run, each with seeds 0 and 1."""
    out = []
    for policy, variants in _VARIANTS.items():
        for options in variants:
            for question in QUESTIONS:
                for seed in (0, 1):
                    out.append((policy, question, {**options, "seed": seed}))
    return out


def legacy_options(policy: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus those that restore the behaviour before the fidelity changes: a committed
    finished candidate ends the search, duplicate drafts count, the last step has the budget of
    every step."""
    if policy not in ("specs", "rsd", "beam_search", "draft_beam_search"):
        return options
    extra: dict[str, Any] = {"max_last_step_tokens": options.get("max_step_tokens", 256)}
    if policy != "rsd":
        extra["on_finished"] = "stop"
    if policy == "specs":
        extra["dedupe"] = False
    return {**options, **extra}


def load_golden(path: Path) -> dict[str, Any]:
    """A golden file's projections by case key."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def write_golden(path: Path, projections: dict[str, Any]) -> None:
    """Write projections by case key (one line per case, sorted, reproducible bytes)."""
    lines = [
        f"{json.dumps(k)}: {json.dumps(projections[k], sort_keys=True)}"
        for k in sorted(projections)
    ]
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(text.encode("utf-8"))


def case_key(policy: str, question: str, options: dict[str, Any]) -> str:
    """A stable name of a case."""
    opts = ",".join(f"{k}={options[k]}" for k in sorted(options))
    return f"{policy}|{question}|{opts}"


def _num(value: float | None) -> float | str | None:
    if value is None:
        return None
    if not math.isfinite(value):
        return str(value)
    return round(float(value), 9)


def _enum(value: Any) -> Any:
    return getattr(value, "value", value)


def project(result: Any) -> dict[str, Any]:
    """The timing-free figures of a search result."""
    usage = result.usage
    return {
        "answer": result.answer,
        "text": result.text,
        "final_score": _num(result.final_score),
        "finished": result.finished,
        "solution_steps": list(result.solution_steps),
        "accepted_draft_steps": result.accepted_draft_steps,
        "rejected_draft_steps": result.rejected_draft_steps,
        "switches": result.switches,
        "draft_steps": result.draft_steps,
        "target_steps": result.target_steps,
        "tokens": {
            m: [u.prompt, u.generated, u.cached, u.calls] for m, u in sorted(usage.tokens.items())
        },
        "reward_cache": [usage.reward_cache_hits, usage.reward_cache_misses],
        "hybrid": [usage.hybrid_steps, usage.hybrid_proposed, usage.hybrid_accepted],
        "steps": [
            {
                "index": s.index,
                "beam": s.beam,
                "source": _enum(s.source),
                "decision": _enum(s.decision),
                "text": s.text,
                "reward": _num(s.reward),
                "drafted": s.drafted,
                "accepted": s.accepted,
                "switched_to_draft": s.switched_to_draft,
                "candidates": [
                    [
                        c.text,
                        _enum(c.source),
                        c.finished,
                        _num(c.draft_logprob),
                        _num(c.target_logprob),
                        _num(c.reward),
                        _num(c.score),
                        c.accepted,
                        c.draft_prefix_tokens,
                    ]
                    for c in s.candidates
                ],
            }
            for s in result.steps
        ],
    }

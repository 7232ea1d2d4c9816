"""JSON-ready views of search results, shared by the CLI, evaluation and integrations."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from specs_core.types import SearchResult, StepRecord

__all__ = ["result_to_dict", "step_to_dict"]


def _number(value: float | None) -> float | str | None:
    """JSON has no infinities or NaN: spell them as strings."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def step_to_dict(step: StepRecord, *, candidates: bool = True) -> dict[str, Any]:
    """One committed step: who wrote it, whether a draft was accepted, its reward and candidates."""
    data: dict[str, Any] = {
        "index": step.index,
        "source": step.source.value,
        "accepted": step.accepted,
        "drafted": step.drafted,
        "decision": step.decision,
        "reward": _number(step.reward),
        "switched_to_draft": step.switched_to_draft,
        "beam": step.beam,
        "text": step.text,
    }
    if candidates:
        data["candidates"] = [
            {k: (_number(v) if isinstance(v, float) else v) for k, v in asdict(c).items()}
            | {"source": c.source.value}
            for c in step.candidates
        ]
    return data


def result_to_dict(result: SearchResult, *, candidates: bool = True) -> dict[str, Any]:
    """The whole result: answer, text, latency per phase, tokens per model and the step trace."""
    usage = result.usage
    return {
        "question": result.question,
        "policy": result.policy,
        "answer": result.answer,
        "text": result.text,
        "finished": result.finished,
        "final_score": _number(result.final_score),
        "latency_s": dict(usage.latency_s),
        "tokens": {model: u.as_dict() for model, u in usage.tokens.items()},
        "reward_cache": {"hits": usage.reward_cache_hits, "misses": usage.reward_cache_misses},
        "speculative": {
            model: u.speculation_dict() for model, u in usage.tokens.items() if u.draft_rounds
        },
        "hybrid": {
            "steps": usage.hybrid_steps,
            "proposed": usage.hybrid_proposed,
            "accepted": usage.hybrid_accepted,
        },
        "accepted_draft_steps": result.accepted_draft_steps,
        "rejected_draft_steps": result.rejected_draft_steps,
        "draft_steps": result.draft_steps,
        "target_steps": result.target_steps,
        "switches": result.switches,
        "steps": [step_to_dict(s, candidates=candidates) for s in result.steps],
        "solution_steps": list(result.solution_steps),
        "extra": dict(result.extra),
    }

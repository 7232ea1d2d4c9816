"""Per-problem result rows, the append-only ``results.jsonl`` log, and run summaries.

``results.jsonl`` is the source of truth of a run: one JSON object per problem, appended and
flushed to disk as each problem finishes. ``summary.json`` is recomputed from it by
:func:`summarize` (and so can always be rebuilt).

A row holds the problem (``id``, ``index``, ``dataset``, ``question``, ``gold``), the run
(``fingerprint``, ``wall_s``, ``error``), the grade (``extracted``, ``parsed``, ``correct``,
``grade_reason``), and every field of the search's
:class:`~specs_core.schema.ResultRecord` but its step trace: ``policy``, ``answer``, ``text``,
``solution_steps``, ``final_score``, ``finished``, ``stop_reason``, ``latency_s`` (``total`` and
one key per phase), ``tokens`` (per model), ``reward_cache``, ``hybrid``, the step counts and
``extra``. Rows written by earlier versions lack some of these; readers use defaults.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from specs_core.errors import InvalidInputError
from specs_core.eval.datasets import Problem
from specs_core.eval.grading import Grade, grade_problem
from specs_core.eval.stats import quantile, wilson
from specs_core.schema import HybridCounts, ResultRecord, RewardCacheCounts
from specs_core.types import PHASES, SearchResult

__all__ = ["ResultsLog", "TraceLog", "error_row", "result_row", "summarize", "trace_record"]

log = logging.getLogger(__name__)

_TOKEN_KEYS = ("prompt", "generated", "cached", "calls")


def _base_row(problem: Problem, index: int, policy: str, fingerprint: str) -> dict[str, Any]:
    return {
        "id": problem.id,
        "index": index,
        "dataset": problem.dataset,
        "question": problem.question,
        "gold": problem.answer,
        "policy": policy,
        "fingerprint": fingerprint,
    }


def result_row(
    problem: Problem,
    index: int,
    result: SearchResult,
    grade: Grade,
    *,
    fingerprint: str,
    wall_s: float,
) -> dict[str, Any]:
    """The row of a solved problem: its fields and the result's record without the trace.

    The other whole solutions a policy sampled (``extra["solutions"]`` with their ``text``, as
    best-of-N keeps them) are graded too, so that a verifier can be judged on them later.
    """
    record = ResultRecord.from_result(result).to_json(steps=False)
    for other in record["extra"].get("solutions", []):
        if isinstance(other, dict) and isinstance(other.get("text"), str):
            other["correct"] = grade_problem(problem, other["text"]).correct
    return {
        **_base_row(problem, index, result.policy, fingerprint),
        **record,
        "question": problem.question,
        "extracted": grade.extracted,
        "parsed": grade.parsed,
        "correct": grade.correct,
        "grade_reason": grade.reason,
        "wall_s": wall_s,
        "error": None,
    }


def error_row(
    problem: Problem,
    index: int,
    error: BaseException,
    *,
    policy: str,
    fingerprint: str,
    wall_s: float,
) -> dict[str, Any]:
    """The row of a problem whose solve raised: counted as wrong, kept out of latency figures."""
    return {
        **_base_row(problem, index, policy, fingerprint),
        "answer": None,
        "text": "",
        "solution_steps": [],
        "final_score": None,
        "finished": False,
        "stop_reason": None,
        "latency_s": {},
        "tokens": {},
        "reward_cache": RewardCacheCounts().model_dump(),
        "hybrid": HybridCounts().model_dump(),
        "draft_steps": 0,
        "target_steps": 0,
        "accepted_draft_steps": 0,
        "rejected_draft_steps": 0,
        "switches": 0,
        "extra": {},
        "extracted": None,
        "parsed": None,
        "correct": False,
        "grade_reason": "error",
        "wall_s": wall_s,
        "error": f"{type(error).__name__}: {error}",
    }


_NUMBER = (int, float)
#: The types of the row fields that summaries, reports and resumes compute with.
_ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str, int),
    "correct": (bool, type(None)),
    "error": (str, type(None)),
    "wall_s": (*_NUMBER, type(None)),
    "final_score": (*_NUMBER, type(None)),
    "latency_s": (dict,),
    "tokens": (dict,),
    "draft_steps": (int,),
    "target_steps": (int,),
    "accepted_draft_steps": (int,),
    "rejected_draft_steps": (int,),
    "switches": (int,),
}


def _row_problem(row: Mapping[str, Any]) -> str | None:
    """What is wrong with a row's fields, or ``None``."""
    if "id" not in row:
        return "it has no 'id'"
    for key, kinds in _ROW_FIELDS.items():
        if key not in row:
            continue
        value = row[key]
        wrong_bool = isinstance(value, bool) and bool not in kinds  # True is an int to Python
        if isinstance(value, kinds) and not wrong_bool:
            continue
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        return f"field {key!r} is {type(value).__name__}, expected {names}"
    latency = row.get("latency_s") or {}
    for phase, seconds in latency.items():
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, _NUMBER)):
            return f"latency_s.{phase} is {type(seconds).__name__}, expected a number"
    return None


class ResultsLog:
    """The append-only ``results.jsonl`` of one run.

    Args:
        path: the file (created on the first append).
        rows_of_a_run: check that each row's fields have the types of a bench row (off for
            other JSONL logs kept with this class).
    """

    def __init__(self, path: Path, *, rows_of_a_run: bool = True) -> None:
        self.path = path
        self.rows_of_a_run = rows_of_a_run

    def load(self, *, repair: bool = True) -> list[dict[str, Any]]:
        """Read every row, dropping a torn last line left by a killed run.

        A last line that is not valid JSON (the process died while writing it) is dropped; with
        ``repair`` the file is rewritten without it, so the next append starts on a clean line.

        Raises:
            InvalidInputError: a line other than the last is not a JSON object, or a row's
                field has the wrong type.
        """
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        rows: list[dict[str, Any]] = []
        torn = False
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
                if not isinstance(row, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                if all(not rest.strip() for rest in lines[number:]):
                    torn = True
                    log.warning("%s: dropping a torn last line (interrupted run)", self.path)
                    break
                raise InvalidInputError(
                    f"{self.path}:{number} is not a JSON object ({e}); the file is damaged: "
                    "fix or remove that line, or start over with --force"
                ) from e
            problem = _row_problem(row) if self.rows_of_a_run else None
            if problem is not None:
                raise InvalidInputError(
                    f"{self.path}:{number} is not a result row ({problem}); the file is "
                    "damaged: fix or remove that line, or start over with --force"
                )
            rows.append(row)
        if repair and (torn or (raw and not raw.endswith(b"\n"))):
            self.rewrite(rows)
        return rows

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace the file's content with ``rows`` atomically."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row and force it to disk before returning."""
        line = json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def trace_record(problem: Problem, index: int, result: SearchResult) -> dict[str, Any]:
    """One line of ``traces.jsonl.gz``: every candidate of every step of one problem's search
    (source, text, tokens, log-probabilities, reward, soft score, decision, finished)."""
    steps = ResultRecord.from_result(result).to_json()["steps"]
    return {"id": problem.id, "index": index, "dataset": problem.dataset, "steps": steps}


class TraceLog:
    """The append-only, gzip-compressed ``traces.jsonl.gz`` of one run: one JSON line per problem,
    each appended as its own gzip member (so appending never rewrites the file).

    Args:
        path: the file (created on the first append).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one problem's trace and force it to disk before returning."""
        line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
        with self.path.open("ab") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                gz.write(line.encode("utf-8"))
            raw.flush()
            os.fsync(raw.fileno())

    def load(self, *, repair: bool = False) -> dict[str, dict[str, Any]]:
        """Every problem's trace by id (the last one written wins).

        A member torn by a killed run is dropped; with ``repair`` the file is rewritten without
        it, so that traces appended later stay readable.
        """
        if not self.path.exists():
            return {}
        traces: dict[str, dict[str, Any]] = {}
        torn = False
        try:
            with gzip.open(self.path, "rt", encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        torn = True  # the cut end of an interrupted append
                        continue
                    if isinstance(record, dict) and "id" in record:
                        traces[str(record["id"])] = record
        except (EOFError, gzip.BadGzipFile, zlib.error):
            torn = True
        if torn:
            log.warning("%s: dropping a torn last trace (interrupted run)", self.path)
            if repair:
                self.rewrite(traces.values())
        return traces

    def rewrite(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Replace the file's content with ``records`` atomically."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                for record in records:
                    gz.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, self.path)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def summarize(rows: Iterable[Mapping[str, Any]], **meta: Any) -> dict[str, Any]:
    """The figures of a run, computed from its rows only.

    Accuracy counts error rows as wrong; latency, tokens and step figures use the rows that
    finished without error. ``draft_step_share`` is draft-written steps over all committed steps,
    and ``acceptance_rate`` accepted over accepted plus rejected draft steps, both pooled over
    problems (``None`` when there is nothing to divide).

    Args:
        rows: the rows of ``results.jsonl``.
        **meta: run facts copied into the summary first (dataset, policy, fingerprint, ...).
    """
    rows = list(rows)
    ok = [r for r in rows if not r.get("error")]
    n = len(rows)
    n_correct = sum(1 for r in rows if r.get("correct"))
    totals = [float(r["latency_s"]["total"]) for r in ok if "total" in r.get("latency_s", {})]
    phases = {
        p: _mean([float(r["latency_s"].get(p, 0.0)) for r in ok if r.get("latency_s")])
        for p in PHASES
    }
    tokens: dict[str, dict[str, int]] = {}
    for r in ok:
        for model, counts in r.get("tokens", {}).items():
            slot = tokens.setdefault(model, dict.fromkeys(_TOKEN_KEYS, 0))
            for key in _TOKEN_KEYS:
                slot[key] += int(counts.get(key, 0))
    step_keys = ("draft_steps", "target_steps", "accepted_draft_steps", "rejected_draft_steps")
    steps = {k: sum(int(r.get(k, 0)) for r in ok) for k in (*step_keys, "switches")}
    low, high = wilson(n_correct, n)
    return {
        **meta,
        "n": n,
        "n_correct": n_correct,
        "n_errors": n - len(ok),
        "accuracy": n_correct / n if n else None,
        "accuracy_ci95": [low, high] if n else None,
        "latency_s": {
            "mean": _mean(totals),
            "median": quantile(totals, 0.5) if totals else None,
            "p90": quantile(totals, 0.9) if totals else None,
            "min": min(totals) if totals else None,
            "max": max(totals) if totals else None,
            "sum": sum(totals),
        },
        "latency_by_phase_s": phases,
        "tokens": tokens,
        "tokens_per_problem": {
            model: {k: v / len(ok) for k, v in counts.items()} for model, counts in tokens.items()
        },
        "steps": steps,
        "draft_step_share": _ratio(
            steps["draft_steps"], steps["draft_steps"] + steps["target_steps"]
        ),
        "acceptance_rate": _ratio(
            steps["accepted_draft_steps"],
            steps["accepted_draft_steps"] + steps["rejected_draft_steps"],
        ),
    }

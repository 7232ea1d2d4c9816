"""The bench runner on the real toy models: rows, resume, torn lines, fingerprints, errors, and
summary figures recomputed from results.jsonl."""

from __future__ import annotations

import gzip
import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from specs_core import Specs
from specs_core.errors import ConfigError, InvalidInputError, ModelNotFoundError
from specs_core.eval.datasets import Problem
from specs_core.eval.results import ResultsLog, TraceLog
from specs_core.eval.runner import WARMUP_QUESTION, BenchSpec, fingerprint, run_bench
from specs_core.eval.sweep import bench_spec
from specs_core.resolution import resolve_config
from specs_core.types import PHASES

from eval_support import TOY_CONFIG, FailingSolver, toy_problems, write_toy_dataset

pytest.importorskip("math_verify", reason="grading needs the eval extra (math-verify)")


@pytest.fixture
def problems(tmp_path: Path) -> list[Problem]:
    return toy_problems(write_toy_dataset(tmp_path / "toy.jsonl", size=12))


@pytest.fixture
def specs() -> Iterator[Specs]:
    with Specs.from_config(TOY_CONFIG) as s:
        yield s


def _spec(problems: list[Problem], overrides: list[str] | None = None) -> BenchSpec:
    config = resolve_config(TOY_CONFIG, None, overrides or [])
    return bench_spec(config, "toy", problems, limit=None, sample_seed=0)


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_a_run_writes_one_graded_row_per_problem(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    summary = run_bench(specs, _spec(problems), out, progress=False)
    rows = _rows(out)
    assert [r["id"] for r in rows] == [p.id for p in problems]
    assert {"config.yaml", "run.json", "results.jsonl", "summary.json"} <= {
        p.name for p in out.iterdir()
    }
    for row, problem in zip(rows, problems, strict=True):
        assert row["gold"] == problem.answer and row["question"] == problem.question
        assert row["policy"] == "specs" and row["error"] is None
        assert set(row["latency_s"]) == {*PHASES, "total"}
        assert row["tokens"] and row["text"]
        assert row["extracted"] is not None
        assert row["draft_steps"] + row["target_steps"] >= 1
    # The toy answers its own sums; one gold in three is off by one.
    assert 0 < summary["n_correct"] < len(problems)
    assert summary["complete"] is True and summary["n"] == 12


def test_a_search_that_runs_out_of_context_is_a_row_marked_stopped(
    problems: list[Problem], tmp_path: Path
) -> None:
    # A context in which every toy question's first steps fit, but not a whole solution.
    overrides = ["target.n_ctx=180", "draft.n_ctx=180"]
    config = resolve_config(TOY_CONFIG, None, overrides)
    out = tmp_path / "run"
    with Specs(config) as specs:
        run_bench(specs, _spec(problems[:3], overrides), out, progress=False)
    rows = _rows(out)
    assert rows and all(r["error"] is None for r in rows)
    assert all(r["stop_reason"] == "context" and r["finished"] is False for r in rows)
    assert all(r["draft_steps"] + r["target_steps"] >= 1 and r["text"] for r in rows)


def test_summary_figures_recomputed_from_results_match(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    solver = FailingSolver(specs, fail_on={problems[3].question})
    run_bench(solver, _spec(problems), out, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    rows = _rows(out)
    ok = [r for r in rows if r["error"] is None]
    totals = [r["latency_s"]["total"] for r in ok]
    assert summary["n"] == len(rows) == 12
    assert summary["n_errors"] == 1
    assert summary["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / len(rows))
    assert summary["latency_s"]["mean"] == pytest.approx(statistics.mean(totals))
    assert summary["latency_s"]["median"] == pytest.approx(statistics.median(totals))
    for phase in PHASES:
        expected = statistics.mean(r["latency_s"][phase] for r in ok)
        assert summary["latency_by_phase_s"][phase] == pytest.approx(expected)
    for model, counts in summary["tokens"].items():
        for key in ("prompt", "generated", "cached", "calls"):
            assert counts[key] == sum(r["tokens"].get(model, {}).get(key, 0) for r in ok)
    draft = sum(r["draft_steps"] for r in ok)
    target = sum(r["target_steps"] for r in ok)
    accepted = sum(r["accepted_draft_steps"] for r in ok)
    rejected = sum(r["rejected_draft_steps"] for r in ok)
    assert summary["draft_step_share"] == pytest.approx(draft / (draft + target))
    assert summary["acceptance_rate"] == pytest.approx(accepted / (accepted + rejected))
    low, high = summary["accuracy_ci95"]
    assert low <= summary["accuracy"] <= high


def test_a_problem_that_raises_is_an_error_row_and_the_run_goes_on(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    solver = FailingSolver(specs, fail_on={problems[0].question, problems[5].question})
    summary = run_bench(solver, _spec(problems), out, progress=False)
    rows = {r["id"]: r for r in _rows(out)}
    assert len(rows) == 12
    for bad in (problems[0], problems[5]):
        assert rows[bad.id]["error"] == "BackendError: the engine crashed"
        assert rows[bad.id]["correct"] is False
    assert summary["n_errors"] == 2
    # Resuming keeps error rows; --retry-errors solves them again.
    solver.fail_on = set()
    solver.asked.clear()
    run_bench(solver, _spec(problems), out, progress=False)
    assert solver.asked == []
    summary = run_bench(solver, _spec(problems), out, progress=False, retry_errors=True)
    assert solver.asked == [problems[0].question, problems[5].question]
    assert summary["n_errors"] == 0 and summary["n"] == 12


def test_configuration_errors_stop_the_run_without_recording(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    solver = FailingSolver(
        specs, fail_on={problems[2].question}, error=ModelNotFoundError("no such model file")
    )
    with pytest.raises(ModelNotFoundError):
        run_bench(solver, _spec(problems), out, progress=False)
    assert [r["id"] for r in _rows(out)] == [problems[0].id, problems[1].id]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 2 and summary["complete"] is False


def test_resume_skips_done_problems_and_repairs_a_torn_last_line(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    spec = _spec(problems)
    run_bench(specs, spec, out, progress=False)
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    # Simulate a kill: five complete rows and half of the sixth.
    (out / "results.jsonl").write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    solver = FailingSolver(specs, fail_on=set())
    run_bench(solver, spec, out, progress=False)
    assert solver.asked == [p.question for p in problems[5:]]
    ids = [r["id"] for r in _rows(out)]
    assert sorted(ids) == sorted(p.id for p in problems)
    assert len(ids) == len(set(ids))


def test_a_damaged_middle_line_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(InvalidInputError, match="damaged"):
        ResultsLog(path).load()


def test_a_different_config_in_the_same_directory_is_refused(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run_bench(specs, _spec(problems[:3]), out, progress=False)
    other = _spec(problems[:3], ["policy.tau_acc=3"])
    assert fingerprint(other) != fingerprint(_spec(problems[:3]))
    with pytest.raises(ConfigError, match=r"new --out.*--force"):
        run_bench(specs, other, out, progress=False)
    with pytest.raises(ConfigError, match="different config"):
        run_bench(specs, _spec(problems[:4]), out, progress=False)  # another subset
    summary = run_bench(specs, other, out, progress=False, force=True)
    assert summary["n"] == 3
    assert {r["fingerprint"] for r in _rows(out)} == {fingerprint(other)}
    assert "tau_acc: 3.0" in (out / "config.yaml").read_text()  # resolved: defaults filled in


def test_the_fingerprint_hashes_resolved_values(problems: list[Problem]) -> None:
    assert fingerprint(_spec(problems, ["policy.tau_acc=3"])) == fingerprint(
        _spec(problems, ["policy.tau_acc=3.0"])
    )
    assert fingerprint(_spec(problems, ["policy.n=4"])) == fingerprint(_spec(problems))
    assert fingerprint(_spec(problems, ["target.ms_per_token=1"])) != fingerprint(_spec(problems))


def test_warmup_is_solved_once_and_not_recorded(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    solver = FailingSolver(specs, fail_on=set())
    run_bench(solver, _spec(problems[:2]), tmp_path / "run", progress=False, warmup=True)
    assert solver.asked == [WARMUP_QUESTION, problems[0].question, problems[1].question]
    assert len(_rows(tmp_path / "run")) == 2
    solver.asked.clear()
    run_bench(solver, _spec(problems[:2]), tmp_path / "run", progress=False, warmup=True)
    assert solver.asked == []  # nothing left to do: no warm-up either


def test_choosing_another_policy_keeps_the_options_it_accepts() -> None:
    config = resolve_config(TOY_CONFIG, "best_of_n", ["policy.n=2"])
    assert config.policy.name == "best_of_n"
    options = config.policy.options()
    assert options["n"] == 2
    assert "tau_acc" not in options and "beta" not in options
    with pytest.raises(ConfigError, match="tau_acc"):
        bench_spec(
            resolve_config(TOY_CONFIG, "best_of_n", ["policy.tau_acc=3"]),
            "toy",
            [],
            limit=None,
            sample_seed=0,
        )


def test_every_candidate_of_every_step_is_traced_beside_the_rows(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run_bench(specs, _spec(problems[:4]), out, progress=False)
    traces = TraceLog(out / "traces.jsonl.gz").load()
    rows = _rows(out)
    assert list(traces) == [r["id"] for r in rows]
    for row in rows:
        steps = traces[row["id"]]["steps"]
        assert len(steps) == row["draft_steps"] + row["target_steps"]
        for step in steps:
            assert step["candidates"] and step["decision"]
            for c in step["candidates"]:
                assert c["tokens"] > 0 and c["text"] and isinstance(c["finished"], bool)
                assert c["reward"] is not None and c["source"] in ("draft", "target")
                if c["source"] == "draft":  # SPECS records both log-probabilities of a draft
                    assert c["draft_logprob"] is not None and c["target_logprob"] is not None
                    assert c["score"] is not None


def test_traces_resume_with_the_rows_and_survive_a_torn_append(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    spec = _spec(problems[:6])
    run_bench(specs, spec, out, progress=False, until=3)
    path = out / "traces.jsonl.gz"
    assert len(TraceLog(path).load()) == 3
    # a kill in the middle of an append leaves a torn gzip member at the end
    path.write_bytes(path.read_bytes() + gzip.compress(b'{"id": "x", "steps": []}\n')[:15])
    assert list(TraceLog(path).load()) == [p.id for p in problems[:3]]
    run_bench(specs, spec, out, progress=False)
    assert len(TraceLog(path).load()) == 6
    run_bench(specs, spec, out, progress=False, force=True, until=1)
    assert len(TraceLog(path).load()) == 1


def _without_timing(row: dict[str, Any]) -> dict[str, Any]:
    """A row without what depends on when it ran: time, and prefix-cache hits (the cache holds
    what earlier or concurrent searches left in it)."""
    kept = {k: v for k, v in row.items() if k not in ("latency_s", "wall_s", "tokens")}
    kept["tokens"] = {
        model: {k: v for k, v in counts.items() if k != "cached"}
        for model, counts in row["tokens"].items()
    }
    return kept


def test_concurrency_4_gives_the_rows_of_concurrency_1(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    spec = _spec(problems)
    one = run_bench(specs, spec, tmp_path / "one", progress=False)
    four = run_bench(specs, spec, tmp_path / "four", progress=False, concurrency=4)
    rows = {
        name: sorted(ResultsLog(tmp_path / name / "results.jsonl").load(), key=lambda r: r["id"])
        for name in ("one", "four")
    }
    assert len(rows["four"]) == len(problems)
    assert [_without_timing(r) for r in rows["four"]] == [_without_timing(r) for r in rows["one"]]
    assert four["accuracy"] == one["accuracy"]
    one_traces = TraceLog(tmp_path / "one" / "traces.jsonl.gz").load()
    four_traces = TraceLog(tmp_path / "four" / "traces.jsonl.gz").load()
    assert four_traces.keys() == one_traces.keys()
    assert all(four_traces[i]["steps"] == one_traces[i]["steps"] for i in one_traces)


def test_a_concurrent_run_resumes_and_stops_at_until(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    spec = _spec(problems)
    out = tmp_path / "run"
    run_bench(specs, spec, out, progress=False, concurrency=3, until=5)
    assert len(ResultsLog(out / "results.jsonl").load()) == 5
    summary = run_bench(specs, spec, out, progress=False, concurrency=3)
    ids = [r["id"] for r in ResultsLog(out / "results.jsonl").load()]
    assert sorted(ids) == sorted(p.id for p in problems) and summary["complete"]


def test_a_fatal_error_in_a_concurrent_run_stops_it_and_keeps_finished_rows(
    specs: Specs, problems: list[Problem], tmp_path: Path
) -> None:
    solver = FailingSolver(specs, {problems[4].question}, ModelNotFoundError("gone"))
    with pytest.raises(ModelNotFoundError):
        run_bench(solver, _spec(problems), tmp_path / "run", progress=False, concurrency=2)
    kept = ResultsLog(tmp_path / "run" / "results.jsonl").load()
    assert problems[4].id not in {r["id"] for r in kept} and len(kept) < len(problems)

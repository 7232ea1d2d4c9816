"""``specs replay``: cost tables, pricing a trace, replaying a bench run, the modelled ratio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from specs_core import Specs
from specs_core.cli import run
from specs_core.errors import InvalidInputError
from specs_core.eval.replay import CostTable, price_trace, replay_run, speculation_ratio
from specs_core.eval.runner import run_bench
from specs_core.eval.sweep import bench_spec
from specs_core.resolution import resolve_config

from eval_support import TOY_CONFIG, toy_problems, write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
RATE = {"draft_generate": 1e-3, "target_generate": 4e-3, "target_verify": 5e-4, "prm_score": 2e-4}


def linear_table(tmp_path: Path) -> Path:
    """seconds = rate * n * L + 1e-5 * P on the grid n {2, 4}, L {10, 40}, P {50, 500}."""
    entries = [
        {"op": op, "n": n, "L": length, "P": p, "seconds": rate * n * length + 1e-5 * p}
        for op, rate in RATE.items()
        for n in (2, 4)
        for length in (10, 40)
        for p in (50, 500)
    ]
    path = tmp_path / "costs.json"
    path.write_text(
        json.dumps({"format": "specs-step-costs/1", "device": "test", "entries": entries})
    )
    return path


def exact(op: str, n: float, length: float, p: float) -> float:
    return RATE[op] * n * length + 1e-5 * p


def test_costs_are_exact_on_the_grid_and_interpolated_between(tmp_path: Path) -> None:
    table = CostTable.load(linear_table(tmp_path))
    assert table.cost("target_generate", 4, 40, 500) == pytest.approx(
        exact("target_generate", 4, 40, 500)
    )
    # bilinear in (L, P) and linear in n reproduce a function linear in each (within the grid)
    for point in ((3, 25, 275), (2, 10, 300), (4, 33, 60)):
        assert table.cost("draft_generate", *point) == pytest.approx(
            exact("draft_generate", *point)
        )
    # beyond the grid: extrapolated linearly, never negative
    assert table.cost("target_verify", 8, 80, 1000) == pytest.approx(
        exact("target_verify", 8, 80, 1000)
    )
    assert table.cost("target_verify", 0, 0, 0) >= 0.0


def test_a_bad_table_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="gpu_step_costs"):
        CostTable.load(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(InvalidInputError, match="not a specs-step-costs/1"):
        CostTable.load(tmp_path / "other.json")
    table = CostTable.load(linear_table(tmp_path))
    with pytest.raises(InvalidInputError, match="no 'judge_call' entries"):
        table.cost("judge_call", 2, 10, 50)


def candidate(source: str, tokens: int, text: str = "x") -> dict[str, Any]:
    return {"source": source, "tokens": tokens, "text": text}


def test_a_trace_is_priced_call_by_call(tmp_path: Path) -> None:
    table = CostTable.load(linear_table(tmp_path))
    trace = {
        "id": "p1",
        "steps": [
            {"text": "a", "beam": 0, "accepted": None,
             "candidates": [candidate("target", 20, "a"), candidate("target", 30, "b")]},
            {"text": "c", "beam": 0, "accepted": True,
             "candidates": [candidate("draft", 10, "c"), candidate("draft", 30, "d")]},
        ],
    }  # fmt: skip
    cost = price_trace(trace, table, prompt_tokens=100, reward=True)
    p1, p2 = 100, 100 + 20  # the prompt, then the prompt and the committed first step
    expected = {
        # generation waits for the longest candidate; a verification prefill costs the mean
        "target_generate": exact("target_generate", 2, 30, p1),
        "draft_generate": exact("draft_generate", 2, 30, p2),
        "target_verify": exact("target_verify", 2, 20, p2),
        "prm_score": exact("prm_score", 2, 25, p1) + exact("prm_score", 2, 20, p2),
    }
    assert cost.seconds == pytest.approx(expected)
    assert (cost.steps, cost.drafted_steps, cost.accepted_steps) == (2, 1, 1)
    free = price_trace(trace, table, prompt_tokens=100, reward=False)
    assert free.seconds["prm_score"] == 0 and free.total == pytest.approx(
        cost.total - expected["prm_score"]
    )


def test_a_whole_solution_trace_is_refused(tmp_path: Path) -> None:
    table = CostTable.load(linear_table(tmp_path))
    with pytest.raises(InvalidInputError, match="whole-solution"):
        price_trace({"id": "p", "steps": [{"text": "x", "candidates": []}]}, table,
                    prompt_tokens=10, reward=False)  # fmt: skip


@pytest.fixture()
def toy_run(tmp_path: Path) -> Path:
    problems = toy_problems(write_toy_dataset(tmp_path / "toy.jsonl", size=6))
    config = resolve_config(TOY_CONFIG, None, [])
    out = tmp_path / "run"
    with Specs(config) as specs:
        run_bench(specs, bench_spec(config, "toy", problems, limit=None, sample_seed=0), out,
                  progress=False)  # fmt: skip
    return out


def test_a_bench_run_is_replayed_problem_by_problem(tmp_path: Path, toy_run: Path) -> None:
    table = CostTable.load(linear_table(tmp_path))
    result = replay_run(toy_run, table, prompt_tokens=64)
    assert result["problems"] == 6 and result["steps"] > 6
    assert result["modelled_s"] == pytest.approx(sum(result["phases_s"].values()))
    assert result["phases_s"]["draft_generate"] > 0 and result["phases_s"]["prm_score"] == 0
    assert 0.0 <= result["draft_acceptance"] <= 1.0
    assert result["measured_s"] == pytest.approx(sum(m for _, m in result["per_problem"].values()))


def test_the_modelled_ratio_follows_the_acceptance_rate(tmp_path: Path) -> None:
    table = CostTable.load(linear_table(tmp_path))
    ratio = speculation_ratio(table, [0.0, 1.0], n=4, step_tokens=40, steps=3, prompt_tokens=100)
    prefixes = [100 + 40 * k for k in range(3)]
    target = sum(exact("target_generate", 4, 40, p) for p in prefixes)
    overhead = sum(
        exact("draft_generate", 4, 40, p) + exact("target_verify", 4, 40, p) for p in prefixes
    )
    assert ratio[1.0] == pytest.approx(overhead / target)
    assert ratio[0.0] == pytest.approx((overhead + target) / target)


def test_specs_replay_prints_the_comparison(
    tmp_path: Path, toy_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    costs = linear_table(tmp_path)
    assert run(["replay", str(toy_run), "--costs", str(costs), "--prompt-tokens", "64"]) == 0
    out = capsys.readouterr().out
    assert "modelled / measured" in out and "acceptance 100%" in out
    assert run(["replay", str(toy_run), "--costs", str(tmp_path / "none.json")]) == 2


@pytest.mark.transformers
@pytest.mark.slow
def test_the_step_cost_script_measures_a_tiny_table(tmp_path: Path, toy_run: Path) -> None:
    pytest.importorskip("transformers")
    out = tmp_path / "tiny.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_step_costs.py"), "--tiny", "--repeats", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = json.loads(out.read_text())
    assert table["format"] == "specs-step-costs/1" and table["source"] == "measured"
    ops = {e["op"] for e in table["entries"]}
    assert ops == {"draft_generate", "target_generate", "target_verify", "prm_score"}
    assert len(table["entries"]) == 4 * 2 * 2 * 2 and all(
        e["seconds"] > 0 for e in table["entries"]
    )
    generated = [e for e in table["entries"] if e["op"].endswith("generate")]
    assert all(e["generated_tokens"] == e["n"] * e["L"] for e in generated)  # fixed lengths
    assert replay_run(toy_run, CostTable.load(out))["modelled_s"] > 0

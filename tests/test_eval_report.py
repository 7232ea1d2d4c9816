"""Reports from toy-backend runs: the markdown table, paired differences, and both PNG plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from specs_core import Specs
from specs_core.errors import InvalidInputError
from specs_core.eval.report import latency_ratio, load_run, pareto_front, write_report
from specs_core.eval.runner import run_bench
from specs_core.eval.sweep import bench_spec
from specs_core.resolution import resolve_config

from eval_support import TOY_CONFIG, toy_problems, write_toy_dataset

pytest.importorskip("math_verify", reason="grading needs the eval extra (math-verify)")
pytest.importorskip("matplotlib", reason="plots need the eval extra (matplotlib)")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three toy runs on the same 12 problems: SPECS at two thresholds and target beam search."""
    root = tmp_path_factory.mktemp("runs")
    problems = toy_problems(write_toy_dataset(root / "toy.jsonl", size=12))
    dirs = {}
    for name, policy, overrides in [
        ("beam", "beam_search", []),
        ("specs-tau3", None, ["policy.tau_acc=3"]),
        ("specs-tau7", None, []),
    ]:
        config = resolve_config(TOY_CONFIG, policy, overrides)
        spec = bench_spec(config, "toy", problems, limit=None, sample_seed=0)
        with Specs(config) as specs:
            run_bench(specs, spec, root / name, progress=False)
        dirs[name] = root / name
    return dirs


def _table_row(text: str, name: str) -> list[str]:
    line = next(li for li in text.splitlines() if li.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_markdown_compares_runs_against_the_baseline(runs: dict[str, Path]) -> None:
    text = write_report(list(runs.values()), baseline=runs["beam"])
    header = next(li for li in text.splitlines() if li.startswith("| run |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    base = load_run(runs["beam"]).summary
    for name in ("specs-tau3", "specs-tau7"):
        cells = dict(zip(columns, _table_row(text, name), strict=True))
        summary = load_run(runs[name]).summary
        assert cells["policy"] == "specs" and cells["n"] == "12"
        ratio = summary["latency_s"]["mean"] / base["latency_s"]["mean"]
        assert cells["latency ratio"] == f"{ratio:.2f}× (n=12)"
        assert cells["median per-problem ratio"].endswith("×")
        assert cells["accuracy (95% CI)"].startswith(f"{100 * summary['accuracy']:.1f}%")
        diff = 100 * (summary["accuracy"] - base["accuracy"])
        assert cells["Δ accuracy vs baseline (95% CI; p)"].startswith(f"{diff:+.1f} pp [")
        assert cells["Δ accuracy vs baseline (95% CI; p)"].endswith("(n=12)")
        assert cells["draft-step share"].endswith("%")
    beam = dict(zip(columns, _table_row(text, "beam"), strict=True))
    assert beam["latency ratio"] == "1.00× (n=12)"
    assert beam["median per-problem ratio"] == "1.00×"
    assert beam["Δ accuracy vs baseline (95% CI; p)"] == "baseline"
    assert beam["draft-step share"] == "0.0%" and beam["acceptance rate"] == "–"
    assert "## Mean latency per phase (s)" in text and "## Tokens per problem" in text


def test_paired_difference_uses_only_shared_problems(runs: dict[str, Path], tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    lines = (runs["specs-tau3"] / "results.jsonl").read_text().splitlines(keepends=True)
    (partial / "results.jsonl").write_text("".join(lines[:5]))
    meta = json.loads((runs["specs-tau3"] / "run.json").read_text())
    (partial / "run.json").write_text(json.dumps(meta))
    text = write_report([runs["beam"], partial])
    cells = _table_row(text, "partial")
    assert cells[3] == "5/12 (incomplete)"
    assert cells[7].endswith("(n=5)")  # the latency ratio
    assert cells[9].endswith("(n=5)")  # the accuracy difference


def _write_rows(path: Path, latencies: dict[str, float | None]) -> Path:
    """A run directory whose problems took the given seconds (``None``: the problem raised)."""
    path.mkdir()
    rows = [
        {
            "id": pid,
            "dataset": "toy",
            "policy": "beam_search",
            "correct": seconds is not None,
            "error": None if seconds is not None else "BackendError: the engine crashed",
            "latency_s": {} if seconds is None else {"total": seconds},
        }
        for pid, seconds in latencies.items()
    ]
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_latency_ratio_is_paired_on_problems_both_runs_finished(tmp_path: Path) -> None:
    base = _write_rows(tmp_path / "base", {"a": 10.0, "b": 10.0, "c": 100.0, "d": 5.0})
    # "d" raised in the run and "e" is not in the baseline: both are left out of the ratio.
    run = _write_rows(tmp_path / "mixed", {"a": 5.0, "b": 8.0, "c": 200.0, "d": None, "e": 1.0})
    ratio = latency_ratio(load_run(run), load_run(base))
    assert ratio is not None and ratio.n == 3
    assert ratio.total == pytest.approx(213.0 / 120.0)  # the long problem dominates the total
    assert ratio.median == pytest.approx(0.8)  # the per-problem ratios are 0.5, 0.8 and 2.0
    cells = _table_row(write_report([base, run]), "mixed")
    assert cells[7:9] == ["1.77× (n=3)", "0.80×"]
    lone = _write_rows(tmp_path / "lone", {"z": 1.0})
    assert latency_ratio(load_run(lone), load_run(base)) is None
    assert _table_row(write_report([base, lone]), "lone")[7:9] == ["–", "–"]


def test_both_plots_are_written_from_results_only(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report" / "report.md"
    plots = tmp_path / "report" / "plots"
    text = write_report(list(runs.values()), out=out, plots=plots)
    assert out.read_text() == text
    from matplotlib.image import imread

    for name in ("accuracy_vs_latency.png", "latency_by_phase.png"):
        path = plots / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        height, width = imread(path).shape[:2]
        assert height > 200 and width > 400
        assert f"(plots/{name})" in text


def test_report_needs_no_model_or_plugin(runs: dict[str, Path], tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from specs_core.eval.report import write_report\n"
        f"write_report({[str(p) for p in runs.values()]!r}, plots={str(tmp_path)!r})\n"
        "loaded = [m for m in ('specs_core.testing.toy', 'specs_core.policies', 'llama_cpp',"
        " 'torch', 'transformers') if m in sys.modules]\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "accuracy_vs_latency.png").is_file()


def test_a_sweep_directory_expands_to_its_runs(runs: dict[str, Path]) -> None:
    text = write_report([runs["beam"].parent])
    for name in runs:
        assert f"| {name} |" in text
    assert "Baseline: `beam`" in text  # sorted order: the first run is the baseline


def test_a_directory_without_runs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"holds no results\.jsonl"):
        write_report([tmp_path])


def test_pareto_front() -> None:
    # (latency, accuracy): the second is slower and worse than the first.
    points = [(1.0, 0.5), (2.0, 0.4), (3.0, 0.7), (0.5, 0.2), (3.0, 0.7)]
    assert pareto_front(points) == [3, 0, 2, 4]

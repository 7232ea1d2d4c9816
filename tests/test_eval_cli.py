"""The bench, sweep and report commands, and a real ``specs bench`` process killed and resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from specs_core.eval.cli import add_commands
from typer.testing import CliRunner

from eval_support import TOY_CONFIG, toy_cli_args, write_toy_dataset

pytest.importorskip("math_verify", reason="grading needs the eval extra (math-verify)")
pytest.importorskip("matplotlib", reason="plots need the eval extra (matplotlib)")
pytest.importorskip("tqdm", reason="progress bars need the eval extra (tqdm)")

SPECS_MAIN = "from specs_core.cli import main; main()"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    add_commands(app)
    return app


def _ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()]


def test_bench_command_shows_progress_and_writes_the_run(app: typer.Typer, tmp_path: Path) -> None:
    data = write_toy_dataset(tmp_path / "toy.jsonl", size=6)
    out = tmp_path / "run"
    args = ["bench", *toy_cli_args(data), "--config", str(TOY_CONFIG), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "toy specs: 6/6 done, accuracy" in result.stdout
    assert "acc " in result.stderr and "lat " in result.stderr  # the progress bar's postfix
    assert len(_ids(out)) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "specs" and summary["dataset"] == "toy"


def test_bench_on_a_shipped_set_subset_with_another_policy(
    app: typer.Typer, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = [
        "bench", "--dataset", "gsm8k", "--limit", "3", "--sample-seed", "7",
        "--policy", "best_of_n", "--set", "policy.n=2",
        "--config", str(TOY_CONFIG), "--out", str(out), "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    from specs_core.eval.datasets import load_dataset, select_subset

    expected = [p.id for p in select_subset(load_dataset("gsm8k"), 3, seed=7)]
    assert _ids(out) == expected
    run = json.loads((out / "run.json").read_text())
    assert (run["policy"], run["limit"], run["sample_seed"]) == ("best_of_n", 3, 7)
    assert "name: best_of_n" in (out / "config.yaml").read_text()


def test_sweep_runs_one_bench_per_value_then_reports(app: typer.Typer, tmp_path: Path) -> None:
    data = write_toy_dataset(tmp_path / "toy.jsonl", size=6)
    out = tmp_path / "sweep"
    args = [
        "sweep", *toy_cli_args(data), "--config", str(TOY_CONFIG),
        "--param", "policy.tau_acc", "--values", "3,7,inf", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for value in ("3", "7", "inf"):
        run = out / f"tau_acc={value}"
        assert len(_ids(run)) == 6
        config = (run / "config.yaml").read_text()
        assert f"tau_acc: {'.inf' if value == 'inf' else float(value)}" in config
    report = (out / "report.md").read_text()
    assert "Baseline: `tau_acc=3`" in report and "| tau_acc=inf | specs |" in report
    assert (out / "plots" / "accuracy_vs_latency.png").is_file()
    assert (out / "plots" / "latency_by_phase.png").is_file()
    # tau_acc = inf never accepts a draft: SPECS is target search.
    summary = json.loads((out / "tau_acc=inf" / "summary.json").read_text())
    assert summary["steps"]["accepted_draft_steps"] == 0
    # A second sweep resumes every run: nothing is solved again.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len(_ids(out / "tau_acc=7")) == 6


def test_sweep_checks_every_value_before_running(app: typer.Typer, tmp_path: Path) -> None:
    data = write_toy_dataset(tmp_path / "toy.jsonl", size=3)
    out = tmp_path / "sweep"
    args = [
        "sweep", *toy_cli_args(data), "--config", str(TOY_CONFIG),
        "--param", "tau_sw", "--values", "0.5,banana", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "tau_sw" in str(result.exception)
    assert not (out / "tau_sw=0.5").exists()


def test_report_command_prints_markdown(app: typer.Typer, tmp_path: Path) -> None:
    data = write_toy_dataset(tmp_path / "toy.jsonl", size=3)
    out = tmp_path / "run"
    bench = ["bench", *toy_cli_args(data), "--config", str(TOY_CONFIG), "--out", str(out)]
    assert CliRunner().invoke(app, [*bench, "--no-progress"]).exit_code == 0
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Benchmark report")
    assert "| run |" in result.stdout


def test_a_changed_config_on_resume_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from specs_core.cli import run

    data = write_toy_dataset(tmp_path / "toy.jsonl", size=2)
    base = ["bench", *toy_cli_args(data), "--config", str(TOY_CONFIG), "--out", str(tmp_path / "r")]
    assert run([*base, "--no-progress"]) == 0
    capsys.readouterr()
    assert run([*base, "--no-progress", "--set", "policy.tau_acc=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--force" in err and "\n" not in err


def test_max_problems_advances_a_run_in_slices(tmp_path: Path) -> None:
    from specs_core.cli import run

    data = write_toy_dataset(tmp_path / "toy.jsonl", size=5)
    out = tmp_path / "run"
    base = ["bench", *toy_cli_args(data), "--config", str(TOY_CONFIG), "--out", str(out)]
    base += ["--no-progress", "--max-problems", "2"]
    assert run(base) == 0
    first = _ids(out)
    assert len(first) == 2
    assert json.loads((out / "summary.json").read_text())["complete"] is False
    assert run(base) == 0 and run(base) == 0
    ids = _ids(out)
    assert ids[:2] == first and len(ids) == 5 and len(set(ids)) == 5
    assert json.loads((out / "summary.json").read_text())["complete"] is True
    assert run(base) == 0 and _ids(out) == ids


@pytest.mark.parametrize("option", ["--max-problems", "--until"])
def test_a_problem_count_below_one_is_a_usage_error(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from specs_core.cli import run

    data = write_toy_dataset(tmp_path / "toy.jsonl", size=2)
    args = ["bench", *toy_cli_args(data), "--config", str(TOY_CONFIG), "--out", str(tmp_path)]
    assert run([*args, option, "0"]) == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()


def test_until_ends_a_turn_at_a_count_and_a_run_left_behind_catches_up(tmp_path: Path) -> None:
    from specs_core.cli import run

    data = write_toy_dataset(tmp_path / "toy.jsonl", size=6)
    out = tmp_path / "sweep"
    base = [
        "sweep", *toy_cli_args(data), "--config", str(TOY_CONFIG), "--no-progress",
        "--param", "policy.tau_acc", "--values", "3,7", "--out", str(out),
    ]  # fmt: skip
    assert run([*base, "--until", "2"]) == 0
    assert run([*base, "--until", "2"]) == 0  # the same turn again solves nothing
    assert [len(_ids(out / v)) for v in ("tau_acc=3", "tau_acc=7")] == [2, 2]
    # One run is left behind (a crash mid-turn): the next turn brings both to the same count.
    one = out / "tau_acc=7" / "results.jsonl"
    one.write_text(one.read_text().splitlines(keepends=True)[0])
    assert run([*base, "--until", "4"]) == 0
    ids = [_ids(out / v) for v in ("tau_acc=3", "tau_acc=7")]
    assert ids[0] == ids[1] and len(ids[0]) == 4 and len(set(ids[0])) == 4
    assert json.loads((out / "tau_acc=7" / "summary.json").read_text())["n"] == 4


@pytest.mark.slow
def test_a_killed_bench_process_resumes_with_each_problem_exactly_once(tmp_path: Path) -> None:
    data = write_toy_dataset(tmp_path / "toy.jsonl", size=12)
    out = tmp_path / "run"
    command = [
        sys.executable, "-c", SPECS_MAIN, "bench", *toy_cli_args(data),
        "--config", str(TOY_CONFIG), "--out", str(out), "--no-progress",
        # The toy sleeps per token, so a problem takes a good fraction of a second.
        "--set", "target.ms_per_token=3", "--set", "draft.ms_per_token=3",
    ]  # fmt: skip
    results = out / "results.jsonl"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not results.exists() or results.read_text().count("\n") < 3:
            if process.poll() is not None:
                pytest.fail(f"bench ended before it could be killed: {process.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("bench wrote fewer than 3 rows in 120 s")
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = len(_ids(out))
    assert 3 <= killed_at < 12, "the kill must land mid-run"
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    ids = _ids(out)
    assert len(ids) == 12 and len(set(ids)) == 12
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 12 and summary["complete"] is True

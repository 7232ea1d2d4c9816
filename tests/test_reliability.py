"""Reliability under interruption and misuse: each test reproduces a failure a user met."""

from __future__ import annotations

import dataclasses
import gzip
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from specs_core import Specs
from specs_core.cli import run
from specs_core.errors import ConfigError
from specs_core.eval.datasets import Problem
from specs_core.eval.runner import BenchSpec, fingerprint, run_bench

from eval_support import toy_problems, write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "examples" / "configs" / "toy.yaml")


def _interrupting(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_during_solve_exits_130_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Specs, "solve", _interrupting)
    assert run(["solve", "What is 2 + 3?", "--config", TOY]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_a_reward_model_raising_keyboard_interrupt_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from specs_core.testing.toy_reward import ToyRewardModel

    monkeypatch.setattr(ToyRewardModel, "score", _interrupting)
    monkeypatch.setattr(ToyRewardModel, "score_last", _interrupting)
    assert run(["solve", "What is 2 + 3?", "--config", TOY]) == 130
    assert "interrupted" in capsys.readouterr().err


def _rows(path: Path) -> list[dict[str, object]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _bench_cmd(out: Path, limit: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "specs_core",
        "bench",
        "--dataset",
        "gsm8k",
        "--limit",
        str(limit),
        "--config",
        TOY,
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def test_sigint_during_bench_exits_130_keeps_the_rows_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # 20 ms a generated token: a problem takes a few seconds, so the signal lands mid-run
    cmd = _bench_cmd(out, 6, "--set", "target.ms_per_token=20")
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell running the suite in the background ignores SIGINT, and children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not _rows(out / "results.jsonl") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rows(out / "results.jsonl"), "no problem finished in time"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    saved = len(_rows(out / "results.jsonl"))
    assert 1 <= saved < 6
    assert f"{saved} finished problems are saved in {out}" in err
    assert err.rstrip().endswith("interrupted")
    resumed = subprocess.run(
        [*cmd, "--until", str(saved + 1)], capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    ids = [row["id"] for row in _rows(out / "results.jsonl")]
    assert len(ids) == saved + 1 == len(set(ids))


def test_a_second_bench_on_the_same_out_is_refused_and_rows_stay_unique(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen(
        _bench_cmd(out, 4, "--set", "target.ms_per_token=20"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(
        _bench_cmd(out, 4, "--set", "target.ms_per_token=20"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2
    assert "is being written by another specs bench or sweep process" in second.stderr
    ids = [row["id"] for row in _rows(out / "results.jsonl")]
    assert len(ids) == 4 == len(set(ids))
    again = subprocess.run(
        _bench_cmd(out, 4, "--set", "target.ms_per_token=20"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "4/4 done" in again.stdout  # the lock went with the process


def test_bench_neither_overwrites_nor_deletes_a_users_config_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    mine = out / "config.yaml"
    mine.write_text("# my own notes\npolicy: {name: specs}\n")
    args = ["bench", "--dataset", "gsm8k", "--limit", "1", "-c", TOY, "--no-progress"]
    for extra in ([], ["--force"]):
        assert run([*args, "--out", str(out), *extra]) == 2
        assert "holds a config.yaml that no specs bench run wrote" in capsys.readouterr().err
        assert mine.read_text() == "# my own notes\npolicy: {name: specs}\n"
    assert not (out / "results.jsonl").exists()


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from specs_core import __version__

    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"specs {__version__}"


def test_solve_dash_reads_the_question_from_stdin() -> None:
    cmd = [sys.executable, "-m", "specs_core", "solve", "-", "--config", TOY, "--json"]
    done = subprocess.run(cmd, input=b"What is 2 + 3?\n", capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["question"] == "What is 2 + 3?"
    bad = subprocess.run(cmd, input=b"\xff\xfe 2 + 3", capture_output=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.decode().startswith("error: the question on standard input is not UTF-8")


def _bomb(levels: int) -> str:
    """A YAML alias bomb: ``9 ** levels`` values from a few hundred bytes."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text", [_bomb(9), _bomb(5), "draft: &a [*a]\n"], ids=["9^9", "9^5", "self-reference"]
)
def test_yaml_alias_bombs_are_refused_at_once(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bomb.yaml"
    config.write_text(text)
    start = time.monotonic()
    assert run(["solve", "What is 2 + 3?", "--config", str(config)]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert "through YAML aliases" in err and len(err) < 500
    assert run(["solve", "What is 2 + 3?", "-c", TOY, "--set", f"policy.n={_bomb(9)}"]) == 2
    assert "--set policy.n expands to more than" in capsys.readouterr().err


def test_yaml_anchors_within_reason_still_work(tmp_path: Path) -> None:
    config = tmp_path / "anchors.yaml"
    config.write_text(
        "draft: &toy {backend: toy, variant: draft}\n"
        "target: {<<: *toy, variant: target}\n"
        "reward: {name: toy}\npolicy: {name: specs, n: 2}\n"
    )
    assert run(["solve", "What is 2 + 3?", "--config", str(config), "--json"]) == 0


def test_a_huge_bad_value_gives_a_short_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "big.yaml"
    config.write_text("policy: {name: specs, n: [" + ", ".join(["123456789"] * 5000) + "]}\n")
    assert run(["solve", "What is 2 + 3?", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "policy.n" in err and "more characters" in err and len(err) < 1000


def test_a_config_that_is_not_utf8_gives_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("policy: {name: specs}  # caf\u00e9\n".encode("latin-1"))
    assert run(["solve", "What is 2 + 3?", "--config", str(config)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def _remote_spec(problems: list[Problem], **target: Any) -> BenchSpec:
    """A run whose recorded config names a remote target; a toy model solves it."""
    config = {
        "target": {"backend": "openai", "url": "http://127.0.0.1:9", "model": "m", **target},
        "policy": {"name": "greedy"},
    }
    return BenchSpec(dataset="toy", problems=problems, policy="greedy", config=config)


def test_an_api_key_never_reaches_the_run_directory(tmp_path: Path) -> None:
    problems = toy_problems(write_toy_dataset(tmp_path / "toy.jsonl", size=2))
    out = tmp_path / "run"
    with Specs.from_config(TOY) as specs:
        run_bench(specs, _remote_spec(problems, api_key="sk-do-not-store"), out, progress=False)
    written = [p for p in out.iterdir() if p.is_file()]
    assert {p.name for p in written} >= {"config.yaml", "run.json", "results.jsonl"}
    for path in written:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        assert b"sk-do-not-store" not in data, path.name
    assert "url: http://127.0.0.1:9" in (out / "config.yaml").read_text()


def test_connection_options_do_not_stop_a_run_from_resuming(tmp_path: Path) -> None:
    problems = toy_problems(write_toy_dataset(tmp_path / "toy.jsonl", size=3))
    out = tmp_path / "run"
    with Specs.from_config(TOY) as specs:
        run_bench(specs, _remote_spec(problems[:2], timeout_s=5), out, progress=False)
        changed = _remote_spec(problems[:2], timeout_s=600, api_key="k2", max_retries=9)
        assert fingerprint(changed) == fingerprint(_remote_spec(problems[:2], timeout_s=5))
        summary = run_bench(specs, changed, out, progress=False)
        assert summary["n"] == 2  # resumed: nothing solved twice
        with pytest.raises(ConfigError, match="different config"):
            run_bench(specs, _remote_spec(problems[:2], model="other"), out, progress=False)
    # a run written before connection options left the identity resumes too
    legacy = tmp_path / "legacy"
    old = _remote_spec(problems, timeout_s=5)
    assert fingerprint(old, legacy=True) != fingerprint(old)
    with Specs.from_config(TOY) as specs:
        run_bench(specs, _remote_spec(problems[:1], timeout_s=5), legacy, progress=False)
        meta = json.loads((legacy / "run.json").read_text())
        meta["fingerprint"] = fingerprint(_remote_spec(problems[:1], timeout_s=5), legacy=True)
        (legacy / "run.json").write_text(json.dumps(meta))
        assert (
            run_bench(specs, _remote_spec(problems[:1], timeout_s=5), legacy, progress=False)["n"]
            == 1
        )


def test_escape_sequences_from_plugins_never_reach_the_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import specs_core.cli as cli
    from specs_core import hookimpl
    from specs_core.plugins import build_registry

    class Loud:
        __name__ = "loud\x1b]0;owned\x07"

        @hookimpl
        def register_backends(self, register: Any) -> None:
            register("loud", lambda options: None, description="clears \x1b[2J the screen")
            raise RuntimeError("and fails \x1b[31min red")

    registry = build_registry(builtins=(), entry_points=False, extra_plugins=[Loud()])
    monkeypatch.setattr(cli, "get_registry", lambda: registry)
    assert run(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b" in out


def test_escape_sequences_in_a_models_answer_are_shown_not_obeyed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_solve = Specs.solve

    def hostile(self: Specs, question: str, **kwargs: Any) -> Any:
        result = real_solve(self, question, **kwargs)
        return dataclasses.replace(result, text="\x1b[2J" + result.text, answer="5\x1b[8m")

    monkeypatch.setattr(Specs, "solve", hostile)
    assert run(["solve", "What is 2 + 3?", "--config", TOY]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J" in out and "5\\x1b[8m" in out


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("latency_s", "slow", "field 'latency_s' is str, expected dict"),
        ("correct", "yes", "field 'correct' is str, expected bool or null"),
        ("draft_steps", True, "field 'draft_steps' is bool, expected int"),
        ("latency_s", {"total": "1s"}, "latency_s.total is str, expected a number"),
    ],
)
def test_a_malformed_row_field_is_a_clear_error_in_bench_and_report(
    tmp_path: Path, field: str, value: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["bench", "--dataset", "gsm8k", "--limit", "3", "-c", TOY, "--no-progress"]
    assert run([*args, "--out", str(out), "--until", "2"]) == 0
    rows = _rows(out / "results.jsonl")
    rows[0][field] = value
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert run([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"results.jsonl:1 is not a result row ({message})" in err
    assert run(["report", str(out)]) == 2
    assert message in capsys.readouterr().err


def test_questions_and_data_files_that_are_not_utf8_give_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    undecodable = b"What is 2 + 3? caf\xe9".decode("utf-8", errors="surrogateescape")  # as argv
    assert run(["solve", undecodable, "--config", TOY]) == 2
    assert "the question is not valid text" in capsys.readouterr().err
    data = tmp_path / "latin1.jsonl"
    data.write_bytes('{"question": "caf\u00e9?", "answer": "1"}\n'.encode("latin-1"))
    args = ["bench", "--dataset", "gsm8k", "--data-file", str(data), "-c", TOY]
    assert run([*args, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "is not UTF-8 text (byte" in capsys.readouterr().err


def test_the_installed_distribution_is_ours_not_the_registrys_specs() -> None:
    import importlib.metadata

    from specs_core.errors import DISTRIBUTION, install_hint

    ours = importlib.metadata.distribution(DISTRIBUTION)
    scripts = {ep.name: ep.value for ep in ours.entry_points if ep.group == "console_scripts"}
    assert scripts["specs"].startswith("specs_core.")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("specs")  # neither a stale install nor the placeholder
    assert install_hint("eval") == "pip install 'specs-tts[eval]'"


def _bench_rows(tmp_path: Path, name: str, *extra: str) -> list[dict[str, Any]]:
    out = tmp_path / name
    args = ["bench", "--dataset", "gsm8k", "--limit", "2", "-c", TOY, "--no-progress"]
    assert run([*args, "--out", str(out), *extra]) == 0
    return _rows(out / "results.jsonl")


def test_a_problem_timeout_stops_the_search_and_keeps_its_steps(tmp_path: Path) -> None:
    slow = ["--set", "target.ms_per_token=10", "--set", "draft.ms_per_token=10"]
    free = _bench_rows(tmp_path, "free", *slow)
    cut = _bench_rows(tmp_path, "cut", *slow, "--problem-timeout", "0.5")
    for whole, row in zip(free, cut, strict=True):
        assert row["stop_reason"] == "time_limit" and row["finished"] is False
        assert row["error"] is None and row["text"]
        assert 0 < len(row["solution_steps"]) < len(whole["solution_steps"])
        assert row["latency_s"]["total"] < 0.5 + 2.0  # within one model call of the limit


def test_a_token_budget_stops_the_search(tmp_path: Path) -> None:
    rows = _bench_rows(tmp_path, "tokens", "--problem-max-tokens", "60")
    for row in rows:
        assert row["stop_reason"] == "token_limit" and row["solution_steps"]
        generated = sum(t["generated"] for t in row["tokens"].values())
        assert 60 <= generated < 60 + 4 * 64  # at most one call (n=4 steps) past the budget


def test_a_budget_is_part_of_a_runs_identity_and_none_keeps_old_runs(tmp_path: Path) -> None:
    from specs_core.search import Budget

    problems = toy_problems(write_toy_dataset(tmp_path / "toy.jsonl", size=2))
    plain = _remote_spec(problems)
    assert fingerprint(dataclasses.replace(plain, budget=Budget(seconds=5))) != fingerprint(plain)
    assert fingerprint(plain) == fingerprint(plain, legacy=True)  # no connection options


def test_bench_progress_shows_the_steps_of_the_problem_in_flight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run(["bench", "--dataset", "gsm8k", "--limit", "1", "-c", TOY, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    problem = _rows(out / "results.jsonl")[0]["id"]
    assert f"{problem}: step 1 by target" in err


def test_plots_say_what_they_show_and_tell_policies_apart(tmp_path: Path) -> None:
    from specs_core.eval.report import (
        _label,
        _plot_title,
        _policy_styles,
        load_run,
        plot_accuracy_latency,
        plot_latency_phases,
    )

    sweep = tmp_path / "sweep"
    args = ["--dataset", "gsm8k", "--limit", "2", "-c", TOY, "--no-progress"]
    assert run(["sweep", *args, "--param", "tau_acc", "--values", "3,5", "--out", str(sweep)]) == 0
    assert run(["bench", *args, "--policy", "beam_search", "--out", str(tmp_path / "beam")]) == 0
    runs = [
        load_run(sweep / "tau_acc=3"),
        load_run(sweep / "tau_acc=5"),
        load_run(tmp_path / "beam"),
    ]
    assert [_label(r) for r in runs] == [
        "specs · tau_acc=3",
        "specs · tau_acc=5",
        "beam_search · beam",
    ]
    styles = _policy_styles(runs)
    assert styles["specs"] != styles["beam_search"]
    assert (
        _plot_title("Accuracy vs latency", runs) == "Accuracy vs latency: gsm8k, 2 problems, n = 4"
    )
    for plot in (plot_accuracy_latency, plot_latency_phases):
        assert plot(runs, tmp_path / f"{plot.__name__}.png").stat().st_size > 10_000


def test_a_solver_written_before_on_step_still_benches(tmp_path: Path) -> None:
    class OldSolver:
        def __init__(self, specs: Specs) -> None:
            self.specs = specs

        def solve(self, question: str, *, policy: Any = None, options: Any = None) -> Any:
            return self.specs.solve(question, policy=policy, options=options)

    problems = toy_problems(write_toy_dataset(tmp_path / "toy.jsonl", size=2))
    spec = BenchSpec(dataset="toy", problems=problems, policy="specs")
    with Specs.from_config(TOY) as specs:
        summary = run_bench(OldSolver(specs), spec, tmp_path / "run", progress=True)
    assert summary["n"] == 2 and summary["n_errors"] == 0


def test_a_cancelled_search_stops_before_its_next_model_call() -> None:
    import threading

    from specs_core.search import SearchCancelled, cancellable

    event = threading.Event()
    committed: list[int] = []

    def on_step(step: Any) -> None:
        committed.append(step.index)
        event.set()  # cancel as soon as the first step is committed

    with Specs.from_config(TOY) as specs, cancellable(event), pytest.raises(SearchCancelled):
        specs.solve("What is 2 + 3?", policy="beam_search", on_step=on_step)
    assert committed == [0]


def test_a_budgets_until_event_ends_the_search_and_keeps_its_steps() -> None:
    import threading

    from specs_core.search import Budget
    from specs_core.types import StopReason

    until = threading.Event()
    with Specs.from_config(TOY) as specs:
        result = specs.solve(
            "What is 2 + 3?",
            policy="beam_search",
            on_step=lambda step: until.set(),
            budget=Budget(until=until),
        )
    assert len(result.steps) == 1 and result.stop_reason is StopReason.STOPPED

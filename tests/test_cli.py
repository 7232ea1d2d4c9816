"""The `specs` command end to end on the toy backend: JSON output, thresholds, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from specs_core.cli import run

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "examples" / "configs" / "toy.yaml")
QUESTION = "What is 7 + 9 + 4?"


def _solve_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert run(["solve", QUESTION, "--config", TOY, "--json", *args]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_solve_json_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    data = _solve_json(capsys)
    for key in ("answer", "text", "policy", "latency_s", "tokens", "steps"):
        assert key in data
    assert data["policy"] == "specs"
    assert {"total", "draft_generate", "target_generate", "target_score", "reward"} <= set(
        data["latency_s"]
    )
    assert data["tokens"] and all(u["generated"] >= 0 for u in data["tokens"].values())
    for step in data["steps"]:
        assert step["source"] in ("draft", "target")
        assert step["accepted"] in (True, False, None)
        assert isinstance(step["reward"], float)
    drafted = [s for s in data["steps"] if s["drafted"]]
    assert data["accepted_draft_steps"] == sum(s["accepted"] is True for s in drafted)
    assert data["rejected_draft_steps"] == sum(s["accepted"] is False for s in drafted)
    assert data["answer"] and data["answer"] in data["text"]


def test_tau_acc_plus_infinity_makes_no_draft_step(capsys: pytest.CaptureFixture[str]) -> None:
    data = _solve_json(capsys, "--set", "policy.tau_acc=inf")
    assert {s["source"] for s in data["steps"]} == {"target"}
    assert data["accepted_draft_steps"] == 0


def test_tau_acc_minus_infinity_drafts_every_step_after_the_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _solve_json(capsys, "--set", "policy.tau_acc=-inf", "--set", "policy.tau_sw=0")
    sources = [s["source"] for s in data["steps"]]
    assert len(sources) >= 2
    assert sources[0] == "target" and set(sources[1:]) == {"draft"}
    assert data["rejected_draft_steps"] == 0


def test_same_seed_same_result_and_other_seeds_differ(capsys: pytest.CaptureFixture[str]) -> None:
    first = _solve_json(capsys, "--set", "policy.seed=3")
    again = _solve_json(capsys, "--set", "policy.seed=3")
    assert first["text"] == again["text"] and first["steps"] == [s | {} for s in again["steps"]]
    texts = {_solve_json(capsys, "--set", f"policy.seed={s}")["text"] for s in range(6)}
    assert len(texts) > 1


def test_policy_flag_runs_a_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    data = _solve_json(capsys, "--policy", "beam_search")
    assert data["policy"] == "beam_search"
    assert {s["source"] for s in data["steps"]} == {"target"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", "   ", "--config", TOY], "question is empty"),
        (["solve", QUESTION, "--config", TOY, "--policy", "nope"], "unknown policy 'nope'"),
        (["solve", QUESTION, "--config", TOY, "--set", "policy.n=-1"], "policy.n"),
        (["solve", QUESTION, "--config", TOY, "--set", "policy.tau_accept=1"], "tau_accept"),
        (["solve", QUESTION, "--config", "missing.yaml"], "does not exist"),
        (["solve", QUESTION, "--config", TOY, "--set", "policy.n"], "section.key=value"),
        (["solve"], "Missing argument"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_console_script_exit_code_and_plugins_listing() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "specs_core", "solve", "", "--config", TOY],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: the question is empty")
    listing = subprocess.run(
        [sys.executable, "-m", "specs_core", "plugins"], capture_output=True, text=True, check=True
    )
    for name in ("specs", "beam_search", "llamacpp", "transformers", "judge", "toy"):
        assert name in listing.stdout


def test_human_output_reports_answer_phases_and_draft_steps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["solve", QUESTION, "--config", TOY]) == 0
    out = capsys.readouterr().out
    assert "answer:" in out and "latency" in out and "the draft wrote" in out


def test_human_output_keeps_latex_brackets_of_the_solution(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from specs_core import cli

    shown: list[str] = []
    real = cli._print_result

    def spy(console: Any, result: Any) -> None:
        shown.append(result.text)
        real(console, result.__class__(**{**result.__dict__, "text": r"\[ 48 + 24 = 72 \]"}))

    monkeypatch.setattr(cli, "_print_result", spy)
    assert run(["solve", QUESTION, "--config", TOY]) == 0
    assert r"\[ 48 + 24 = 72 \]" in capsys.readouterr().out


def test_solve_warns_when_specs_never_drafted_because_no_reward_passed_tau_sw(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["solve", QUESTION, "--config", TOY, "--set", "policy.tau_sw=0.9999"]) == 0
    err = capsys.readouterr().err
    assert "SPECS never drafted: no reward passed tau_sw=0.9999" in err
    assert "specs calibrate" in err
    assert run(["solve", QUESTION, "--config", TOY, "--set", "policy.tau_sw=0.3"]) == 0
    assert "never drafted" not in capsys.readouterr().err
    assert run(["solve", QUESTION, "--config", TOY, "--policy", "beam_search"]) == 0
    assert "never drafted" not in capsys.readouterr().err

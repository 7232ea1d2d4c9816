"""``specs calibrate``: tau_sw and tau_acc fitted to a reward model's traced scores, for a rate
or a precision, written into a config that loads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import typer
import yaml
from specs_core.config import load_config
from specs_core.errors import InvalidInputError
from specs_core.eval.calibrate import choose_threshold, read_step_values
from specs_core.eval.cli import add_commands
from typer.testing import CliRunner

from eval_support import TOY_CONFIG, toy_cli_args, write_toy_dataset

pytest.importorskip("math_verify", reason="grading needs the eval extra (math-verify)")


def test_a_rate_puts_the_threshold_between_the_passing_and_the_rest() -> None:
    rng = random.Random(2)
    values = [(rng.random(), rng.random() < 0.5) for _ in range(200)]
    for rate in (0.0, 0.1, 0.37, 0.5, 1.0):
        t, achieved = choose_threshold(values, rate=rate)
        passing = sum(1 for v, _ in values if v > t)
        assert passing == round(rate * 200) and achieved["rate"] == passing / 200


def test_a_precision_takes_the_lowest_threshold_that_reaches_it() -> None:
    # values 0..99; problems above 60 solved, below 40 failed, between mixed (every other)
    values = [(float(v), v > 60 or (40 <= v <= 60 and v % 2 == 0)) for v in range(100)]
    t, achieved = choose_threshold(values, precision=0.9, min_steps=5)
    assert achieved["precision"] >= 0.9
    lower = [(v, y) for v, y in values if v <= t]
    # one step lower would fall under the precision asked
    v_next = max(v for v, _ in lower)
    passing = [y for v, y in values if v >= v_next]
    assert sum(passing) / len(passing) < 0.9
    with pytest.raises(InvalidInputError, match="best is"):
        choose_threshold([(1.0, False)] * 20, precision=0.5)
    with pytest.raises(InvalidInputError, match="exactly one goal"):
        choose_threshold(values, rate=0.5, precision=0.5)


def _bench(app: typer.Typer, data: Path, out: Path, *extra: str) -> None:
    args = ["bench", *toy_cli_args(data), "-c", str(TOY_CONFIG), "-o", str(out), "--no-progress"]
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    add_commands(app)
    return app


def test_calibrate_writes_a_config_whose_thresholds_pass_the_asked_shares(
    app: typer.Typer, tmp_path: Path
) -> None:
    data = write_toy_dataset(tmp_path / "toy.jsonl", size=20)
    forced = tmp_path / "forced"  # SPECS drafting every step it can: traces every draft's score
    _bench(app, data, forced, "-s", "policy.tau_sw=-inf", "-s", "policy.tau_acc=-inf")
    beam = tmp_path / "beam"
    _bench(app, data, beam, "-p", "beam_search")
    out = tmp_path / "calibrated.yaml"
    args = ["calibrate", str(forced), str(beam), "-c", str(TOY_CONFIG), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--switch-rate", "0.3", "--accept-rate", "0.6"])
    assert result.exit_code == 0, result.output
    assert "tau_sw = " in result.stdout and "tau_acc = " in result.stdout
    written = yaml.safe_load(out.read_text())
    config = load_config(out)
    assert config.policy.options()["tau_sw"] == written["policy"]["tau_sw"]
    assert written["calibration"]["tau_sw"]["switch_rate"] == 0.3
    assert written["calibration"]["reward"]["name"] == "toy"
    # the thresholds pass the asked shares of the traced steps they were fitted on
    steps = read_step_values([forced, beam], written["calibration"]["reward"], beta=10.0)
    tau_sw, tau_acc = written["policy"]["tau_sw"], written["policy"]["tau_acc"]
    switch = sum(v > tau_sw for v, _ in steps.target) / len(steps.target)
    accept = sum(v > tau_acc for v, _ in steps.draft) / len(steps.draft)
    assert switch == pytest.approx(0.3, abs=0.02) and accept == pytest.approx(0.6, abs=0.02)
    # and a SPECS run with them accepts drafts on some steps, not all (the path shifts)
    check = tmp_path / "check"
    result = CliRunner().invoke(
        app,
        ["bench", *toy_cli_args(data), "-c", str(out), "-o", str(check), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (check / "results.jsonl").read_text().splitlines()]
    accepted = sum(r["accepted_draft_steps"] for r in rows)
    rejected = sum(r["rejected_draft_steps"] for r in rows)
    assert accepted > 0 and rejected > 0


def test_calibrate_refuses_runs_of_another_reward_model_or_without_traces(
    app: typer.Typer, tmp_path: Path
) -> None:
    data = write_toy_dataset(tmp_path / "toy.jsonl", size=3)
    other = tmp_path / "other"
    _bench(app, data, other, "-s", "reward.salt=x")
    args = ["calibrate", str(other), "-c", str(TOY_CONFIG), "-o", str(tmp_path / "c.yaml")]
    result = CliRunner().invoke(app, [*args, "--switch-rate", "0.5"])
    assert result.exit_code != 0 and "thresholds fit one reward model" in str(result.exception)
    (other / "traces.jsonl.gz").unlink()
    args = ["calibrate", str(other), "-c", str(TOY_CONFIG), "-s", "reward.salt=x"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "c.yaml"), "--switch-rate", "1"])
    assert result.exit_code != 0 and "no traces.jsonl.gz" in str(result.exception)
    _bench(app, data, tmp_path / "beam", "-p", "beam_search")
    args = ["calibrate", str(tmp_path / "beam"), "-c", str(TOY_CONFIG), "-o", str(tmp_path / "c")]
    result = CliRunner().invoke(app, [*args, "--accept-rate", "0.5"])
    assert result.exit_code != 0 and "no drafted step" in str(result.exception)
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "nothing to calibrate" in str(result.exception)

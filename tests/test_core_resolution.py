"""One policy resolution: the same switch gives the same options from every caller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from specs_core import Specs
from specs_core.cli import run
from specs_core.errors import ConfigError
from specs_core.eval.datasets import AnswerFormat, Problem
from specs_core.eval.sweep import RunOptions, bench_spec, run_sweep
from specs_core.resolution import resolve_config, resolve_policy

from specs_langchain import SpecsRunnable

QUESTION = "Tom has 4 apples and buys 9 more. How many now?"

CONFIG = {
    "draft": {"backend": "toy", "variant": "draft"},
    "target": {"backend": "toy", "variant": "target"},
    "reward": {"name": "toy"},
    "policy": {
        "name": "specs",
        "n": 3,
        "temperature": 0.5,
        "seed": 2,
        "tau_acc": 4.0,
        "max_steps": 6,
    },
}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    return path


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_policy_switch_keeps_the_options_it_accepts_for_every_caller(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = resolve_config(config_file)
    expected = resolve_policy(config, "beam_search")
    assert expected.options.n == 3 and expected.options.seed == 2  # kept
    assert not hasattr(expected.options, "tau_acc")  # dropped: beam search takes none

    code, out, _ = _cli(
        capsys, "solve", QUESTION, "-c", str(config_file), "-p", "beam_search", "--json"
    )
    assert code == 0
    from_cli = json.loads(out)

    with Specs(config) as specs:
        from_engine = specs.solve(QUESTION, policy="beam_search")
        runnable = SpecsRunnable(specs=specs, policy="beam_search", output="result")
        from_runnable = runnable.invoke(QUESTION)

    switched = resolve_config(config_file, "beam_search")
    problem = Problem("p0", QUESTION, "13", AnswerFormat.NUMERIC, "toy")
    [run_dir] = run_sweep(
        switched, "policy.max_steps", ["6"], "toy", [problem], tmp_path / "sweep",
        limit=None, sample_seed=0, run=RunOptions(progress=False, warmup=False),
    )  # fmt: skip
    [row] = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    spec = bench_spec(switched, "toy", [problem], limit=None, sample_seed=0)

    assert spec.config["policy"] == expected.data()  # the run's identity
    assert from_engine.steps[0].candidates and len(from_engine.steps[0].candidates) == 3
    texts = {from_cli["text"], from_engine.text, from_runnable.text, row["text"]}
    assert len(texts) == 1
    steps = [s.text for s in from_engine.steps]
    assert [s["text"] for s in from_cli["steps"]] == steps
    assert [s.text for s in from_runnable.steps] == steps


def test_an_explicit_option_the_policy_lacks_is_refused_by_every_caller(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _cli(
        capsys, "solve", QUESTION, "-c", str(config_file), "-p", "beam_search",
        "--set", "policy.tau_acc=5",
    )  # fmt: skip
    assert code == 2 and "unknown key 'policy.tau_acc'" in err
    config = resolve_config(config_file)
    with Specs(config) as specs:
        with pytest.raises(ConfigError, match=r"unknown key 'policy\.tau_acc'"):
            specs.solve(QUESTION, policy="beam_search", options={"tau_acc": 5})
        runnable = SpecsRunnable(specs=specs, policy="beam_search", tau_acc=5.0)
        with pytest.raises(ConfigError, match=r"unknown key 'policy\.tau_acc'"):
            runnable.invoke(QUESTION)
    problem = Problem("p0", QUESTION, "13", AnswerFormat.NUMERIC, "toy")
    with pytest.raises(ConfigError, match=r"unknown key 'policy\.tau_acc'"):
        run_sweep(
            resolve_config(config_file, "beam_search"), "policy.tau_acc", ["5"], "toy",
            [problem], tmp_path / "sweep", limit=None, sample_seed=0,
        )  # fmt: skip


def test_two_disagreeing_policy_choices_are_an_error(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="disagree"):
        resolve_config(config_file, "beam_search", ["policy.name=greedy"])
    assert resolve_config(config_file, None, ["policy.name=greedy"]).policy.name == "greedy"

"""The bench runner with real llama.cpp inference on the embedded SmolLM2 model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from specs_core.eval.cli import add_commands
from specs_core.plugins import get_registry
from typer import Typer
from typer.testing import CliRunner

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]

pytest.importorskip("math_verify", reason="grading needs the eval extra (math-verify)")

#: SPECS with SmolLM2 as draft, target and judge; short steps keep a problem to seconds.
CONFIG = {
    "draft": {"backend": "llamacpp", "model": "smollm2-135m", "n_threads": 2},
    "target": "draft",
    "reward": {"name": "judge", "model": "target"},
    "policy": {"name": "specs", "n": 2, "max_steps": 2, "max_step_tokens": 24},
}


def test_bench_on_gsm8k_with_smollm2(tmp_path: Path) -> None:
    reason = get_registry().backend("llamacpp").unavailable_reason()
    if reason is not None:
        pytest.skip(f"the llamacpp backend is unavailable: {reason}")
    config = tmp_path / "smollm2.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "run"
    app = Typer()
    add_commands(app)
    args = ["bench", "-d", "gsm8k", "-n", "2", "-c", str(config), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--no-progress", "--no-warmup"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["error"] is None, row["error"]
        assert row["text"].strip()
        assert row["grade_reason"] in {"match", "mismatch", "no answer found"}
        assert row["tokens"]["smollm2-135m"]["generated"] > 0
        assert row["latency_s"]["target_generate"] > 0
        assert row["target_steps"] >= 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 2 and summary["complete"] is True
    assert "smollm2-135m" in summary["tokens"]

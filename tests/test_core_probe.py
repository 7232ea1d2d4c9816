"""The probe reward model: a logistic head on hidden states, trained by ``specs rewards train``,
an artifact that refuses another model's hidden states, and its use as a reward model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import typer
from specs_core import Specs
from specs_core.backend_kit.artifacts import EMBEDDED_MODELS
from specs_core.errors import CapabilityError, ConfigError
from specs_core.eval.cli import add_commands
from specs_core.eval.stats import auc
from specs_core.plugins import get_registry
from specs_core.probe import ProbeArtifact, ProbeRewardModel, shipped_probes, train_probe
from specs_core.testing.toy import ToyLanguageModel
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / "examples" / "configs" / "smollm2.yaml"


def _synthetic(n: int, d: int, seed: int) -> tuple[np.ndarray, list[bool], list[str]]:
    rng = np.random.default_rng(seed)
    labels = [bool(rng.random() < 0.5) for _ in range(n)]
    x = rng.normal(size=(n, d)) * 3.0 + 10.0
    x[:, 0] += np.where(labels, 3.0, -3.0)  # one informative direction (AUC 0.92), others noise
    return x, labels, [f"p{i // 4}" for i in range(n)]


def test_training_finds_the_informative_direction_and_reports_held_out_auc() -> None:
    x, y, groups = _synthetic(400, 16, seed=0)
    probe = train_probe(x, y, groups, model_name="m", model_sha256="ab" * 32)
    held = probe.meta["cross_validated_step_auc"]
    assert set(held) == {"1.0", "10.0", "100.0", "1000.0"} and probe.meta["l2"] in (
        1,
        10,
        100,
        1000,
    )
    assert max(v for v in held.values() if v is not None) > 0.85
    xt, yt, _ = _synthetic(400, 16, seed=1)
    p = probe.probabilities(xt)
    assert auc(p.tolist(), yt) > 0.85 and np.all((p > 0) & (p < 1))
    w = np.asarray(probe.weights)
    assert abs(w[0]) == np.max(np.abs(w))
    z = ((xt - np.asarray(probe.mean)) / np.asarray(probe.scale)) @ w + probe.bias
    assert np.allclose(p, 1 / (1 + np.exp(-z)))


def test_an_artifact_round_trips_and_bad_files_are_clear_errors(tmp_path: Path) -> None:
    x, y, groups = _synthetic(80, 4, seed=2)
    probe = train_probe(x, y, groups, model_name="m", model_sha256="cd" * 32, meta={"k": 1})
    path = tmp_path / "probe.json"
    probe.save(path)
    again = ProbeArtifact.load(path)
    assert again.model_sha256 == "cd" * 32 and again.meta["k"] == 1 and again.dim == 4
    assert np.allclose(again.probabilities(x), probe.probabilities(x), atol=1e-5)
    data = json.loads(path.read_text())
    for change, message in [
        ({"format": "other"}, "not a specs-probe/1"),
        ({"weights": [1.0]}, "inconsistent"),
        ({"scale": [0.0] * 4}, "non-positive scale"),
        ({"model": {}}, "damaged"),
    ]:
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(ConfigError, match=message):
            ProbeArtifact.load(path)
    with pytest.raises(ConfigError, match=r"does not exist.*specs rewards train"):
        ProbeArtifact.load(tmp_path / "missing.json")


def test_a_model_without_hidden_states_is_refused() -> None:
    x, y, groups = _synthetic(40, 4, seed=3)
    probe = train_probe(x, y, groups, model_name="m", model_sha256="00" * 32)
    with pytest.raises(CapabilityError, match="cannot return hidden states"):
        ProbeRewardModel(ToyLanguageModel("target"), probe)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Right solutions in plain sentences, wrong ones as scrambled words, 14 problems."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("probe") / "solutions.jsonl"
    lines = []
    for i in range(14):
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        question = f"Sam has {a} marbles and finds {b} more. How many marbles does Sam have?"
        right = [f"Sam starts with {a} marbles and finds {b} more.", f"So {a} + {b} = {a + b}."]
        words = f"marbles {b} so has finds {a + b + 1} Sam = more {a} and + with".split()
        rng.shuffle(words)
        wrong = [" ".join(words[:7]) + ".", " ".join(words[7:]) + "."]
        lines.append({"id": str(i), "question": question, "steps": right, "correct": True})
        lines.append({"id": str(i), "question": question, "steps": wrong, "correct": False})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.mark.llamacpp
def test_rewards_train_reads_a_real_models_hidden_states_and_the_probe_ranks_solutions(
    labelled: Path, tmp_path: Path
) -> None:
    if reason := get_registry().backend("llamacpp").unavailable_reason():
        pytest.skip(f"the llamacpp backend is unavailable: {reason}")
    app = typer.Typer()
    add_commands(app)
    out = tmp_path / "probe.json"
    held_out = tmp_path / "evaluation.jsonl"  # problems 12 and 13 belong to an evaluation set
    held_out.write_text("".join(x + "\n" for x in labelled.read_text().splitlines()[24:]))
    args = ["rewards", "train", str(labelled), "-c", str(SMOLLM2), "-o", str(out)]
    args += ["--exclude", str(held_out)]
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "held-out step AUC" in result.stdout
    probe = ProbeArtifact.load(out)
    assert probe.model_name == "smollm2-135m" and probe.dim == 576
    assert probe.model_sha256.startswith("b179c9523d0e")  # the embedded SmolLM2's sha256
    assert probe.meta["problem_ids"] == sorted(str(i) for i in range(12))
    assert probe.meta["excluded"] == [str(held_out)]
    assert max(v for v in probe.meta["cross_validated_step_auc"].values() if v) > 0.8
    # as a reward model on the same configuration: one reward per step, right above wrong
    with Specs.from_config(SMOLLM2) as specs:
        prm = specs.build_reward_model({"name": "probe", "artifact": str(out)})
        rows = [json.loads(x) for x in labelled.read_text().splitlines()]
        scores = [prm.score(r["question"], [r["steps"]])[0] for r in rows]
        assert all(len(s) == 2 and all(0 <= v <= 1 for v in s) for s in scores)
        assert auc([s[-1] for s in scores], [r["correct"] for r in rows]) > 0.9
        assert prm.score_last(rows[0]["question"], [rows[0]["steps"]]) == [scores[0][-1]]
        # a probe trained on another model is refused, never read
        data = json.loads(out.read_text())
        data["model"]["sha256"] = "0" * 64
        other = tmp_path / "other.json"
        other.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=r"trained on .smollm2-135m..*train a probe"):
            specs.build_reward_model({"name": "probe", "artifact": str(other)})


SHIPPED = "qwen2.5-coder-1.5b-gsm8k"


def test_the_shipped_probe_loads_by_name_and_refuses_another_model() -> None:
    assert SHIPPED in shipped_probes()
    probe = ProbeArtifact.load(SHIPPED)
    target = EMBEDDED_MODELS["qwen2.5-coder-1.5b"]
    assert (probe.model_name, probe.model_sha256, probe.dim) == (target.name, target.sha256, 1536)
    probe.check_model(target.sha256, target.name)  # the model it was trained on: accepted
    draft = EMBEDDED_MODELS["qwen2.5-coder-0.5b"]
    with pytest.raises(ConfigError, match=r"trained on 'qwen2.5-coder-1.5b'.*qwen2.5-coder-0.5b"):
        probe.check_model(draft.sha256, draft.name)
    # its training problems are disjoint from the evaluation subsets (headline, side by side)
    evaluated = {
        f"gsm8k:{json.loads(line)['id']}"
        for run in ("headline/gsm8k/target_beam_search", "side-by-side/gsm8k/beam_search")
        for line in (ROOT / "benchmarks" / "results" / run / "results.jsonl").open()
    }
    assert len(evaluated) >= 100 and not evaluated & set(probe.meta["problem_ids"])


def test_an_unknown_probe_name_lists_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=rf"'no-such-probe' does not exist; name a shipped .*{SHIPPED}"
    ):
        ProbeArtifact.load("no-such-probe")
    local = tmp_path / SHIPPED  # a file of that name wins over the shipped probe
    local.write_text("{}")
    with pytest.raises(ConfigError, match="is not a specs-probe/1 probe artifact"):
        ProbeArtifact.load(local)


@pytest.mark.llamacpp
def test_the_shipped_probe_rewards_steps_of_the_embedded_target() -> None:
    if reason := get_registry().backend("llamacpp").unavailable_reason():
        pytest.skip(f"the llamacpp backend is unavailable: {reason}")
    config = {
        "target": {"backend": "llamacpp", "model": "qwen2.5-coder-1.5b", "n_ctx": 1024},
        "draft": {"backend": "llamacpp", "model": "qwen2.5-coder-0.5b", "n_ctx": 1024},
    }
    question = "Tom has 3 apples and buys 4 more, then eats 2. How many apples are left?"
    steps = ["Tom has 3 + 4 = 7 apples.", "He eats 2, so 7 - 2 = 5 are left.",
             "Therefore, the final answer is $\\boxed{5}$."]  # fmt: skip
    with Specs.from_config(config) as specs:
        prm = specs.build_reward_model({"name": "probe", "artifact": SHIPPED})
        [rewards] = prm.score(question, [steps])
        assert len(rewards) == 3 and all(0 < r < 1 for r in rewards)
        assert prm.score_last(question, [steps[:2]]) == [rewards[1]]
        with pytest.raises(ConfigError, match=r"trained on 'qwen2\.5-coder-1\.5b'"):
            specs.build_reward_model({"name": "probe", "artifact": SHIPPED, "model": "draft"})

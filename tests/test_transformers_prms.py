"""Trained-PRM adapters on tiny random models of the real architectures (no download).

Each adapter is checked for step alignment (one reward per step, read where the convention puts
the separator), for rewards equal to a direct computation on the model's outputs, against the
core reward-model conformance suite, and through its real loading path from a local directory.
"""

from __future__ import annotations

import itertools
import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="the transformers extra is not installed")

import torch
from specs_core.errors import ConfigError, ModelNotFoundError, RewardError
from specs_core.testing import REWARD_MODEL_CHECKS

from _tiny_hf import (
    one_torch_thread,
    tiny_llama,
    tiny_qwen2,
    tiny_qwen2_classifier,
    tiny_tokenizer,
)
from specs_transformers import (
    ClassificationPRM,
    ClassificationPRMOptions,
    TokenPRM,
    TokenPRMOptions,
    ValuePRM,
    ValuePRMOptions,
)

pytestmark = pytest.mark.transformers


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


QUESTION = "What is 2 + 3?"
STEPS = ["First, add 2 and 3.", "So 2 + 3 = 5.", "Therefore, the final answer is $\\boxed{5}$."]
SOLUTIONS = [STEPS, STEPS[:1], ["We multiply: 2 * 3 = 6.", "", "The answer is 6."]]


@pytest.fixture(scope="module")
def tok() -> Any:
    return tiny_tokenizer(False)


@pytest.fixture(scope="module")
def classification(tok: Any) -> ClassificationPRM:
    return ClassificationPRM.from_objects(tiny_qwen2_classifier(tok, 2), tok, name="cls")


@pytest.fixture(scope="module")
def value(tok: Any) -> ValuePRM:
    return ValuePRM.from_objects(tiny_qwen2_classifier(tok, 1), tok, name="value")


@pytest.fixture(scope="module")
def shepherd(tok: Any) -> TokenPRM:
    return TokenPRM.from_objects(tiny_llama(tok), tok, name="shepherd")


@pytest.fixture(scope="module")
def rlhflow(tok: Any) -> TokenPRM:
    return TokenPRM.from_objects(tiny_llama(tok), tok, name="rlhflow", style="chat-turns")


@pytest.fixture(scope="module", params=["classification", "value", "shepherd", "rlhflow"])
def prm(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


def _logits(model: Any, ids: tuple[int, ...]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


# -- alignment ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 4])
def test_one_reward_per_step(prm: Any, count: int) -> None:
    steps = [f"Step text {j} with 2 + {j} = {j + 2}." for j in range(count)]
    [rewards] = prm.score(QUESTION, [steps])
    assert len(rewards) == count
    assert all(0.0 <= r <= 1.0 for r in rewards)
    assert len(prm.encode(QUESTION, steps).positions) == count


def test_empty_solutions_get_no_rewards(prm: Any) -> None:
    assert prm.score(QUESTION, []) == []
    assert prm.score(QUESTION, [[], STEPS[:1]])[0] == []


def test_classification_reads_each_separator(classification: ClassificationPRM, tok: Any) -> None:
    steps = [*STEPS[:2], "A step that mentions <extra_0> itself."]
    enc = classification.encode(QUESTION, steps)
    sep = tok.convert_tokens_to_ids("<extra_0>")
    assert [enc.ids[p] for p in enc.positions] == [sep] * 3
    assert list(enc.ids).count(sep) == 3  # separator text inside a step was removed
    bounds = [-1, *enc.positions]
    pieces = [tok.decode(list(enc.ids[a + 1 : b])) for a, b in itertools.pairwise(bounds)]
    assert pieces[0].endswith(steps[0]) and pieces[1] == steps[1]
    assert pieces[2] == "A step that mentions  itself."
    logits = _logits(classification._model, enc.ids)
    want = torch.softmax(logits[list(enc.positions)], dim=-1)[:, 1].tolist()
    assert classification.score(QUESTION, [steps])[0] == pytest.approx(want, abs=1e-5)


def test_value_reads_the_step_token_closing_each_step(value: ValuePRM, tok: Any) -> None:
    enc = value.encode(QUESTION, STEPS)
    newline = tok("\n", add_special_tokens=False)["input_ids"][-1]
    assert [enc.ids[p] for p in enc.positions] == [newline] * 3
    assert tok.decode(list(enc.ids[: enc.positions[0] + 1])) == (
        f"<|endoftext|>{QUESTION}\n{STEPS[0]}\n"
    )
    for a, b, step in zip(enc.positions, enc.positions[1:], STEPS[1:], strict=False):
        assert tok.decode(list(enc.ids[a + 1 : b])) == step
    logits = _logits(value._model, enc.ids)
    want = torch.sigmoid(logits[list(enc.positions), 0]).tolist()
    assert value.score(QUESTION, [STEPS])[0] == pytest.approx(want, abs=1e-5)


def test_math_shepherd_reads_each_step_tag(shepherd: TokenPRM, tok: Any) -> None:
    steps = [*STEPS[:2], "Tagged ки inside."]
    enc = shepherd.encode(QUESTION, steps)
    text = tok.decode(list(enc.ids))
    assert text == (
        f"{QUESTION} Step 1: {steps[0]} ки\nStep 2: {steps[1]} ки\nStep 3: Tagged  inside. ки"
    )
    assert all("ки" in tok.decode([enc.ids[p]]) for p in enc.positions)
    assert [tok.decode(list(enc.ids[: p + 1])).count("ки") for p in enc.positions] == [1, 2, 3]
    good, bad = shepherd.candidate_ids
    assert (good, bad) == tuple(tok("+ -", add_special_tokens=False)["input_ids"])
    logits = _logits(shepherd._model, enc.ids)
    want = torch.softmax(logits[list(enc.positions)][:, [good, bad]], dim=-1)[:, 0].tolist()
    assert shepherd.score(QUESTION, [steps])[0] == pytest.approx(want, abs=1e-5)


def test_chat_turns_read_the_position_before_each_good_token(rlhflow: TokenPRM, tok: Any) -> None:
    enc = rlhflow.encode(QUESTION, STEPS)
    good, bad = rlhflow.candidate_ids
    assert good == tok("+", add_special_tokens=False)["input_ids"][-1]
    assert [enc.ids[p + 1] for p in enc.positions] == [good] * 3
    assert tok.decode(list(enc.ids[: enc.positions[0] + 1])).endswith(
        f"{QUESTION} {STEPS[0]}<|im_end|>\n<|im_start|>assistant\n"
    )
    logits = _logits(rlhflow._model, enc.ids)
    want = torch.softmax(logits[list(enc.positions)][:, [good, bad]], dim=-1)[:, 0].tolist()
    assert rlhflow.score(QUESTION, [STEPS])[0] == pytest.approx(want, abs=1e-5)


def test_batch_padding_does_not_change_rewards(prm: Any) -> None:
    together = prm.score(QUESTION, SOLUTIONS)
    for solution, row in zip(SOLUTIONS, together, strict=True):
        assert prm.score(QUESTION, [solution])[0] == pytest.approx(row, abs=1e-5)


@pytest.mark.parametrize("check", sorted(REWARD_MODEL_CHECKS))
def test_conformance(prm: Any, check: str) -> None:
    REWARD_MODEL_CHECKS[check](prm, 1e-5)


def test_multi_token_separator_is_refused(tok: Any) -> None:
    model = tiny_qwen2_classifier(tok, 2)
    with pytest.raises(ConfigError, match="one token"):
        ClassificationPRM.from_objects(model, tok, step_separator="NOT A TOKEN")


def test_template_without_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="tag"):
        TokenPRMOptions(model="x", step_template="Step {index}: {step}")


# -- loading from directories and the hub ---------------------------------------------------


def _save(model: Any, tok: Any, path: Path) -> Path:
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_classification_loads_a_token_classifier_directory(
    tmp_path: Path, tok: Any, classification: Any
) -> None:
    path = _save(classification._model, tok, tmp_path / "cls")
    loaded = ClassificationPRM(ClassificationPRMOptions(model=str(path), device="cpu"))
    # AutoTokenizer picks the tokenizer class of the saved config (Qwen2 splits digits), so the
    # reference uses the loaded tokenizer with the in-memory model.
    reference = ClassificationPRM.from_objects(classification._model, loaded.tokenizer)
    want = reference.score(QUESTION, SOLUTIONS)
    assert loaded.score(QUESTION, SOLUTIONS) == [pytest.approx(r, abs=1e-5) for r in want]


REMOTE_CODE = textwrap.dedent(
    '''
    import torch
    from transformers import Qwen2Model, Qwen2PreTrainedModel


    class TinyProcessRewardModel(Qwen2PreTrainedModel):
        """A Qwen2 body and a two-layer score head, as Qwen2.5-Math-PRM ships it."""

        def __init__(self, config):
            super().__init__(config)
            self.model = Qwen2Model(config)
            h = config.hidden_size
            self.score = torch.nn.Sequential(
                torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2)
            )
            self.post_init()

        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]
            return (self.score(hidden),)
    '''
)


def test_classification_loads_modeling_code_shipped_in_the_repository(
    tmp_path: Path, tok: Any
) -> None:
    import importlib.util

    path = tmp_path / "remote"
    path.mkdir()
    (path / "modeling_tiny_prm.py").write_text(REMOTE_CODE)
    module_file = path / "modeling_tiny_prm.py"
    spec = importlib.util.spec_from_file_location("modeling_tiny_prm", module_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    built = module.TinyProcessRewardModel(tiny_qwen2_classifier(tok, 2).config).eval()
    _save(built, tok, path)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_tiny_prm.TinyProcessRewardModel"}
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="trust_remote_code: true"):
        ClassificationPRM(ClassificationPRMOptions(model=str(path))).score(QUESTION, [STEPS])
    loaded = ClassificationPRM(ClassificationPRMOptions(model=str(path), trust_remote_code=True))
    reference = ClassificationPRM.from_objects(built, loaded.tokenizer)
    assert loaded.score(QUESTION, SOLUTIONS) == [
        pytest.approx(r, abs=1e-5) for r in reference.score(QUESTION, SOLUTIONS)
    ]


def test_value_loads_a_causal_lm_with_a_value_head(tmp_path: Path, tok: Any) -> None:
    from safetensors.torch import load_file, save_file

    lm = tiny_qwen2(tok)
    path = _save(lm, tok, tmp_path / "skywork")
    weights = load_file(path / "model.safetensors")
    torch.manual_seed(1)
    head_w, head_b = torch.randn(1, lm.config.hidden_size), torch.randn(1)
    weights["v_head.summary.weight"], weights["v_head.summary.bias"] = head_w, head_b
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    loaded = ValuePRM(ValuePRMOptions(model=str(path)))
    enc = loaded.encode(QUESTION, STEPS)
    with torch.no_grad():
        hidden = lm.model(input_ids=torch.tensor([enc.ids])).last_hidden_state[0]
    want = torch.sigmoid(hidden[list(enc.positions)] @ head_w[0] + head_b).tolist()
    assert loaded.score(QUESTION, [STEPS])[0] == pytest.approx(want, abs=1e-5)


def test_value_refuses_a_checkpoint_without_a_value_head(tmp_path: Path, tok: Any) -> None:
    path = _save(tiny_qwen2(tok), tok, tmp_path / "plain")
    with pytest.raises(ConfigError, match="value head"):
        ValuePRM(ValuePRMOptions(model=str(path))).score(QUESTION, [STEPS])


def test_token_prm_loads_a_causal_lm_directory(tmp_path: Path, tok: Any, shepherd: Any) -> None:
    path = _save(shepherd._model, tok, tmp_path / "shepherd")
    loaded = TokenPRM(TokenPRMOptions(model=str(path)))
    reference = TokenPRM.from_objects(shepherd._model, loaded.tokenizer)
    assert loaded.score(QUESTION, SOLUTIONS) == [
        pytest.approx(r, abs=1e-5) for r in reference.score(QUESTION, SOLUTIONS)
    ]
    shutil.rmtree(path)
    loaded.close()
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        loaded.score(QUESTION, [STEPS])


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (ClassificationPRM, ClassificationPRMOptions(local_files_only=True)),
        (ValuePRM, ValuePRMOptions(local_files_only=True)),
        (TokenPRM, TokenPRMOptions(local_files_only=True)),
        (
            TokenPRM,
            TokenPRMOptions(
                model="RLHFlow/Llama3.1-8B-PRM-Deepseek-Data",
                style="chat-turns",
                local_files_only=True,
            ),
        ),
    ],
)
def test_hub_checkpoints_fail_clearly_offline(cls: Any, options: Any) -> None:
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download"):
        cls(options).score(QUESTION, [STEPS])


def test_registered_reward_models_build_from_a_config(
    tmp_path: Path, tok: Any, shepherd: Any
) -> None:
    from specs_core import Specs

    path = _save(shepherd._model, tok, tmp_path / "prm")
    config = {
        "target": {"backend": "toy"},
        "reward": {"name": "hf-token-prm", "model": str(path), "batch_size": 2},
        "policy": {"name": "greedy"},
    }
    with Specs.from_config(config) as specs:
        reward = specs.reward_model()
        assert isinstance(reward, TokenPRM)
        reference = TokenPRM.from_objects(shepherd._model, reward.tokenizer)
        assert reward.score(QUESTION, [STEPS])[0] == pytest.approx(
            reference.score(QUESTION, [STEPS])[0], abs=1e-5
        )


class _DropsLastStep(ClassificationPRM):
    """Test double: an adapter whose encoding loses the last step's separator."""

    def encode(self, question: str, steps: Any) -> Any:
        enc = super().encode(question, steps)
        return type(enc)(enc.ids, enc.positions[:-1])


def test_reward_count_mismatch_is_an_error(tok: Any) -> None:
    model = tiny_qwen2_classifier(tok, 2)
    broken = _DropsLastStep(ClassificationPRMOptions(model="x"), model=model, tokenizer=tok)
    with pytest.raises(RewardError, match="2 rewards for 3 steps"):
        broken.score(QUESTION, [STEPS])

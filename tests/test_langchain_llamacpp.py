"""SpecsRunnable in a real LCEL chain on a real llama.cpp model (the embedded SmolLM2-135M as draft,
target and judge), and the LangChain example run as a script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import SystemMessage
from langchain_core.prompts import ChatPromptTemplate
from specs_core.plugins import get_registry
from specs_core.text import DEFAULT_SYSTEM_PROMPT

from langchain_support import Recorder
from specs_langchain import STEP_EVENT, SpecsOutput, SpecsRunnable, StepChunk

pytestmark = pytest.mark.llamacpp

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "configs" / "smollm2.yaml"
#: Fewer and shorter steps than the example config, to keep each search to a few seconds.
SMALL = ["policy.max_steps=2", "policy.max_step_tokens=24"]
QUESTIONS = ("What is 2 + 3?", "What is 10 - 4?")


def _require_llamacpp() -> None:
    reason = get_registry().backend("llamacpp").unavailable_reason()
    if reason is not None:
        pytest.skip(f"the llamacpp backend is unavailable: {reason}")


@pytest.fixture(scope="module")
def smollm2():
    _require_llamacpp()
    with SpecsRunnable.from_config(CONFIG, SMALL, output="result") as runnable:
        yield runnable


@pytest.fixture(scope="module")
def chain(smollm2):
    prompt = ChatPromptTemplate.from_messages(
        [SystemMessage(DEFAULT_SYSTEM_PROMPT), ("human", "{question}")]
    )
    return prompt | smollm2


@pytest.fixture(scope="module")
def invoked(chain):
    return chain.invoke({"question": QUESTIONS[0]})


def same_search(a: SpecsOutput, b: SpecsOutput) -> None:
    """Equal texts and decisions; scores equal up to float noise of the engine's cache state."""
    assert (a.text, a.answer, a.policy) == (b.text, b.answer, b.policy)
    assert [(s.text, s.source, s.decision) for s in a.steps] == [
        (s.text, s.source, s.decision) for s in b.steps
    ]
    assert [s.reward for s in a.steps] == pytest.approx([s.reward for s in b.steps], abs=1e-4)


def test_real_chain_streams_steps_and_matches_invoke(chain, invoked):
    recorder = Recorder()
    chunks = list(chain.stream({"question": QUESTIONS[0]}, config={"callbacks": [recorder]}))
    *steps, final = chunks
    assert isinstance(final, SpecsOutput)
    same_search(final, invoked)
    assert steps and all(isinstance(c, StepChunk) for c in steps)
    assert [c.step for c in steps] == list(final.steps)
    assert [e["data"]["decision"] for e in recorder.of(STEP_EVENT)] == [
        s.decision for s in final.steps
    ]
    assert final.tokens["smollm2-135m"].generated > 0
    assert any(name.startswith("judge") for name in final.tokens)
    assert all(s.reward is not None and 0.0 <= s.reward <= 1.0 for s in final.steps)


@pytest.mark.slow
def test_real_batch_gives_the_results_of_sequential_runs_on_the_shared_model(smollm2, chain):
    """A batch on one loaded llama.cpp model completes in input order with exactly the results
    of the same questions run one after another (llama.cpp declares that interleaved searches
    may differ, so the runnable runs them one at a time)."""
    target = smollm2.specs.model("target")
    many = [f"What is {a} + {b}?" for a, b in ((2, 3), (10, 4), (7, 8), (12, 9), (6, 6), (31, 5))]
    sequential = [chain.invoke({"question": q}) for q in many]
    batched = chain.batch([{"question": q} for q in many], config={"max_concurrency": 3})
    for alone, together in zip(sequential, batched, strict=True):  # 3 of 8 differed before
        assert together.text == alone.text
        assert [s.reward for s in together.steps] == [s.reward for s in alone.steps]
    recorder = Recorder()
    batched = chain.batch(
        [{"question": q} for q in QUESTIONS],
        config={"max_concurrency": 2, "callbacks": [recorder]},
    )
    assert [out.question for out in batched] == list(QUESTIONS)
    for out in batched:
        assert out.steps and out.text == "".join(out.solution_steps)
        assert all(s.reward is not None and 0.0 <= s.reward <= 1.0 for s in out.steps)
        assert out.tokens["smollm2-135m"].generated > 0
    assert len(recorder.of(STEP_EVENT)) == sum(len(out.steps) for out in batched)
    assert len(recorder.of("end", "SpecsRunnable")) == 2
    assert smollm2.specs.model("target") is target
    assert smollm2.specs.model("draft") is target  # equal configs share one loaded model


@pytest.mark.slow
def test_example_script_runs_on_smollm2():
    _require_llamacpp()
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "langchain_chain.py"),
            "--config",
            str(CONFIG),
            "--question",
            "What is 2 + 3?",
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "question: What is 2 + 3?"
    assert any(line.startswith("step 0 [target: target, reward ") for line in lines)
    assert any(line.startswith("search: ") for line in lines)
    assert lines[-1].startswith("answer: ")

"""Per-call reconfiguration through RunnableConfig, and batches on shared models."""

from __future__ import annotations

import math

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import ConfigurableField
from specs_core.errors import ConfigError, InvalidInputError, PluginError
from specs_core.plugins import build_registry

from langchain_support import (
    QUESTION,
    QUESTIONS,
    LoggedToyModel,
    LoggedToyPlugin,
    comparable,
    interleaved,
    toy_config,
)
from specs_langchain import SEARCH_FIELDS, SpecsOutput, SpecsRunnable


@pytest.fixture(scope="module")
def runnable():
    with SpecsRunnable.from_config(toy_config(), output="result") as r:
        yield r


def configured(**values: object) -> dict:
    return {"configurable": values}


def test_policy_switches_per_call(runnable):
    chain = runnable.configurable_search()
    default = chain.invoke(QUESTION)
    beam = chain.invoke(QUESTION, config=configured(policy="beam_search"))
    best = chain.invoke(QUESTION, config=configured(policy="best_of_n"))
    assert (default.policy, beam.policy, best.policy) == ("specs", "beam_search", "best_of_n")
    assert {s.decision for s in beam.steps} == {"beam"}
    assert set(default.tokens) == {"toy-draft", "toy-target"}
    assert set(beam.tokens) == {"toy-target"}  # a target-only policy never ran the draft
    assert chain.invoke(QUESTION).policy == "specs"  # the runnable itself is unchanged


def test_thresholds_switch_per_call(runnable):
    """tau_acc=+inf never accepts a draft; tau_acc=-inf with tau_sw below any reward drafts
    every step after the target's first."""
    chain = runnable.configurable_search("tau_acc", "tau_sw")
    never = chain.invoke(QUESTION, config=configured(tau_acc=math.inf))
    always = chain.invoke(QUESTION, config=configured(tau_acc=-math.inf, tau_sw=-1.0))
    assert never.accepted_draft_steps == 0 and never.draft_steps == 0
    decisions = [s.decision for s in always.steps]
    assert decisions[0] == "target"
    assert decisions[1:] and set(decisions[1:]) == {"draft_accepted"}


def test_options_and_output_switch_per_call(runnable):
    chain = runnable.configurable_search()
    small = chain.invoke(QUESTION, config=configured(n=1, max_steps=2, seed=7))
    assert len(small.steps) <= 2
    answer = chain.invoke(QUESTION, config=configured(output="answer"))
    assert isinstance(answer, str) and answer == runnable.invoke(QUESTION).answer
    via_dict = chain.invoke(
        QUESTION, config=configured(policy_options={"n": 1, "max_steps": 2, "seed": 7})
    )
    assert comparable(via_dict) == comparable(small)


def test_configurable_fields_with_custom_ids(runnable):
    chain = runnable.configurable_fields(
        policy=ConfigurableField(id="search", name="Search policy"),
        tau_acc=ConfigurableField(id="threshold"),
    )
    ids = {spec.id for spec in chain.config_specs}
    assert ids == {"search", "threshold"}
    out = chain.invoke(QUESTION, config=configured(search="greedy"))
    assert out.policy == "greedy"


def test_backends_switch_per_call_with_alternatives(runnable):
    other = toy_config()
    other["draft"] = {"backend": "toy", "variant": "draft", "name": "other-draft"}
    other["target"] = {"backend": "toy", "variant": "target", "name": "other-target"}
    with SpecsRunnable.from_config(other, output="result") as alternative:
        chain = runnable.configurable_alternatives(
            ConfigurableField(id="backend"), default_key="toy", other=alternative
        )
        prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
        full = prompt | chain
        default = full.invoke({"question": QUESTION})
        switched = full.invoke({"question": QUESTION}, config=configured(backend="other"))
    assert set(default.tokens) == {"toy-draft", "toy-target"}
    assert set(switched.tokens) == {"other-draft", "other-target"}


def test_bad_reconfiguration_is_a_clear_error(runnable):
    chain = runnable.configurable_search()
    with pytest.raises(PluginError, match="unknown policy 'nope'"):
        chain.invoke(QUESTION, config=configured(policy="nope"))
    with pytest.raises(ConfigError, match="tau_acc"):
        chain.invoke(QUESTION, config=configured(policy="greedy", tau_acc=1.0))
    with pytest.raises(InvalidInputError, match="not search fields: specs"):
        runnable.configurable_search("specs")


def test_search_call_merges_config_fields_and_policy_options(runnable):
    assert SEARCH_FIELDS[0] == "policy"
    tuned = runnable.model_copy(update={"policy_options": {"beta": 2.0}, "tau_acc": 1.5})
    name, options = tuned.search_call()
    assert name == "specs"
    assert {k: options[k] for k in ("n", "beta", "tau_acc")} == {
        "n": 4,
        "beta": 2.0,
        "tau_acc": 1.5,
    }
    other = runnable.model_copy(update={"policy": "greedy"})
    name, options = other.search_call()
    # the config's specs options that greedy takes (seed, prompt) carry over; the others do not
    assert name == "greedy" and "n" not in options and "tau_acc" not in options
    assert options["seed"] == runnable.specs.config.policy.options().get("seed", 0)
    with pytest.raises(ConfigError, match=r"unknown key 'policy\.tau_acc'"):
        other.model_copy(update={"tau_acc": 1.5}).search_call()


# -- batches on shared models ---------------------------------------------------------------


def test_batch_matches_one_by_one_on_shared_models(runnable):
    target = runnable.specs.model("target")
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | runnable
    inputs = [{"question": q} for q in QUESTIONS * 2]
    batched = chain.batch(inputs, config={"max_concurrency": 4})
    one_by_one = [chain.invoke(i) for i in inputs]
    assert [comparable(o) for o in batched] == [comparable(o) for o in one_by_one]
    assert all(isinstance(o, SpecsOutput) for o in batched)
    assert runnable.specs.model("target") is target  # loaded once, shared by every request


def _logged_runnable(concurrent: bool) -> SpecsRunnable:
    registry = build_registry(extra_plugins=[LoggedToyPlugin])
    config = {
        "target": {"backend": "logged_toy", "concurrent": concurrent, "ms_per_token": 2.0},
        "reward": {"name": "toy"},
        "policy": {"name": "beam_search", "n": 2, "max_steps": 3},
    }
    return SpecsRunnable.from_config(config, registry=registry)


def test_batch_serialises_searches_on_a_model_that_is_not_concurrent():
    LoggedToyModel.calls = []
    with _logged_runnable(concurrent=False) as serial:
        answers = serial.batch(list(QUESTIONS), config={"max_concurrency": 4})
    assert len(answers) == len(QUESTIONS)
    assert set(LoggedToyModel.calls) == set(QUESTIONS)
    assert not interleaved(LoggedToyModel.calls)


def test_batch_runs_searches_concurrently_on_a_concurrent_model():
    """The control of the test above: the same batch interleaves when the model allows it."""
    LoggedToyModel.calls = []
    with _logged_runnable(concurrent=True) as parallel:
        parallel.batch(list(QUESTIONS), config={"max_concurrency": 4})
    assert interleaved(LoggedToyModel.calls)


def test_stream_and_batch_results_agree_across_threads(runnable):
    answer_runnable = runnable.model_copy(update={"output": "answer"})
    chain = answer_runnable | StrOutputParser()
    batched = chain.batch(list(QUESTIONS), config={"max_concurrency": 4})
    streamed = [list(chain.stream(q))[-1] for q in QUESTIONS]
    assert batched == streamed

"""Every policy end to end on the deterministic toy backend: accounting, seeds, limits, registry."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from specs_core import Specs
from specs_core.config import validate_options
from specs_core.errors import ConfigError, ContextOverflowError
from specs_core.plugins import Registry, build_registry
from specs_core.protocols import Roles
from specs_core.testing import ToyLanguageModel, ToyRewardModel
from specs_core.types import PHASES, SearchResult, StepSource, StopReason

QUESTIONS = ["What is 2 + 3?", "Tom has 4 apples and buys 9 more. How many now?", "What is 7 + 8?"]

#: policy -> (models that generate, uses the reward model)
POLICIES: dict[str, tuple[set[str], bool]] = {
    "specs": ({"toy-target"}, True),  # the draft runs only after a switch
    "rsd": ({"toy-draft"}, True),
    "beam_search": ({"toy-target"}, True),
    "draft_beam_search": ({"toy-draft"}, True),
    "best_of_n": ({"toy-target"}, True),
    "draft_best_of_n": ({"toy-draft"}, True),
    "majority": ({"toy-target"}, False),
    "draft_majority": ({"toy-draft"}, False),
    "greedy": ({"toy-target"}, False),
    "draft_greedy": ({"toy-draft"}, False),
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return build_registry(builtins=("specs_core.policies.plugin",), entry_points=False)


@pytest.fixture
def roles() -> Roles:
    return Roles(
        target=ToyLanguageModel("target"), draft=ToyLanguageModel("draft"), reward=ToyRewardModel()
    )


def solve(
    registry: Registry, roles: Roles, name: str, question: str = QUESTIONS[0], **options: object
) -> SearchResult:
    spec = registry.policy(name)
    policy = spec.factory(validate_options(options, spec.options, "policy"), roles)
    result: SearchResult = policy.run(question)
    return result


def test_every_policy_is_registered_with_the_roles_it_needs(registry):
    assert set(registry.policies) == set(POLICIES)
    for name, (_, uses_reward) in POLICIES.items():
        roles = registry.policy(name).roles
        assert ("reward" in roles) == uses_reward, name
        assert ("draft" in roles) == (name in {"specs", "rsd"} or name.startswith("draft_")), name
        assert ("target" in roles) == (not name.startswith("draft_")), name
        assert registry.policy(name).description


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_accounting_is_complete_and_sensible(registry, roles, name):
    models, uses_reward = POLICIES[name]
    streamed = []
    spec = registry.policy(name)
    policy = spec.factory(validate_options({}, spec.options, "policy"), roles)
    result = policy.run(QUESTIONS[1], on_step=streamed.append)
    latency = result.usage.latency_s
    assert set(latency) == {*PHASES, "total"}
    assert all(v >= 0 for v in latency.values())
    assert latency["total"] >= max(v for k, v in latency.items() if k != "total")
    for model in models:
        tokens = result.usage.tokens[model]
        assert tokens.generated > 0 and tokens.prompt > 0 and tokens.calls > 0
        phase = "draft_generate" if model == "toy-draft" else "target_generate"
        assert latency[phase] > 0
    if uses_reward:
        assert result.usage.reward_cache_misses > 0 and latency["reward"] > 0
    else:
        assert result.usage.reward_cache_misses == 0 and latency["reward"] == 0
    if name == "specs" and result.switches:
        assert result.usage.tokens["toy-draft"].generated > 0 and latency["target_score"] > 0
    assert streamed == list(result.steps)
    assert result.draft_steps + result.target_steps == len(result.steps) > 0
    assert result.policy == name
    if name.startswith("draft_"):
        assert result.target_steps == 0
    elif name not in {"specs", "rsd"}:
        assert result.draft_steps == 0
    assert result.accepted_draft_steps == sum(s.decision == "draft_accepted" for s in result.steps)
    assert result.rejected_draft_steps == sum(s.decision == "draft_rejected" for s in result.steps)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("question", QUESTIONS)
def test_specs_with_infinite_acceptance_threshold_is_target_beam_search(registry, seed, question):
    def fresh() -> Roles:
        return Roles(ToyLanguageModel("target"), ToyLanguageModel("draft"), ToyRewardModel())

    common = {"n": 3, "seed": seed, "max_steps": 8}
    specs = solve(registry, fresh(), "specs", question, tau_acc=math.inf, **common)
    beam = solve(registry, fresh(), "beam_search", question, **common)
    assert specs.draft_steps == 0 and specs.switches == 0
    assert "toy-draft" not in specs.usage.tokens
    assert specs.text == beam.text and specs.answer == beam.answer
    assert specs.final_score == beam.final_score and specs.finished == beam.finished
    assert [s.text for s in specs.steps] == [s.text for s in beam.steps]
    assert [s.reward for s in specs.steps] == [s.reward for s in beam.steps]


@pytest.mark.parametrize("question", QUESTIONS)
def test_specs_with_minus_infinite_acceptance_threshold_drafts_every_later_step(
    registry, roles, question
):
    result = solve(registry, roles, "specs", question, tau_acc=-math.inf, tau_sw=-1.0)
    sources = [s.source for s in result.steps]
    assert sources[0] is StepSource.TARGET
    assert sources[1:] and set(sources[1:]) == {StepSource.DRAFT}
    assert result.accepted_draft_steps == len(sources) - 1 and result.rejected_draft_steps == 0


def test_specs_mixes_accepted_and_rejected_drafts(registry):
    decisions: set[str] = set()
    for seed in range(6):
        for question in QUESTIONS:
            roles = Roles(ToyLanguageModel("target"), ToyLanguageModel("draft"), ToyRewardModel())
            # a threshold inside the toy pair's range of soft scores
            result = solve(registry, roles, "specs", question, seed=seed, tau_acc=3.0)
            decisions |= {s.decision for s in result.steps}
            for step in result.steps:
                for c in step.candidates:
                    if c.source is StepSource.DRAFT:
                        assert c.score == pytest.approx(
                            c.target_logprob - c.draft_logprob + 10.0 * c.reward
                        )
    assert decisions == {"target", "draft_accepted", "draft_rejected"}


@pytest.mark.parametrize("name", ["specs", "rsd", "beam_search", "best_of_n", "majority"])
def test_same_seed_same_result_and_different_seeds_differ(registry, name):
    def run(seed: int) -> SearchResult:
        roles = Roles(ToyLanguageModel("target"), ToyLanguageModel("draft"), ToyRewardModel())
        return solve(registry, roles, name, QUESTIONS[1], seed=seed, temperature=1.0)

    first, again = run(0), run(0)
    assert first.text == again.text
    assert [(s.text, s.decision, s.candidates) for s in first.steps] == [
        (s.text, s.decision, s.candidates) for s in again.steps
    ]
    assert len({run(seed).text for seed in range(6)}) > 1


def test_greedy_is_deterministic_and_ignores_the_seed(registry, roles):
    texts = {solve(registry, roles, "greedy", QUESTIONS[0], seed=s).text for s in range(4)}
    assert len(texts) == 1 and next(iter(texts))


def test_beam_search_with_several_beams_commits_several_steps_per_index(registry, roles):
    result = solve(registry, roles, "beam_search", QUESTIONS[1], n=4, beam_width=2, seed=3)
    per_index: dict[int, set[int]] = {}
    for step in result.steps:
        per_index.setdefault(step.index, set()).add(step.beam)
    assert per_index[0] == {0, 1}
    assert result.extra["completed"] >= 1


def test_the_step_limit_cuts_the_search(registry, roles):
    result = solve(
        registry, roles, "beam_search", QUESTIONS[0],
        max_steps=1, max_step_tokens=2, max_last_step_tokens=2,
    )  # fmt: skip
    assert len(result.steps) == 1 and not result.finished
    assert result.stop_reason is StopReason.MAX_STEPS


@pytest.mark.parametrize("name", ["specs", "rsd", "beam_search"])
def test_the_last_step_has_its_own_token_budget(registry, roles, name):
    # the only step is the last one: it runs to the end with max_last_step_tokens, not 2
    result = solve(registry, roles, name, QUESTIONS[0], max_steps=1, max_step_tokens=2)
    assert len(result.steps) == 1 and result.finished
    assert result.usage.tokens["toy-target" if name != "rsd" else "toy-draft"].generated > 2


# -- through the Specs facade ---------------------------------------------------------------

TOY = {
    "draft": {"backend": "toy", "variant": "draft"},
    "target": {"backend": "toy", "variant": "target"},
    "reward": {"name": "toy"},
}


def test_the_facade_runs_every_policy_on_the_toy_config():
    with Specs.from_config({**TOY, "policy": {"name": "specs", "n": 2}}) as specs:
        for name in POLICIES:
            result = specs.solve(QUESTIONS[0], policy=name)
            assert result.policy == name and result.steps


def test_target_only_policies_run_without_a_draft_model():
    config = {"target": TOY["target"], "reward": TOY["reward"], "policy": {"name": "greedy"}}
    with Specs.from_config(config) as specs:
        for name in ["beam_search", "best_of_n", "majority", "greedy"]:
            assert specs.solve(QUESTIONS[0], policy=name).target_steps > 0
        with pytest.raises(ConfigError, match="draft"):
            specs.solve(QUESTIONS[0], policy="draft_beam_search")
        with pytest.raises(ConfigError, match="draft_beam_search"):
            specs.solve(QUESTIONS[0], policy="beam_search", options={"model": "draft"})


def test_bad_policy_options_name_the_key_and_the_allowed_values():
    with Specs.from_config({**TOY, "policy": {"name": "specs"}}) as specs:
        with pytest.raises(ConfigError, match=r"aggregation.*'last', 'min', 'prod' or 'mean'"):
            specs.solve(QUESTIONS[0], options={"aggregation": "median"})
        with pytest.raises(ConfigError, match=r"log_ratio.*'mean' or 'sum'"):
            specs.solve(QUESTIONS[0], options={"log_ratio": "max"})
        with pytest.raises(ConfigError, match=r"unknown key 'policy.tau'.*tau_acc"):
            specs.solve(QUESTIONS[0], options={"tau": 1})
        with pytest.raises(ConfigError, match=r"tau_sw.*NaN"):
            specs.solve(QUESTIONS[0], options={"tau_sw": float("nan")})
        with pytest.raises(ConfigError, match=r"n: Input should be greater than or equal to 1"):
            specs.solve(QUESTIONS[0], policy="best_of_n", options={"n": 0})
        with pytest.raises(ConfigError, match=r"selection.*'prm' or 'weighted_majority'"):
            specs.solve(QUESTIONS[0], policy="best_of_n", options={"selection": "vote"})


def test_infinite_thresholds_come_through_config_overrides():
    overrides = ["policy.tau_acc=inf", "policy.n=2", "policy.max_steps=6"]
    with Specs.from_config({**TOY, "policy": {"name": "specs"}}, overrides) as specs:
        result = specs.solve(QUESTIONS[2])
    assert result.draft_steps == 0 and result.extra["drafting"] is False


def test_the_policy_guide_documents_every_policy_and_option(registry):
    guide = (Path(__file__).parents[1] / "docs" / "policies.md").read_text(encoding="utf-8")
    for name, spec in registry.policies.items():
        assert f"`{name}`" in guide, name
        for option in spec.options.model_fields:
            assert f"`{option}`" in guide, (name, option)


def _roles_with_context(n_ctx: int) -> Roles:
    return Roles(
        target=ToyLanguageModel("target", n_ctx=n_ctx),
        draft=ToyLanguageModel("draft", n_ctx=n_ctx),
        reward=ToyRewardModel(),
    )


@pytest.mark.parametrize("name", ["specs", "rsd", "beam_search", "draft_beam_search"])
def test_a_search_whose_next_step_does_not_fit_ends_with_what_it_has(registry, name):
    question = QUESTIONS[1]
    options = {"tau_acc": 0.0} if name == "specs" else {}
    full = solve(registry, _roles_with_context(4096), name, question, **options)
    assert len(full.steps) >= 2 and full.stop_reason is StopReason.FINISHED
    with pytest.raises(ContextOverflowError):  # not even the first step fits: nothing to return
        solve(registry, _roles_with_context(16), name, question, **options)
    # the smallest context in which the first step fits, but not the whole search
    for n_ctx in range(16, 4096, 2):
        try:
            cut = solve(registry, _roles_with_context(n_ctx), name, question, **options)
        except ContextOverflowError:
            continue
        break
    assert cut.stop_reason is StopReason.CONTEXT
    assert not cut.finished
    assert 1 <= len(cut.steps) < len(full.steps)
    # the same steps as without the limit; the last one is cut where the context ends
    *before, last = [s.text for s in cut.steps]
    assert before == [s.text for s in full.steps[: len(before)]]
    assert full.steps[len(before)].text.startswith(last)
    committed = [s.decision for s in cut.steps]
    assert cut.accepted_draft_steps == committed.count("draft_accepted")
    assert cut.rejected_draft_steps == sum(d.startswith("draft_rejected") for d in committed)

"""Speculative decoding keeps the model's distribution: chi-squared tests on the toy backend.

The toy model gives exact next-token probabilities, so the probability of every short output
(its first tokens and how it ended) is computed exactly and compared with the frequencies of
many seeded samples: with the n-gram drafter, and with the SPECS hybrid rule verifying the best
of several drafts. A deliberately biased rule fails the same test, which shows it has power.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
from specs_core import Specs
from specs_core.backend_kit.ngram import SpeculativeOptions
from specs_core.errors import ConfigError
from specs_core.policies.specs import SpecsOptions, SpecsPolicy
from specs_core.protocols import Roles
from specs_core.schema import ResultRecord
from specs_core.testing import ToyLanguageModel, ToyRewardModel, ToyTokenizer
from specs_core.testing.toy_tokenizer import _BLOCK, EOS_ID  # the tokens the sampler draws
from specs_core.types import Completion, FinishReason, Prompt, SamplingParams, StepSource

QUESTION = "What is 4 + 9?"
PROMPT = Prompt(QUESTION, partial="First add 4 and 9.\n\n")  # a second step: richer context
STOP = ("\n\n",)
LENGTH = 3  # outputs of at most 3 tokens keep the outcome space small
TEMPERATURE = 0.8
SAMPLES = 3000

Outcome = tuple[tuple[int, ...], FinishReason]


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X ~ chi-squared(dof): the regularised upper incomplete gamma."""
    a, z = dof / 2.0, statistic / 2.0
    if z <= 0:
        return 1.0
    scale = math.exp(-z + a * math.log(z) - math.lgamma(a))
    if z < a + 1:  # series of the lower function
        term = total = 1.0 / a
        n = a
        while term > total * 1e-15:
            n += 1
            term *= z / n
            total += term
        return max(0.0, 1.0 - total * scale)
    b, c, d = z + 1 - a, 1e300, 1.0 / (z + 1 - a)  # continued fraction of the upper one
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e300 if abs(d) < 1e-300 else 1.0 / d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h * scale


def test_chi2_sf_matches_known_quantiles() -> None:
    assert chi2_sf(3.841, 1) == pytest.approx(0.05, abs=1e-3)
    assert chi2_sf(18.307, 10) == pytest.approx(0.05, abs=1e-3)
    assert chi2_sf(124.342, 100) == pytest.approx(0.05, abs=1e-3)
    assert chi2_sf(0.0, 5) == 1.0


def exact_outcomes(model: ToyLanguageModel, prompt: Prompt, floor: float) -> dict[Outcome, float]:
    """The exact probability of every output whose probability is at least ``floor``."""
    tokenizer = ToyTokenizer()
    found: dict[Outcome, float] = {}

    def walk(tokens: tuple[int, ...], prob: float) -> None:
        text = "".join(tokenizer.piece(t) for t in tokens)
        logprobs = model.next_token_logprobs(prompt, text)
        scaled = [logprobs[t] / TEMPERATURE for t in _BLOCK]
        top = max(scaled)
        weights = [math.exp(x - top) for x in scaled]
        total = sum(weights)
        for token, weight in zip(_BLOCK, weights, strict=True):
            p = prob * weight / total
            if p < floor:
                continue
            if token == EOS_ID:
                found[(tokens, FinishReason.EOS)] = p
                continue
            longer = (*tokens, token)
            if any(s in text + tokenizer.piece(token) for s in STOP):
                found[(longer, FinishReason.STOP)] = p
            elif len(longer) == LENGTH:
                found[(longer, FinishReason.LENGTH)] = p
            else:
                walk(longer, p)

    walk((), 1.0)
    return found


def goodness_of_fit(observed: Counter[Outcome], model: ToyLanguageModel) -> float:
    """The chi-squared p-value of the observed outputs against the exact distribution (bins:
    every output expected at least 5 times, and one bin for all others)."""
    n = sum(observed.values())
    exact = exact_outcomes(model, PROMPT, floor=5.0 / n)
    assert len(exact) >= 8, "too few outcomes for a meaningful test"
    statistic = 0.0
    for outcome, p in exact.items():
        statistic += (observed[outcome] - n * p) ** 2 / (n * p)
    rest_expected = n * (1.0 - sum(exact.values()))
    rest_observed = n - sum(observed[o] for o in exact)
    statistic += (rest_observed - rest_expected) ** 2 / rest_expected
    return chi2_sf(statistic, len(exact))  # len(exact) + 1 bins, one constraint


def outcome(c: Completion) -> Outcome:
    return c.token_ids, c.finish_reason


def params(seed: int, n: int = 1) -> SamplingParams:
    return SamplingParams(n=n, temperature=TEMPERATURE, max_tokens=LENGTH, stop=STOP, seed=seed)


def test_ngram_drafting_samples_the_models_distribution() -> None:
    spec = ToyLanguageModel(
        "target", speculative=SpeculativeOptions(min_match=1, max_match=2, max_draft=3)
    )
    plain = ToyLanguageModel("target")
    observed: Counter[Outcome] = Counter()
    proposed = accepted = 0
    for seed in range(SAMPLES):
        [[c]] = spec.generate([PROMPT], params(seed))
        [[reference]] = plain.generate([PROMPT], params(seed))
        assert outcome(c) == outcome(reference)  # the very draws of plain sampling
        observed[outcome(c)] += 1
        proposed += c.draft_tokens_proposed
        accepted += c.draft_tokens_accepted
    assert 0.05 * proposed < accepted < 0.9 * proposed  # proposals both kept and rejected
    assert goodness_of_fit(observed, plain) > 1e-3


def best_draft(drafts: list[Completion]) -> Completion:
    """A selection that depends on the drafts' tokens: the most likely under the draft."""
    return max(drafts, key=lambda c: (c.sum_logprob, c.token_ids))


def test_hybrid_rule_on_the_best_draft_samples_the_targets_distribution() -> None:
    target = ToyLanguageModel("target")
    draft = ToyLanguageModel("draft", mismatch=0.3)
    observed: Counter[Outcome] = Counter()
    proposed = accepted = 0
    for seed in range(SAMPLES):
        [drafts] = draft.generate([PROMPT], params(10_000 + seed, n=4))
        proposal = best_draft(drafts).token_ids
        verified = target.verify_proposals(PROMPT, [proposal], params(seed), lambda _: True)
        assert verified.completions is not None
        observed[outcome(verified.completions[0])] += 1
        proposed += len(proposal)
        accepted += verified.accepted[0]
    assert accepted > 0.05 * proposed  # the target kept part of the drafts
    assert goodness_of_fit(observed, target) > 1e-3


def test_a_biased_rule_fails_the_same_test() -> None:
    """Control: always keeping the best draft's first token changes the distribution."""
    target = ToyLanguageModel("target")
    draft = ToyLanguageModel("draft", mismatch=0.3)
    tokenizer = ToyTokenizer()
    observed: Counter[Outcome] = Counter()
    for seed in range(SAMPLES):
        [drafts] = draft.generate([PROMPT], params(10_000 + seed, n=4))
        first = best_draft(drafts).token_ids[:1]
        if not first or any(s in tokenizer.piece(first[0]) for s in STOP):
            [[c]] = target.generate([PROMPT], params(seed))
            observed[outcome(c)] += 1
            continue
        rest_prompt = Prompt(PROMPT.question, PROMPT.partial + tokenizer.piece(first[0]))
        rest = SamplingParams(temperature=TEMPERATURE, max_tokens=LENGTH - 1, stop=STOP, seed=seed)
        [[c]] = target.generate([rest_prompt], rest)
        observed[((*first, *c.token_ids), c.finish_reason)] += 1
    assert goodness_of_fit(observed, target) < 1e-6


def test_verified_continuations_are_the_plain_samples() -> None:
    target = ToyLanguageModel("target")
    draft = ToyLanguageModel("draft", mismatch=0.3)
    step = SamplingParams(n=4, temperature=0.5, max_tokens=40, stop=STOP, seed=7)
    [drafts] = draft.generate([PROMPT], step)
    verified = target.verify_proposals(
        PROMPT, [d.token_ids for d in drafts], step, lambda scores: len(scores) == 4
    )
    [plain] = target.generate([PROMPT], step)
    assert verified.completions is not None
    assert [c.token_ids for c in verified.completions] == [c.token_ids for c in plain]
    scored = target.logprobs([PROMPT] * 4, [d.text for d in drafts])
    assert [s.logprobs for s in verified.scores] == [s.logprobs for s in scored]
    assert all(c.cached_tokens == c.prompt_tokens for c in verified.completions)
    declined = target.verify_proposals(PROMPT, [d.token_ids for d in drafts], step, lambda _: False)
    assert declined.completions is None and declined.generate_interval is None
    assert declined.accepted == verified.accepted


def _roles(target: ToyLanguageModel, draft: ToyLanguageModel) -> Roles:
    return Roles(target=target, draft=draft, reward=ToyRewardModel())


@pytest.mark.parametrize("question", ["What is 4 + 9?", "Add 7 and 5 then 3", "What is 11 + 6?"])
def test_specs_hybrid_commits_the_same_steps_with_less_target_decoding(question: str) -> None:
    # tau_sw 0: draft after every target step; tau_acc 9.5: most drafts are rejected
    options = SpecsOptions(n=4, tau_acc=9.5, tau_sw=0.0, temperature=0.5, seed=3)
    results = {
        hybrid: SpecsPolicy(
            options.model_copy(update={"hybrid": hybrid}),
            _roles(ToyLanguageModel("target"), ToyLanguageModel("draft", mismatch=0.3)),
        ).run(question)
        for hybrid in (False, True)
    }
    off, on = results[False], results[True]
    assert [s.text for s in on.steps] == [s.text for s in off.steps]
    assert on.text == off.text and on.final_score == off.final_score
    hybrid_steps = [s for s in on.steps if s.decision == "draft_rejected_hybrid"]
    assert len(hybrid_steps) == off.rejected_draft_steps == on.usage.hybrid_steps > 0
    kept = [
        c.draft_prefix_tokens
        for s in hybrid_steps
        for c in s.candidates
        if c.source is StepSource.TARGET
    ]
    assert None not in kept
    assert sum(k or 0 for k in kept) == on.usage.hybrid_accepted
    assert 0 < on.usage.hybrid_accepted <= on.usage.hybrid_proposed
    generated = on.usage.tokens["toy-target"].generated
    assert generated == off.usage.tokens["toy-target"].generated  # the same candidates
    assert on.extra["hybrid"] is True


def test_hybrid_needs_a_shared_tokenizer() -> None:
    class OtherVocabulary(ToyLanguageModel):
        """A test double: a toy draft claiming another tokenizer."""

        @property
        def tokenizer_id(self) -> str:
            return "another-vocabulary"

    policy = SpecsPolicy(
        SpecsOptions(hybrid=True), _roles(ToyLanguageModel("target"), OtherVocabulary("draft"))
    )
    with pytest.raises(ConfigError, match="share a tokenizer"):
        policy.run(QUESTION)


def accepted_tokens(shared: bool) -> tuple[int, int]:
    model = ToyLanguageModel("target", speculative=SpeculativeOptions(shared=shared))
    accepted = generated = 0
    for question in ("What is 2 + 3?", "What is 4 + 9?", "What is 7 + 1?", "What is 12 + 5?"):
        params = SamplingParams(n=8, temperature=0.5, max_tokens=80, seed=1)
        [samples] = model.generate([Prompt(question)], params)
        accepted += sum(c.draft_tokens_accepted for c in samples)
        generated += sum(len(c.token_ids) for c in samples)
    return accepted, generated


def test_sharing_the_table_across_samples_raises_the_accepted_length() -> None:
    shared, generated = accepted_tokens(True)
    private, same_generated = accepted_tokens(False)
    assert generated == same_generated  # the same samples either way
    assert shared > 3 * max(private, 1)


def test_yaml_config_turns_on_the_drafter_and_the_hybrid() -> None:
    config = {
        "draft": {"backend": "toy", "variant": "draft", "mismatch": 0.3},
        "target": {"backend": "toy", "speculative": {"max_draft": 3, "min_match": 1}},
        "reward": {"name": "toy"},
        "policy": {
            "name": "specs",
            "hybrid": True,
            "tau_acc": 9.5,
            "tau_sw": 0.0,
            "temperature": 0.5,
        },
    }
    with Specs.from_config(config) as specs:
        result = specs.solve("What is 4 + 9?")
    data = ResultRecord.from_result(result).to_json()
    assert data["tokens"]["toy-target"]["draft_rounds"] > 0
    assert data["hybrid"]["steps"] == result.usage.hybrid_steps > 0
    assert data["extra"]["hybrid"] is True

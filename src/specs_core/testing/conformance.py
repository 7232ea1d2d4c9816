r"""The conformance suite every backend and reward model runs.

Each check takes the model (and a tolerance) and raises :class:`AssertionError` naming the check
and what went wrong. Run them all at once::

    from specs_core.testing import check_language_model
    check_language_model(model, tolerance=1e-3)

or one test per check, so a failure names the check::

    @pytest.mark.parametrize("name", sorted(LANGUAGE_MODEL_CHECKS))
    def test_conformance(model, name):
        LANGUAGE_MODEL_CHECKS[name](model, tolerance=1e-3)

The checks are small (a few prompts, at most 16 new tokens each), so a 135M-parameter model on
two CPU cores runs the whole suite in seconds. Raise ``tolerance`` for engines whose scoring and
generation paths differ numerically (batched prefill against one-token decode).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from specs_core.errors import InvalidInputError
from specs_core.protocols import Capabilities, LanguageModel, RewardModel
from specs_core.text import DEFAULT_STEP_DELIMITER
from specs_core.types import Completion, FinishReason, Prompt, SamplingParams, TokenLogprobs

__all__ = [
    "DEFAULT_TOLERANCE",
    "LANGUAGE_MODEL_CHECKS",
    "PREFIX_TOLERANCE_FLOOR",
    "REWARD_MODEL_CHECKS",
    "ConformanceCheck",
    "check_language_model",
    "check_reward_model",
]

DEFAULT_TOLERANCE = 1e-3

QUESTIONS: tuple[str, ...] = (
    "What is 2 + 3?",
    "Tom has 7 apples and buys 8 more. How many apples does he have?",
    "Compute 4 + 5 + 6.",
)
CONTINUATIONS: tuple[str, ...] = (
    "First, add 2 and 3.",
    " The answer is \\boxed{5}.",
    "So 2 + 3 = 5\n\nTherefore",
)


#: A check: ``check(model, tolerance)`` raises :class:`AssertionError` when it fails.
ConformanceCheck = Callable[..., None]


def _fail(check: str, message: str) -> AssertionError:
    return AssertionError(f"conformance check {check!r} failed: {message}")


def _greedy(max_tokens: int, stop: tuple[str, ...] = ()) -> SamplingParams:
    return SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens, stop=stop)


def _one(model: LanguageModel, prompt: Prompt, params: SamplingParams) -> Completion:
    [[completion]] = model.generate([prompt], params)
    return completion


def _shape(check: str, got: object, prompts: int, n: int) -> list[list[Completion]]:
    if not isinstance(got, list) or len(got) != prompts:
        size = len(got) if isinstance(got, list) else type(got).__name__
        raise _fail(check, f"generate returned {size} groups for {prompts} prompts")
    for i, group in enumerate(got):
        if not isinstance(group, list) or len(group) != n:
            size = len(group) if isinstance(group, list) else type(group).__name__
            raise _fail(check, f"prompt {i}: {size} completions for n={n}")
        for c in group:
            if not isinstance(c, Completion):
                raise _fail(check, f"prompt {i}: got {type(c).__name__}, expected Completion")
    return got


def _summary(c: Completion) -> str:
    return f"{c.text!r} ({c.finish_reason.value}, {c.completion_tokens} tokens)"


# -- language-model checks ------------------------------------------------------------------


def check_interface(model: LanguageModel, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """The model has a name, declared capabilities, and generate/logprobs/close."""
    name = "interface"
    if not isinstance(model, LanguageModel):
        raise _fail(name, f"{type(model).__name__} lacks generate, logprobs, close or name")
    if not isinstance(model.name, str) or not model.name:
        raise _fail(name, f"name must be a non-empty string, got {model.name!r}")
    if not isinstance(model.capabilities, Capabilities):
        raise _fail(name, f"capabilities must be a Capabilities, got {model.capabilities!r}")
    got = model.generate([Prompt(QUESTIONS[0])], _greedy(2))
    for c in _shape(name, got, 1, 1)[0]:
        if not isinstance(c.finish_reason, FinishReason):
            raise _fail(name, f"finish_reason must be a FinishReason, got {c.finish_reason!r}")


def check_batching(model: LanguageModel, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """k prompts x n give k lists of n; a greedy batch equals the prompts run one by one."""
    name = "batching"
    prompts = [Prompt(q) for q in QUESTIONS[:2]]
    sampled = SamplingParams(n=3, temperature=0.8, max_tokens=4, seed=11)
    _shape(name, model.generate(prompts, sampled), 2, 3)
    greedy = _greedy(8)
    batch = _shape(name, model.generate(prompts, greedy), len(prompts), 1)
    for i, prompt in enumerate(prompts):
        alone = _one(model, prompt, greedy)
        together = batch[i][0]
        if alone.text != together.text or alone.token_ids != together.token_ids:
            raise _fail(
                name,
                f"prompt {i} greedy in a batch gave {_summary(together)}, alone "
                f"{_summary(alone)}: results must not depend on the batch",
            )


def _stop_inside(text: str) -> str | None:
    """A short stop string occurring in ``text`` before its end."""
    for start in range(len(text) // 3, len(text) - 3):
        stop = text[start : start + 3]
        if stop.strip() and text.find(stop) + len(stop) < len(text):
            return stop
    return None


def check_stops(model: LanguageModel, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """A stop string ends the text and is kept (finish STOP); max_tokens gives LENGTH."""
    name = "stops"
    prompt = Prompt(QUESTIONS[1])
    full = _one(model, prompt, _greedy(16))
    stop = _stop_inside(full.text)
    if stop is None:
        raise _fail(name, f"greedy text {_summary(full)} is too short to place a stop string in")
    expected = full.text[: full.text.find(stop) + len(stop)]
    cut = _one(model, prompt, _greedy(16, (stop, "@@never@@")))
    if cut.finish_reason is not FinishReason.STOP or cut.text != expected:
        raise _fail(
            name,
            f"with stop {stop!r} expected {expected!r} (finish stop), got {_summary(cut)}; "
            "the text must end right after the first stop string, which is kept",
        )
    delim = DEFAULT_STEP_DELIMITER
    params = SamplingParams(n=2, temperature=1.0, max_tokens=12, stop=(delim,), seed=3)
    for c in _shape(name, model.generate([prompt], params), 1, 2)[0]:
        found = c.text.find(delim)
        if found >= 0 and (
            c.finish_reason is not FinishReason.STOP or found + len(delim) != len(c.text)
        ):
            raise _fail(name, f"stop {delim!r} appears inside {_summary(c)} but did not end it")
        if c.finish_reason is FinishReason.STOP and not c.text.endswith(delim):
            raise _fail(name, f"{_summary(c)} finished STOP without ending with its stop string")
    short = _one(model, prompt, _greedy(3))
    if full.completion_tokens > 3 and (
        short.finish_reason is not FinishReason.LENGTH or short.completion_tokens != 3
    ):
        raise _fail(name, f"max_tokens=3 must give LENGTH after 3 tokens, got {_summary(short)}")
    if not full.text.startswith(short.text):
        raise _fail(name, f"max_tokens=3 gave {short.text!r}, not a prefix of {full.text!r}")


def _generated_ids(c: Completion, scored: TokenLogprobs) -> tuple[int, ...] | None:
    """The generated ids that the scorer's tokenization should match (EOS dropped if present)."""
    if scored.token_ids == c.token_ids:
        return c.token_ids
    if c.finish_reason is FinishReason.EOS and scored.token_ids == c.token_ids[:-1]:
        return c.token_ids[:-1]
    return None


def check_logprob_consistency(model: LanguageModel, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Scoring generated text returns the untempered logprobs recorded while generating."""
    name = "logprob_consistency"
    prompts = [Prompt(q) for q in QUESTIONS[:2]]
    groups = model.generate(prompts, _greedy(12))
    sampled = model.generate(
        prompts[:1], SamplingParams(n=2, temperature=0.7, max_tokens=12, seed=5)
    )
    pairs = [(p, c) for p, g in zip(prompts, groups, strict=True) for c in g]
    pairs += [(prompts[0], c) for c in sampled[0]]
    for _, c in pairs:
        if len(c.logprobs) != len(c.token_ids):
            raise _fail(name, f"{len(c.logprobs)} logprobs for {len(c.token_ids)} tokens")
        bad = [lp for lp in c.logprobs if not math.isfinite(lp) or lp > tolerance]
        if bad:
            raise _fail(name, f"generated logprobs must be finite and <= 0, got {bad[:3]}")
    scored = model.logprobs([p for p, _ in pairs], [c.text for _, c in pairs])
    compared = 0
    for (_, c), s in zip(pairs, scored, strict=False):
        ids = _generated_ids(c, s)
        if ids is None:  # the text re-tokenizes differently: nothing to compare
            continue
        compared += 1
        for k, (want, got) in enumerate(zip(c.logprobs, s.logprobs, strict=False)):
            if abs(want - got) > tolerance:
                raise _fail(
                    name,
                    f"token {k} of {c.text!r}: generation recorded {want:.5f}, scoring gives "
                    f"{got:.5f} (tolerance {tolerance}); record untempered logprobs",
                )
    if compared == 0:
        raise _fail(name, "no generated text re-tokenized into its generated tokens")


def check_seeded_determinism(model: LanguageModel, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Greedy is repeatable; the same seed repeats samples, another seed and sample index differ."""
    name = "seeded_determinism"
    prompt = Prompt(QUESTIONS[0])
    first, second = _one(model, prompt, _greedy(8)), _one(model, prompt, _greedy(8))
    if first.text != second.text:
        raise _fail(name, f"greedy gave {first.text!r} then {second.text!r}")
    if not model.capabilities.seeded:
        return

    def texts(seed: int) -> list[str]:
        params = SamplingParams(n=3, temperature=1.0, max_tokens=6, seed=seed)
        return [c.text for c in model.generate([prompt], params)[0]]

    a, b, other = texts(1234), texts(1234), texts(4321)
    if a != b:
        raise _fail(name, f"seed 1234 gave {a} then {b}; the same seed must repeat samples")
    if a == other:
        raise _fail(name, f"seeds 1234 and 4321 gave the same samples {a}")
    if len(set(a)) < 2:
        raise _fail(name, f"the samples of one call are identical {a}; draw each separately")


def check_greedy_sampling(model: LanguageModel, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """temperature 0 gives n identical greedy samples; a tiny top_p also gives the greedy text."""
    name = "greedy_sampling"
    prompt = Prompt(QUESTIONS[2])
    greedy = _one(model, prompt, _greedy(8)).text
    zero = model.generate([prompt], SamplingParams(n=2, temperature=0.0, max_tokens=8))
    nucleus = model.generate(
        [prompt], SamplingParams(n=2, temperature=1.0, top_p=1e-6, max_tokens=8, seed=9)
    )
    for label, got in (("temperature=0", zero), ("top_p=1e-6", nucleus)):
        texts = [c.text for c in _shape(name, got, 1, 2)[0]]
        if texts != [greedy, greedy]:
            raise _fail(name, f"{label} gave {texts}, expected the greedy text {greedy!r} twice")


def check_prefix_sharing(model: LanguageModel, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Scoring several continuations of one prompt in one call equals scoring each alone."""
    name = "prefix_sharing"
    shared, other = Prompt(QUESTIONS[0]), Prompt(QUESTIONS[1])
    prompts = [shared, shared, other, shared, shared]
    texts = [*CONTINUATIONS[:2], CONTINUATIONS[0], CONTINUATIONS[2], ""]
    together = model.logprobs(prompts, texts)
    if len(together) != len(prompts):
        raise _fail(name, f"logprobs returned {len(together)} results for {len(prompts)} pairs")
    for i, (prompt, text) in enumerate(zip(prompts, texts, strict=False)):
        [alone] = model.logprobs([prompt], [text])
        got = together[i]
        if len(got.logprobs) != len(got.token_ids):
            raise _fail(name, f"{len(got.logprobs)} logprobs for {len(got.token_ids)} tokens")
        if not text and got.token_ids:
            raise _fail(name, f"an empty continuation must score to no tokens, got {got}")
        if got.token_ids != alone.token_ids:
            raise _fail(name, f"continuation {i} {text!r} tokenized differently in a batch")
        diffs = [abs(x - y) for x, y in zip(got.logprobs, alone.logprobs, strict=False)]
        if diffs and max(diffs) > tolerance:
            raise _fail(
                name,
                f"continuation {i} {text!r}: batched logprobs differ from scoring alone by "
                f"{max(diffs):.5f} (tolerance {tolerance}); reset the shared prefix between "
                "continuations",
            )


def _split_point(text: str) -> int | None:
    """Where to cut a greedy text into a partial and its rest: after a step, else a word start."""
    delim = DEFAULT_STEP_DELIMITER
    after = text.find(delim)
    if after >= 0 and after + len(delim) < len(text):
        return after + len(delim)
    spaces = [i for i in range(1, len(text) - 1) if text[i] == " "]
    return min(spaces, key=lambda i: abs(i - len(text) // 2)) if spaces else None


def check_partial_continuation(model: LanguageModel, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Generating from ``Prompt(q, partial)`` continues the open assistant message."""
    name = "partial_continuation"
    question = QUESTIONS[1]
    full = _one(model, Prompt(question), _greedy(16)).text
    cut = _split_point(full)
    if cut is None:
        raise _fail(name, f"greedy text {full!r} has no word boundary to split a partial at")
    partial, rest = full[:cut], full[cut:]
    got = _one(model, Prompt(question, partial=partial), _greedy(4)).text
    common = min(len(got), len(rest))
    if common == 0 or got[:common] != rest[:common]:
        raise _fail(
            name,
            f"greedy from partial {partial!r} gave {got!r}, but the greedy text goes on with "
            f"{rest!r}: append the partial to the open assistant message and continue it",
        )


def check_token_counts(model: LanguageModel, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """prompt_tokens > 0, cached <= prompt, completion_tokens == len(logprobs) <= max_tokens."""
    name = "token_counts"
    short, long = Prompt(QUESTIONS[0]), Prompt(QUESTIONS[0], partial=CONTINUATIONS[2])
    params = SamplingParams(n=2, temperature=0.7, max_tokens=6, seed=2)
    groups = _shape(name, model.generate([short, long], params), 2, 2)
    for group in groups:
        for c in group:
            if c.prompt_tokens <= 0 or not 0 <= c.cached_tokens <= c.prompt_tokens:
                raise _fail(
                    name, f"prompt_tokens={c.prompt_tokens}, cached_tokens={c.cached_tokens}"
                )
            if not c.completion_tokens == len(c.logprobs) <= params.max_tokens:
                raise _fail(
                    name,
                    f"completion_tokens={c.completion_tokens}, {len(c.logprobs)} logprobs, "
                    f"max_tokens={params.max_tokens}",
                )
    if groups[1][0].prompt_tokens <= groups[0][0].prompt_tokens:
        raise _fail(name, "a prompt with a longer partial must report more prompt_tokens")
    for s in model.logprobs([short, long], [CONTINUATIONS[1], CONTINUATIONS[1]]):
        if s.prompt_tokens <= 0 or not 0 <= s.cached_tokens <= s.prompt_tokens:
            raise _fail(name, f"scoring: prompt_tokens={s.prompt_tokens}, cached={s.cached_tokens}")
        if len(s.token_ids) != len(s.logprobs) or not s.token_ids:
            raise _fail(name, f"scoring: {len(s.token_ids)} ids and {len(s.logprobs)} logprobs")


#: Every language-model check by name.
LANGUAGE_MODEL_CHECKS: Mapping[str, ConformanceCheck] = {
    "interface": check_interface,
    "batching": check_batching,
    "stops": check_stops,
    "logprob_consistency": check_logprob_consistency,
    "seeded_determinism": check_seeded_determinism,
    "greedy_sampling": check_greedy_sampling,
    "prefix_sharing": check_prefix_sharing,
    "partial_continuation": check_partial_continuation,
    "token_counts": check_token_counts,
}


# -- reward-model checks --------------------------------------------------------------------

REWARD_QUESTION = "What is 2 + 3?"
REWARD_SOLUTIONS: tuple[tuple[str, ...], ...] = (
    ("First, add 2 and 3.", "So 2 + 3 = 5.", "Therefore, the final answer is $\\boxed{5}$."),
    ("We multiply 2 by 3 to get 6.", "The answer is $\\boxed{6}$."),
    ("The answer is $\\boxed{5}$.",),
)


def _rewards(
    name: str, model: RewardModel, solutions: Sequence[Sequence[str]]
) -> list[list[float]]:
    got = model.score(REWARD_QUESTION, [list(s) for s in solutions])
    if not isinstance(got, list) or len(got) != len(solutions):
        raise _fail(name, f"score returned {got!r} for {len(solutions)} solutions")
    for sol, row in zip(solutions, got, strict=False):
        if not isinstance(row, list) or len(row) != len(sol):
            raise _fail(name, f"{row!r} for a solution of {len(sol)} steps; one reward per step")
    return got


def _close(a: Sequence[float], b: Sequence[float], tolerance: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=False))


def check_reward_shape(model: RewardModel, tolerance: float = 1e-6) -> None:
    """One list per solution, one reward per step."""
    _rewards("reward_shape", model, REWARD_SOLUTIONS)


def check_reward_range(model: RewardModel, tolerance: float = 1e-6) -> None:
    """Every reward is a finite number in [0, 1]."""
    name = "reward_range"
    for row in _rewards(name, model, REWARD_SOLUTIONS):
        for r in row:
            ok = isinstance(r, (int, float)) and not isinstance(r, bool)
            if not ok or not math.isfinite(r) or not 0.0 <= r <= 1.0:
                raise _fail(name, f"reward {r!r} is not a finite number in [0, 1]")


def check_reward_deterministic(model: RewardModel, tolerance: float = 1e-6) -> None:
    """Scoring the same solutions twice gives the same rewards."""
    name = "reward_deterministic"
    first, second = (_rewards(name, model, REWARD_SOLUTIONS) for _ in range(2))
    if not all(_close(a, b, tolerance) for a, b in zip(first, second, strict=False)):
        raise _fail(name, f"rewards changed between calls: {first} then {second}")


def check_reward_batch(model: RewardModel, tolerance: float = 1e-6) -> None:
    """A batch of solutions scores as each solution alone."""
    name = "reward_batch"
    batch = _rewards(name, model, REWARD_SOLUTIONS)
    for sol, row in zip(REWARD_SOLUTIONS, batch, strict=False):
        [alone] = _rewards(name, model, [sol])
        if not _close(row, alone, tolerance):
            raise _fail(name, f"{list(sol)} scored {row} in a batch, {alone} alone")


#: The least difference :func:`check_reward_prefix` tolerates: scoring a prefix alone and the whole
#: solution in one pass evaluates sequences of different lengths, which engines compute with
#: slightly different numerics; a reward that looks ahead differs by far more.
PREFIX_TOLERANCE_FLOOR = 0.01


def check_reward_prefix(model: RewardModel, tolerance: float = 1e-6) -> None:
    """A step's reward depends only on the steps up to it (rewards are cached by prefix).

    The tolerance used is at least :data:`PREFIX_TOLERANCE_FLOOR`.
    """
    name = "reward_prefix"
    tolerance = max(tolerance, PREFIX_TOLERANCE_FLOOR)
    full = REWARD_SOLUTIONS[0]
    [whole] = _rewards(name, model, [full])
    for j in range(1, len(full)):
        [part] = _rewards(name, model, [full[:j]])
        if not _close(part, whole[:j], tolerance):
            raise _fail(
                name,
                f"the first {j} steps scored {part} alone, {whole[:j]} in full (tolerance "
                f"{tolerance}): a step's reward must not depend on later steps",
            )


def check_reward_score_last(model: RewardModel, tolerance: float = 1e-6) -> None:
    """``score_last``, when present, equals the last reward of ``score``."""
    name = "reward_score_last"
    score_last = getattr(model, "score_last", None)
    if score_last is None:
        return
    last = score_last(REWARD_QUESTION, [list(s) for s in REWARD_SOLUTIONS])
    want = [row[-1] for row in _rewards(name, model, REWARD_SOLUTIONS)]
    if not isinstance(last, list) or not _close(last, want, tolerance):
        raise _fail(name, f"score_last gave {last!r}, the last rewards of score are {want}")


#: Every reward-model check by name.
REWARD_MODEL_CHECKS: Mapping[str, ConformanceCheck] = {
    "reward_shape": check_reward_shape,
    "reward_range": check_reward_range,
    "reward_deterministic": check_reward_deterministic,
    "reward_batch": check_reward_batch,
    "reward_prefix": check_reward_prefix,
    "reward_score_last": check_reward_score_last,
}


def _run(
    table: Mapping[str, Callable[..., None]],
    model: object,
    tolerance: float,
    checks: Iterable[str] | None,
) -> None:
    names = list(table) if checks is None else list(checks)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise InvalidInputError(f"unknown checks {unknown}; known checks: {', '.join(table)}")
    failures: list[str] = []
    for check in names:
        try:
            table[check](model, tolerance)
        except AssertionError as e:
            failures.append(str(e))
        except Exception as e:
            failures.append(f"conformance check {check!r} raised {type(e).__name__}: {e}")
    if failures:
        raise AssertionError(
            f"{len(failures)} of {len(names)} checks failed:\n" + "\n".join(failures)
        )


def check_language_model(
    model: LanguageModel,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    checks: Iterable[str] | None = None,
) -> None:
    """Run the language-model checks (all, or the named ones) and report every failure.

    Args:
        model: the model under test.
        tolerance: the largest absolute logprob difference accepted between two paths.
        checks: names from :data:`LANGUAGE_MODEL_CHECKS` (default: all).

    Raises:
        AssertionError: listing each failed check by name with what went wrong.
        InvalidInputError: a name in ``checks`` is unknown.
    """
    _run(LANGUAGE_MODEL_CHECKS, model, tolerance, checks)


def check_reward_model(
    model: RewardModel, *, tolerance: float = 1e-6, checks: Iterable[str] | None = None
) -> None:
    """Run the reward-model checks (all, or the named ones) and report every failure.

    Args:
        model: the reward model under test.
        tolerance: the largest absolute reward difference accepted between two calls.
        checks: names from :data:`REWARD_MODEL_CHECKS` (default: all).

    Raises:
        AssertionError: listing each failed check by name with what went wrong.
        InvalidInputError: a name in ``checks`` is unknown.
    """
    _run(REWARD_MODEL_CHECKS, model, tolerance, checks)

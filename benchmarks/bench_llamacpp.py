"""The llama.cpp backend's batching and caching, measured side by side on one model in one run.

    python benchmarks/bench_llamacpp.py [--model smollm2-135m] [--repeats 3] [--max-tokens 64]
        [--threads 2]

Figures (medians over the repeats; each repetition uses another question and alternates which
variant runs first, so background load hits both alike):

1. generation: ``n=4`` samples decoded together in one batch against four ``n=1`` calls one after
   another (same seeds, same maximum length); wall time and generated tokens per second.
2. scoring: four candidate steps after a ~200-token prefix, in one call that evaluates the prefix
   once and reuses its KV cache, against scoring each candidate from an empty cache.
3. prompt evaluation speed at ``n_ubatch=32`` (the default, which keeps every evaluation path
   numerically identical) against ``n_ubatch=512``.
4. consistency: the largest difference between the logprobs recorded while generating and those
   returned by scoring the generated text (nats per token).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from specs_core.types import Prompt, SamplingParams

from specs_llamacpp import LlamaCppModel, LlamaCppOptions

QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the money "
    "she needs. Her parents decided to give her $15 for that purpose, and her grandparents twice "
    "as much as her parents. How much more money does Betty need to buy the wallet?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he "
    "write a year?",
    "Albert buys 2 large pizzas and 2 small pizzas. A large pizza has 16 slices and a small pizza "
    "has 8 slices. If he eats it all, how many pieces does he eat that day?",
]
PARTIAL = (
    "Let us work through the problem one careful step at a time, writing down every quantity we "
    "know before combining them.\n\nFirst, we list the numbers given in the question and what "
    "each of them means, so that no quantity is used twice or forgotten along the way.\n\n"
    "Next, we decide which operations connect these quantities: additions for amounts that are "
    "put together, multiplications for repeated amounts, and divisions for equal sharing.\n\n"
    "Then we carry out each operation, checking the units of every intermediate result so that "
    "the final number answers exactly what the question asks for.\n\n"
)
CANDIDATES = [
    "We start from the first quantity in the question and write it down together with its unit, "
    "so that the next operation has a clear starting point.\n\n",
    "The question combines two amounts, so the natural first operation is an addition of the two "
    "numbers that are given at the start.\n\n",
    "Half of a quantity means dividing it by two, and twice a quantity means multiplying it by "
    "two; we apply these rules to the numbers above.\n\n",
    "Therefore, after combining all the quantities as described, the final answer is "
    "$\\boxed{72}$.",
]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bench_generation(model: LlamaCppModel, repeats: int, max_tokens: int) -> dict[str, float]:
    """n=4 in one batch against four n=1 calls."""
    batched_s: list[float] = []
    sequential_s: list[float] = []
    batched_tps: list[float] = []
    sequential_tps: list[float] = []
    for r in range(repeats):
        prompt = Prompt(QUESTIONS[r % len(QUESTIONS)])
        params = SamplingParams(n=4, temperature=0.8, max_tokens=max_tokens, seed=r)

        def batched(prompt: Prompt = prompt, params: SamplingParams = params) -> int:
            model.runtime.reset()
            [samples] = model.generate([prompt], params)
            return sum(c.completion_tokens for c in samples)

        def sequential(prompt: Prompt = prompt, r: int = r) -> int:
            model.runtime.reset()
            total = 0
            for j in range(4):
                one = SamplingParams(n=1, temperature=0.8, max_tokens=max_tokens, seed=r * 10 + j)
                total += model.generate([prompt], one)[0][0].completion_tokens
            return total

        order: list[tuple[str, Callable[[], int]]] = [
            ("batched", batched),
            ("sequential", sequential),
        ]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            seconds, tokens = _timed(fn)
            (batched_s if name == "batched" else sequential_s).append(seconds)
            (batched_tps if name == "batched" else sequential_tps).append(tokens / seconds)
    return {
        "batched_s": _median(batched_s),
        "sequential_s": _median(sequential_s),
        "batched_tok_s": _median(batched_tps),
        "sequential_tok_s": _median(sequential_tps),
    }


def bench_scoring(model: LlamaCppModel, repeats: int) -> dict[str, float]:
    """Four candidates after a long prefix: prefix reused against scored from scratch."""
    reuse_s: list[float] = []
    scratch_s: list[float] = []
    prefix_tokens = cont_tokens = 0
    for r in range(repeats):
        prompt = Prompt(QUESTIONS[r % len(QUESTIONS)], partial=PARTIAL)

        def reused(prompt: Prompt = prompt) -> None:
            model.runtime.reset()
            model.logprobs([prompt] * len(CANDIDATES), CANDIDATES)

        def scratch(prompt: Prompt = prompt) -> None:
            for text in CANDIDATES:
                model.runtime.reset()
                model.logprobs([prompt], [text])

        order: list[tuple[str, Callable[[], None]]] = [("reuse", reused), ("scratch", scratch)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            seconds, _ = _timed(fn)
            (reuse_s if name == "reuse" else scratch_s).append(seconds)
        scored = model.logprobs([prompt] * len(CANDIDATES), CANDIDATES)
        prefix_tokens = scored[0].prompt_tokens
        cont_tokens = sum(len(s.token_ids) for s in scored)
    return {
        "reuse_s": _median(reuse_s),
        "scratch_s": _median(scratch_s),
        "prefix_tokens": prefix_tokens,
        "continuation_tokens": cont_tokens,
    }


def bench_prompt_eval(source: str, threads: int, repeats: int) -> dict[str, float]:
    """Prompt evaluation speed at n_ubatch 32 and 512 (two loads of the same file)."""
    rates: dict[int, list[float]] = {32: [], 512: []}
    models = {
        u: LlamaCppModel(LlamaCppOptions(model=source, n_threads=threads, n_ubatch=u))
        for u in rates
    }
    try:
        for r in range(repeats):
            prompt = Prompt(QUESTIONS[r % len(QUESTIONS)], partial=PARTIAL * 2)
            for u in (32, 512) if r % 2 == 0 else (512, 32):
                m = models[u]
                tokens = m.runtime.tokenize(m.render(prompt))
                m.runtime.reset()
                start = time.perf_counter()
                m.runtime.evaluate(tokens, len(tokens))
                seconds = time.perf_counter() - start
                rates[u].append(len(tokens) / seconds)
    finally:
        for m in models.values():
            m.close()
    return {"ubatch32_tok_s": _median(rates[32]), "ubatch512_tok_s": _median(rates[512])}


def consistency(model: LlamaCppModel, max_tokens: int) -> tuple[float, int]:
    """Largest |generation logprob - scoring logprob| over four samples, and tokens compared."""
    prompt = Prompt(QUESTIONS[0])
    params = SamplingParams(n=4, temperature=0.8, max_tokens=max_tokens, seed=99)
    [samples] = model.generate([prompt], params)
    scored = model.logprobs([prompt] * 4, [c.text for c in samples])
    worst, compared = 0.0, 0
    for c, s in zip(samples, scored, strict=True):
        if s.token_ids == c.token_ids:
            compared += len(c.logprobs)
            worst = max([worst, *(abs(a - b) for a, b in zip(c.logprobs, s.logprobs, strict=True))])
    return worst, compared


def main() -> None:
    """Run every measurement and print the figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="embedded name or .gguf path")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    model = LlamaCppModel(LlamaCppOptions(model=args.model, n_threads=args.threads))
    load_s, _ = _timed(lambda: model.runtime)
    print(
        f"model {args.model}: loaded in {load_s:.2f} s; threads {args.threads}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; repeats {args.repeats}"
    )
    model.generate([Prompt(QUESTIONS[0])], SamplingParams(max_tokens=2, seed=0))  # warm up

    g = bench_generation(model, args.repeats, args.max_tokens)
    print(f"generation, 4 samples of up to {args.max_tokens} tokens:")
    print(f"  n=4 batched     {g['batched_s']:7.2f} s  {g['batched_tok_s']:7.1f} tok/s")
    print(f"  4 x n=1 in turn {g['sequential_s']:7.2f} s  {g['sequential_tok_s']:7.1f} tok/s")
    print(
        f"  batched/sequential: time x{g['batched_s'] / g['sequential_s']:.2f}, "
        f"throughput x{g['batched_tok_s'] / g['sequential_tok_s']:.2f}"
    )

    s = bench_scoring(model, args.repeats)
    print(
        f"scoring, 4 candidates ({s['continuation_tokens']} tokens) after a "
        f"{s['prefix_tokens']}-token prefix:"
    )
    print(f"  prefix KV reused   {s['reuse_s']:7.2f} s")
    print(f"  each from scratch  {s['scratch_s']:7.2f} s")
    print(f"  speed-up from reuse x{s['scratch_s'] / s['reuse_s']:.2f}")

    worst, compared = consistency(model, args.max_tokens)
    print(f"consistency: max |generated - scored| logprob {worst:.2e} nats over {compared} tokens")
    model.close()

    p = bench_prompt_eval(args.model, args.threads, args.repeats)
    print(
        f"prompt evaluation: n_ubatch=32 {p['ubatch32_tok_s']:.1f} tok/s, "
        f"n_ubatch=512 {p['ubatch512_tok_s']:.1f} tok/s "
        f"(32/512 x{p['ubatch32_tok_s'] / p['ubatch512_tok_s']:.2f})"
    )


if __name__ == "__main__":
    main()

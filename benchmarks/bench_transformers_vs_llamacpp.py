"""transformers against llama.cpp on the same model: n=4 batched generation and scoring.

Both engines load SmolLM2-135M-Instruct from the same GGUF file (transformers dequantizes it to
float32; llama.cpp runs the Q4_1 weights) and run in one process, alternating each repetition so
that background load hits both alike. Each repetition uses a new question, so neither engine
serves the prompt from its prefix cache.

    python benchmarks/bench_transformers_vs_llamacpp.py [--repeats 3] [--max-tokens 64]
        [--threads 2] [--conversion]

``--conversion`` also times the first load of the GGUF through transformers (dequantize and
save) against the second (the saved copy), in a temporary cache directory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from specs_core.config import validate_options
from specs_core.plugins import build_registry
from specs_core.types import Prompt, SamplingParams

from specs_transformers import TransformersModel, TransformersOptions
from specs_transformers.loading import resolve_gguf_path

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
    "Albert is wondering how much pizza he can eat in one day. He buys 2 large pizzas and 2 small "
    "pizzas. A large pizza has 16 slices and a small pizza has 8 slices. If he eats it all, how "
    "many pieces does he eat that day?",
]
CONTINUATION = (
    "Natalia sold 48 clips in April. In May she sold half as many, which is 48 / 2 = 24 clips.\n\n"
    "Altogether she sold 48 + 24 = 72 clips in April and May.\n\nTherefore, the final answer is "
    "$\\boxed{72}$."
)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _engines(threads: int, cache_dir: str | None) -> dict[str, Any]:
    gguf = resolve_gguf_path("smollm2-135m")
    registry = build_registry(entry_points=False)
    spec = registry.backend("llamacpp")
    llama_options = validate_options(
        {"model": str(gguf), "n_threads": threads}, spec.options, "llamacpp"
    )
    transformers = TransformersModel(
        TransformersOptions(gguf_file=str(gguf), n_threads=threads, cache_dir=cache_dir)
    )
    seconds, _ = _timed(lambda: transformers.loaded)
    origin = "converted copy" if transformers.loaded.from_cache else "GGUF conversion"
    print(
        f"transformers loaded in {seconds:.1f} s ({origin}), dtype "
        f"{transformers.loaded.model.dtype}, device {transformers.loaded.device}"
    )
    llamacpp = spec.factory(llama_options)
    seconds, _ = _timed(lambda: llamacpp.generate([Prompt("Hi")], SamplingParams(max_tokens=1)))
    print(f"llama.cpp loaded in {seconds:.1f} s")
    return {"transformers": transformers, "llama.cpp": llamacpp}


def _conversion(threads: int) -> None:
    gguf = resolve_gguf_path("smollm2-135m")
    with tempfile.TemporaryDirectory() as tmp:
        times = []
        for _ in range(2):
            model = TransformersModel(
                TransformersOptions(gguf_file=str(gguf), n_threads=threads, cache_dir=tmp)
            )
            seconds, _ = _timed(lambda m=model: m.loaded)
            times.append(seconds)
            model.close()
    print(
        f"| GGUF load through transformers | first (dequantize + save) {times[0]:.1f} s | "
        f"second (saved copy) {times[1]:.1f} s | {times[0] / times[1]:.1f}x |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--conversion", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats > len(QUESTIONS) - 1:
        parser.error(f"--repeats must be at most {len(QUESTIONS) - 1}")
    engines = _engines(args.threads, None)
    for model in engines.values():  # warm-up (first-call allocations)
        model.generate([Prompt(QUESTIONS[-1])], SamplingParams(n=4, max_tokens=4, seed=0))
        model.logprobs([Prompt(QUESTIONS[-1])] * 2, ["So", "We"])
    gen: dict[str, list[float]] = {name: [] for name in engines}
    gen_tokens: dict[str, list[int]] = {name: [] for name in engines}
    score: dict[str, list[float]] = {name: [] for name in engines}
    score_tokens: dict[str, int] = {}
    for r in range(args.repeats):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))
        question = QUESTIONS[r]
        for name in order:
            model = engines[name]
            params = SamplingParams(n=4, temperature=0.7, max_tokens=args.max_tokens, seed=r)
            ask = [Prompt(question)]
            seconds, groups = _timed(lambda m=model, a=ask, p=params: m.generate(a, p))
            gen[name].append(seconds)
            gen_tokens[name].append(sum(c.completion_tokens for c in groups[0]))
            # scoring: 4 continuations after a prompt no cache holds
            prompts = [Prompt(question, partial=f"Attempt {r}:\n\n")] * 4
            texts = [CONTINUATION[: len(CONTINUATION) * (k + 1) // 4] for k in range(4)]
            seconds, scored = _timed(lambda m=model, p=prompts, t=texts: m.logprobs(p, t))
            score[name].append(seconds)
            score_tokens[name] = sum(len(s.token_ids) for s in scored)
    print()
    print(f"SmolLM2-135M-Instruct, {args.threads} threads, median of {args.repeats} runs")
    print("| task | transformers | llama.cpp | llama.cpp speed-up |")
    print("|---|---|---|---|")
    t_gen = {n: statistics.median(v) for n, v in gen.items()}
    tps = {
        n: statistics.median(t / s for t, s in zip(gen_tokens[n], gen[n], strict=True))
        for n in engines
    }
    print(
        f"| generate n=4 x {args.max_tokens} tokens (batched) | {t_gen['transformers']:.2f} s "
        f"({tps['transformers']:.1f} tok/s) | {t_gen['llama.cpp']:.2f} s "
        f"({tps['llama.cpp']:.1f} tok/s) | {tps['llama.cpp'] / tps['transformers']:.2f}x |"
    )
    t_score = {n: statistics.median(v) for n, v in score.items()}
    print(
        f"| score 4 continuations ({score_tokens['transformers']} tokens) after a new prompt "
        f"| {t_score['transformers'] * 1000:.0f} ms | {t_score['llama.cpp'] * 1000:.0f} ms | "
        f"{t_score['transformers'] / t_score['llama.cpp']:.2f}x |"
    )
    if args.conversion:
        _conversion(args.threads)
    for model in engines.values():
        model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Token-level speculative decoding, measured side by side on the same models in one run.

    python benchmarks/bench_speculative.py [--model qwen2.5-coder-0.5b] [--questions 3] [--n 4]
        [--again-n 1] [--max-tokens 256] [--max-draft 4] [--min-match 2] [--no-adaptive]
        [--max-batch N] [--min-rate 0.0] [--threads 2]
        [--specs-draft qwen2.5-coder-0.5b] [--specs-target qwen2.5-coder-1.5b]
        [--specs-questions 2] [--tau-acc 9.0] [--max-steps 8] [--skip-decode] [--skip-specs]

Figures (GSM8K questions from ``specs_core/eval/data/gsm8k.jsonl``; every pair runs the same
seeds on the same loaded weights, alternating which variant goes first):

1. best-of-N: ``n`` samples of a whole solution (temperature 0.7), without and with the n-gram
   drafter; wall time, generated tokens per second, proposed/accepted draft tokens.
2. think again: round 1 answers (``--again-n`` samples, default 1), round 2 sees round 1's
   first answer and rewrites it; each round and the two together, without and with the
   drafter.
3. SPECS latency without and with the hybrid step (draft and target sharing a tokenizer, the
   LLM judge on the target as the reward model, ``tau_acc`` raised so that steps get rejected),
   with the time of each phase and whether both runs committed the same solution.

Speed ratios are "with / without" time ratios turned into speed-ups (above 1: faster).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specs_core import Specs
from specs_core.text import DEFAULT_SYSTEM_PROMPT
from specs_core.types import Completion, Prompt, SamplingParams

from specs_llamacpp import LlamaCppModel, LlamaCppOptions

DATA = Path(__file__).resolve().parents[1] / "src/specs_core/eval/data/gsm8k.jsonl"
REWRITE = (
    "{question}\n\nHere is a draft solution:\n\n{answer}\n\nCheck the draft step by step and "
    "write the complete solution again, correcting any mistake."
)


def questions(count: int) -> list[str]:
    """The first ``count`` GSM8K questions of the shipped subset."""
    with DATA.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [str(r["question"]) for r in rows[:count]]


@dataclass
class Timed:
    """One generation call: wall seconds and what it produced."""

    seconds: float
    completions: list[Completion]

    @property
    def tokens(self) -> int:
        return sum(len(c.token_ids) for c in self.completions)

    @property
    def proposed(self) -> int:
        return sum(c.draft_tokens_proposed for c in self.completions)

    @property
    def accepted(self) -> int:
        return sum(c.draft_tokens_accepted for c in self.completions)

    @property
    def rounds(self) -> int:
        return sum(c.draft_rounds for c in self.completions)


def timed(model: LlamaCppModel, prompt: Prompt, params: SamplingParams) -> Timed:
    start = time.perf_counter()
    [out] = model.generate([prompt], params)
    return Timed(time.perf_counter() - start, out)


def pair(
    plain: LlamaCppModel, spec: LlamaCppModel, prompt: Prompt, params: SamplingParams, flip: bool
) -> tuple[Timed, Timed]:
    """Run both variants on the same call, ``flip`` choosing which goes first."""
    if flip:
        b = timed(spec, prompt, params)
        a = timed(plain, prompt, params)
    else:
        a = timed(plain, prompt, params)
        b = timed(spec, prompt, params)
    return a, b


def same_samples(a: Timed, b: Timed) -> int:
    pairs = zip(a.completions, b.completions, strict=True)
    return sum(x.token_ids == y.token_ids for x, y in pairs)


def report(label: str, pairs: list[tuple[Timed, Timed]]) -> None:
    t_a = sum(a.seconds for a, _ in pairs)
    t_b = sum(b.seconds for _, b in pairs)
    g_a = sum(a.tokens for a, _ in pairs)
    g_b = sum(b.tokens for _, b in pairs)
    prop = sum(b.proposed for _, b in pairs)
    acc = sum(b.accepted for _, b in pairs)
    rounds = sum(b.rounds for _, b in pairs)
    same = sum(same_samples(a, b) for a, b in pairs)
    total = sum(len(a.completions) for a, _ in pairs)
    per_call = [a.seconds / b.seconds for a, b in pairs]
    print(
        f"| {label} | {t_a:.1f} s, {g_a / t_a:.1f} tok/s | {t_b:.1f} s, {g_b / t_b:.1f} tok/s | "
        f"**{t_a / t_b:.2f}x** (per call {min(per_call):.2f}-{max(per_call):.2f}) | "
        f"{acc}/{prop} ({acc / max(prop, 1):.0%}), {acc / max(rounds, 1):.2f} per pass, "
        f"{acc / max(g_b, 1):.0%} of output | {same}/{total} |",
        flush=True,
    )


def decode_benchmark(args: argparse.Namespace) -> None:
    base: dict[str, Any] = {"model": args.model, "n_threads": args.threads}
    spec_options = {
        "max_draft": args.max_draft,
        "min_match": args.min_match,
        "adaptive": not args.no_adaptive,
        "max_batch": args.max_batch,
        "min_rate": args.min_rate,
    }
    plain = LlamaCppModel(LlamaCppOptions.model_validate({**base, "name": "plain"}))
    spec = LlamaCppModel(
        LlamaCppOptions.model_validate({**base, "name": "ngram", "speculative": spec_options})
    )
    plain.generate([Prompt("Warm up.")], SamplingParams(max_tokens=4, seed=0))
    spec.generate([Prompt("Warm up.")], SamplingParams(max_tokens=4, seed=0))
    best: list[tuple[Timed, Timed]] = []
    again: list[tuple[Timed, Timed]] = []  # round 1 of "think again"
    again2: list[tuple[Timed, Timed]] = []  # round 2
    for i, question in enumerate(questions(args.questions)):
        params = SamplingParams(n=args.n, temperature=0.7, max_tokens=args.max_tokens, seed=i)
        prompt = Prompt(question, system=DEFAULT_SYSTEM_PROMPT)
        best.append(pair(plain, spec, prompt, params, flip=i % 2 == 1))
        single = SamplingParams(n=args.again_n, temperature=0.7, max_tokens=args.max_tokens, seed=i)
        first = pair(plain, spec, prompt, single, flip=i % 2 == 0)
        answer = first[0].completions[0].text
        rewrite = Prompt(
            REWRITE.format(question=question, answer=answer.strip()), system=DEFAULT_SYSTEM_PROMPT
        )
        second = pair(plain, spec, rewrite, single, flip=i % 2 == 1)
        again.append(first)
        again2.append(second)
    print(
        f"\nmodel {args.model}, n={args.n}, max_tokens={args.max_tokens}, drafter "
        f"{spec_options}, {args.questions} questions, {args.threads} threads\n"
    )
    print(
        "| workload | without drafter | with n-gram drafter | speed-up | accepted / proposed "
        "| identical samples |"
    )
    print("|---|---|---|---|---|---|")
    report(f"best-of-{args.n}", best)
    report(f"think again (n={args.again_n}): round 1", again)
    report(f"think again (n={args.again_n}): round 2", again2)
    both = [
        (
            Timed(a1.seconds + a2.seconds, a1.completions + a2.completions),
            Timed(b1.seconds + b2.seconds, b1.completions + b2.completions),
        )
        for (a1, b1), (a2, b2) in zip(again, again2, strict=True)
    ]
    report(f"think again (n={args.again_n}): both rounds", both)
    plain.close()
    spec.close()


def specs_benchmark(args: argparse.Namespace) -> None:
    role = {"backend": "llamacpp", "n_threads": args.threads}
    policy = {"n": args.n, "tau_acc": args.tau_acc, "max_steps": args.max_steps}
    config = {
        "draft": {**role, "model": args.specs_draft},
        "target": {**role, "model": args.specs_target},
        "reward": {"name": "judge", "model": "target"},
        "policy": {"name": "specs", **policy},
    }
    phases = ("draft_generate", "target_generate", "target_score", "reward", "overhead", "total")
    rows: dict[bool, list[Any]] = {False: [], True: []}
    with Specs.from_config(config) as specs:
        warm = {**policy, "max_steps": 1, "max_step_tokens": 8}
        specs.solve("What is 2 + 3?", options=warm)  # loads the models
        for i, question in enumerate(questions(args.specs_questions)):
            order = (True, False) if i % 2 else (False, True)
            for hybrid in order:
                result = specs.solve(question, options={**policy, "hybrid": hybrid, "seed": i})
                rows[hybrid].append(result)
                print(
                    f"  question {i} hybrid={hybrid}: {result.usage.latency_s['total']:.1f} s, "
                    f"{len(result.steps)} steps, decisions "
                    f"{[s.decision for s in result.steps]}",
                    flush=True,
                )
    off, on = rows[False], rows[True]

    def total(results: list[Any], phase: str) -> float:
        return sum(r.usage.latency_s[phase] for r in results)

    print(
        f"\nSPECS: draft {args.specs_draft}, target {args.specs_target}, judge on the target, "
        f"n={args.n}, tau_acc={args.tau_acc}, max_steps={args.max_steps}, "
        f"{args.specs_questions} questions\n"
    )
    print("| phase | without hybrid | with hybrid | saved |")
    print("|---|---|---|---|")
    for phase in phases:
        a, b = total(off, phase), total(on, phase)
        print(f"| {phase} | {a:.1f} s | {b:.1f} s | {a - b:+.1f} s |")
    ratio = total(off, "total") / total(on, "total")
    same = sum(a.text == b.text for a, b in zip(off, on, strict=True))
    steps = sum(r.usage.hybrid_steps for r in on)
    proposed = sum(r.usage.hybrid_proposed for r in on)
    accepted = sum(r.usage.hybrid_accepted for r in on)
    rejected = sum(r.rejected_draft_steps for r in off)
    print(
        f"\nSPECS latency speed-up with the hybrid: **{ratio:.2f}x**; steps with every draft "
        f"rejected: {rejected}; hybrid steps: {steps}, draft tokens accepted by the target: "
        f"{accepted}/{proposed}; same committed solution: {same}/{len(off)}; per-question "
        f"totals {[round(r.usage.latency_s['total'], 1) for r in off]} s -> "
        f"{[round(r.usage.latency_s['total'], 1) for r in on]} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--again-n", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-draft", type=int, default=4)
    parser.add_argument("--min-match", type=int, default=2)
    parser.add_argument("--no-adaptive", action="store_true")
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--min-rate", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--specs-draft", default="qwen2.5-coder-0.5b")
    parser.add_argument("--specs-target", default="qwen2.5-coder-1.5b")
    parser.add_argument("--specs-questions", type=int, default=2)
    parser.add_argument("--tau-acc", type=float, default=9.0)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--skip-decode", action="store_true")
    parser.add_argument("--skip-specs", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at start: {load:.2f}")
    if not args.skip_decode:
        decode_benchmark(args)
    if not args.skip_specs:
        specs_benchmark(args)
    if hasattr(os, "getloadavg"):
        print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

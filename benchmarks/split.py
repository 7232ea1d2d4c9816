"""Write a training subset of a shipped set that is disjoint from the evaluation subsets.

    python benchmarks/split.py OUT.jsonl --dataset gsm8k --size 40 --seed 1 \
        --exclude-limit 100 --exclude-seed 0

The evaluation subsets are the seeded samples ``specs bench --limit L --sample-seed S`` draws
(the headline uses ``--limit 100 --sample-seed 0`` on GSM8K); the training problems are a seeded
sample of the rest, written as JSONL rows of the set's own file (so ``specs bench --dataset gsm8k
--data-file OUT.jsonl`` reads them), and their ids are printed to record.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from specs_core.eval.datasets import load_dataset, select_subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--data-file", type=Path, default=Path("../shared/data/gsm8k_test.jsonl"))
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--exclude-limit", type=int, action="append", default=[])
    parser.add_argument("--exclude-seed", type=int, action="append", default=[])
    args = parser.parse_args()
    if len(args.exclude_limit) != len(args.exclude_seed):
        parser.error("give one --exclude-seed per --exclude-limit")
    problems = load_dataset(args.dataset, data_file=args.data_file)
    excluded: set[str] = set()
    for limit, seed in zip(args.exclude_limit, args.exclude_seed, strict=True):
        excluded |= {p.id for p in select_subset(problems, limit, seed)}
    pool = sorted(p.id for p in problems if p.id not in excluded)
    random.Random(args.seed).shuffle(pool)
    chosen = set(pool[: args.size])
    rows = [json.loads(line) for line in args.data_file.read_text(encoding="utf-8").splitlines()]
    by_id = {p.id: i for i, p in enumerate(problems)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for pid in sorted(chosen, key=lambda x: by_id[x]):
            f.write(json.dumps(rows[by_id[pid]], ensure_ascii=False) + "\n")
    print(
        f"{len(chosen)} problems (excluded {len(excluded)}): ids "
        + " ".join(sorted(chosen, key=lambda x: by_id[x]))
    )


if __name__ == "__main__":
    main()

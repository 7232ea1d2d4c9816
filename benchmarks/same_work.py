"""How much of a latency ratio is timing noise: problems where two runs did the same work.

    python benchmarks/same_work.py BASELINE_DIR RUN_DIR... [--every]

Two runs did the same work on a problem when every model's token counts (prompt, generated,
cached, calls) are equal: SPECS that never left target mode does exactly target beam search's
computation. On those problems a latency ratio away from 1 is the machine (other load, the hour the
run took place), not the algorithm, and bounds what a ratio between the two runs can show.

For each run: the problems of the same work, their total-latency ratio against the baseline, and
the smallest and largest per-problem ratio; ``--every`` lists the per-problem ratios in the
baseline's order. Runs are read with :func:`specs_core.eval.report.load_run`; problems that raised
are left out.
"""

from __future__ import annotations

import argparse

from specs_core.eval.report import Run, find_run_dirs, load_run, problem_key


def same_work(run: Run, baseline: Run) -> list[tuple[int, float, float]]:
    """``(position in the baseline, baseline latency, run latency)`` of the same-work problems."""
    rows = {problem_key(r): r for r in run.rows if not r.get("error")}
    pairs = []
    for position, base in enumerate(baseline.rows):
        other = rows.get(problem_key(base))
        if base.get("error") or other is None or other.get("tokens") != base.get("tokens"):
            continue
        pairs.append((position, base["latency_s"]["total"], other["latency_s"]["total"]))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", help="the baseline run's directory")
    parser.add_argument("runs", nargs="+", help="run directories (or folders of them)")
    parser.add_argument("--every", action="store_true", help="list every per-problem ratio")
    args = parser.parse_args()
    baseline = load_run(args.baseline)
    for path in find_run_dirs(args.runs):
        run = load_run(path)
        pairs = same_work(run, baseline)
        if not pairs:
            print(f"{path}: no problem of the same work")
            continue
        ratios = [r / b for _, b, r in pairs]
        total = sum(r for _, _, r in pairs) / sum(b for _, b, _ in pairs)
        print(
            f"{path}: {len(pairs)} of {len(baseline.rows)} problems of the same work, "
            f"total ratio {total:.3f}, per problem {min(ratios):.2f} to {max(ratios):.2f}"
        )
        if args.every:
            print("  " + ", ".join(f"#{p}: {r / b:.2f}" for p, b, r in pairs))


if __name__ == "__main__":
    main()

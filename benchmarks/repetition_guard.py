"""What SPECS's repetition guard (``policy.max_repetition``) changes on a side-by-side run.

The guard only acts on a problem where some draft repeats the solution so far by more than the
limit. Sampling seeds depend on the run's seed and the call site only, so on every other problem
the guarded search makes the very calls and choices of the unguarded one. This script therefore
reruns only the problems whose stored SPECS trace holds such a draft (plus ``--controls``
unflagged problems, which must come out identical: the check that the substitution holds), and
reports SPECS with the guard on all the run's problems: the rerun rows where the guard acted, the
stored rows elsewhere, paired against target beam search.

    python benchmarks/repetition_guard.py [OUT] [--limit 0.8] [--controls 2]

OUT defaults to benchmarks/results/side-by-side/gsm8k (written by benchmarks/side_by_side.sh).
Reruns go to OUT/specs_guard (resumable: run it again after a stop). Needs
../shared/data/gsm8k_test.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from specs_core.eval.results import ResultsLog, TraceLog
from specs_core.eval.stats import paired_difference
from specs_core.text import repeated_share

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"


def rows(run: Path) -> dict[str, dict]:
    return {str(r["id"]): r for r in ResultsLog(run / "results.jsonl").load() if not r.get("error")}


def flagged(run: Path, limit: float) -> list[str]:
    """Problems with a draft that repeats its solution so far by more than ``limit``."""
    out = []
    for pid, trace in TraceLog(run / "traces.jsonl.gz").load().items():
        before = ""
        for step in trace.get("steps") or []:
            drafts = [c for c in step.get("candidates") or [] if c.get("source") == "draft"]
            if any(repeated_share(c["text"], before) > limit for c in drafts):
                out.append(str(pid))
                break
            before += step["text"]
    return sorted(out, key=int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="benchmarks/results/side-by-side/gsm8k")
    parser.add_argument("--limit", type=float, default=0.8)
    parser.add_argument("--controls", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    specs, beam = rows(out / "specs"), rows(out / "beam_search")
    common = sorted(set(specs) & set(beam), key=int)
    acted = [p for p in flagged(out / "specs", args.limit) if p in common]
    controls = [p for p in common if p not in acted][: args.controls]
    wanted = set(acted) | set(controls)
    subset = out / "specs_guard" / "problems.jsonl"
    subset.parent.mkdir(parents=True, exist_ok=True)
    with DATA.open(encoding="utf-8") as src, subset.open("w", encoding="utf-8") as dst:
        for line in src:
            if str(json.loads(line)["idx"]) in wanted:
                dst.write(line)
    specs_bin = os.environ.get("SPECS", str(ROOT / ".venv" / "bin" / "specs"))
    command = [
        specs_bin, "bench", "--dataset", "gsm8k", "--data-file", str(subset), "--no-progress",
        "-c", str(out / "specs" / "config.yaml"),
        "--set", f"policy.max_repetition={args.limit}", "--out", str(out / "specs_guard" / "run"),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    rerun = rows(out / "specs_guard" / "run")
    same = [p for p in controls if rerun[p]["text"] == specs[p]["text"]]
    print(f"guard max_repetition={args.limit} acted on {len(acted)} of {len(common)} problems: "
          f"{' '.join(acted)}")  # fmt: skip
    print(f"controls (guard did not act) identical to the stored run: {len(same)}/{len(controls)}")
    if len(same) != len(controls):
        sys.exit("a control problem changed: the stored rows cannot stand in for a rerun")
    guarded = {p: rerun[p] if p in acted else specs[p] for p in common}
    print("\n| problem | beam | SPECS | SPECS + guard | SPECS s | SPECS + guard s | beam s |")
    print("|---|---|---|---|---|---|---|")
    for p in acted:
        cells = [beam[p]["correct"], specs[p]["correct"], guarded[p]["correct"]]
        times = [specs[p]["latency_s"]["total"], guarded[p]["latency_s"]["total"],
                 beam[p]["latency_s"]["total"]]  # fmt: skip
        print(f"| {p} | " + " | ".join("right" if c else "wrong" for c in cells) + " | "
              + " | ".join(f"{t:.0f}" for t in times) + " |")  # fmt: skip
    b = [bool(beam[p]["correct"]) for p in common]
    print(f"\nall {len(common)} problems (beam search {sum(b)} right):")
    for name, run in (("SPECS", specs), ("SPECS + guard", guarded)):
        r = [bool(run[p]["correct"]) for p in common]
        d = paired_difference(r, b)
        ratio = sum(run[p]["latency_s"]["total"] for p in common) / sum(
            beam[p]["latency_s"]["total"] for p in common
        )
        median = statistics.median(
            run[p]["latency_s"]["total"] / beam[p]["latency_s"]["total"] for p in common
        )
        drafted = sum(run[p]["draft_steps"] for p in common)
        share = drafted / sum(run[p]["draft_steps"] + run[p]["target_steps"] for p in common)
        print(
            f"  {name}: {sum(r)} right, {d.difference * 100:+.1f} pp vs beam "
            f"[{d.low * 100:+.0f}, {d.high * 100:+.0f}], McNemar p {d.p_value:.3f}; "
            f"latency {ratio:.2f}x of beam (median {median:.2f}x); draft steps {share:.0%}"
        )


if __name__ == "__main__":
    main()

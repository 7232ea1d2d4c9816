#!/usr/bin/env bash
# SPECS with three reward models on the first 50 GSM8K test problems: the LLM judge, the
# arithmetic verifier (examples/prm-plugin) and their composite. The runs advance in turns,
# SLICE problems at a time, so that the table can be read part-way with every run on the same
# problems; every command resumes, so the script can be stopped and run again (runs that are
# behind catch up first).
#
#   bash benchmarks/rewards_gsm8k.sh [OUT] [PROBLEMS] [SLICE]
#
# Defaults: OUT=benchmarks/results/rewards-gsm8k, PROBLEMS=50, SLICE=5. Needs `make install`
# (the arithmetic plugin is installed by it) and ../shared/data/gsm8k_test.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/rewards-gsm8k}
PROBLEMS=${2:-50}
SLICE=${3:-5}
DATA=../shared/data/gsm8k_test.jsonl
SPECS=${SPECS:-.venv/bin/specs}
RUNS=(judge arithmetic composite)

mkdir -p "$OUT"
head -n "$PROBLEMS" "$DATA" > "$OUT/gsm8k_first$PROBLEMS.jsonl"
solved() {  # problems a run has recorded so far
  if [[ -f $1/results.jsonl ]]; then grep -c . "$1/results.jsonl"; else echo 0; fi
}

for ((target = SLICE; target < PROBLEMS + SLICE; target += SLICE)); do
  ((target > PROBLEMS)) && target=$PROBLEMS
  for run in "${RUNS[@]}"; do  # bring every run to the same count, a run behind first
    need=$((target - $(solved "$OUT/$run")))
    ((need > 0)) || continue
    "$SPECS" bench --dataset gsm8k --data-file "$OUT/gsm8k_first$PROBLEMS.jsonl" \
      --config "benchmarks/configs/rewards/$run.yaml" --out "$OUT/$run" \
      --max-problems "$need" --no-progress
  done
  "$SPECS" report "${RUNS[@]/#/$OUT/}" --out "$OUT/report.md" --plots "$OUT/plots"
done
echo "report: $OUT/report.md"

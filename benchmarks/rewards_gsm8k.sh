#!/usr/bin/env bash
# SPECS with three reward models on the first 50 GSM8K test problems: the LLM judge, the
# arithmetic verifier (examples/prm-plugin) and their composite. The runs advance in turns,
# SLICE more problems each, so that the table can be read part-way with every run on the same
# problems. A turn ends at a count (`--until`): run the script again after a stop or a crash and
# every run is first brought to the same count, then the turns go on.
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
for ((count = SLICE; count < PROBLEMS + SLICE; count += SLICE)); do
  ((count > PROBLEMS)) && count=$PROBLEMS
  for run in "${RUNS[@]}"; do
    "$SPECS" bench --dataset gsm8k --data-file "$OUT/gsm8k_first$PROBLEMS.jsonl" \
      --config "benchmarks/configs/rewards/$run.yaml" --out "$OUT/$run" \
      --until "$count" --no-progress
  done
  "$SPECS" report "${RUNS[@]/#/$OUT/}" --out "$OUT/report.md" --plots "$OUT/plots"
done
echo "report: $OUT/report.md"

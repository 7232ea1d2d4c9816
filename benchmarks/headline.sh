#!/usr/bin/env bash
# The headline comparison of BENCHMARKS.md: on the default configuration with n=4, target beam
# search (the baseline), draft beam search, RSD, best-of-N and SPECS at three thresholds, on a
# fixed 100-problem GSM8K subset and a fixed 50-problem MATH-500 subset (seed 0).
#
#   bash benchmarks/headline.sh [OUT] [SLICE]
#
# The runs advance in turns, SLICE more problems each (default 5), and the reports are rebuilt
# after each turn, so the tables can be read part-way with every run on the same problems. A turn
# ends at a count (`--until`), not after a number of problems: run the script again after a stop
# or a crash and every run is first brought to the same count, then the turns go on.
# SETS="gsm8k" (or "math500") advances one dataset only, in the same turns.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/headline}
SLICE=${2:-5}
SPECS=${SPECS:-.venv/bin/specs}
declare -A SIZE=([gsm8k]=100 [math500]=50)
SETS=" ${SETS:-${!SIZE[*]}} "
for set in $SETS; do
  [[ -v SIZE[$set] ]] || { echo "SETS: unknown dataset '$set' (use ${!SIZE[*]})" >&2; exit 2; }
done
RUNS=(target_beam_search draft_beam_search rsd best_of_n)
declare -A POLICY=(
  [target_beam_search]=beam_search [draft_beam_search]=draft_beam_search
  [rsd]=rsd [best_of_n]=best_of_n
)

turn() {  # every run of one dataset brought to COUNT problems, then its report
  local set=$1 count=$2 dir=$OUT/$1
  [[ $SETS == *" $set "* ]] || return 0
  local common=(--dataset "$set" --limit "${SIZE[$set]}" --sample-seed 0 --set policy.n=4
                --until "$count" --no-progress)
  for run in "${RUNS[@]}"; do
    "$SPECS" bench "${common[@]}" --policy "${POLICY[$run]}" --out "$dir/$run"
  done
  "$SPECS" sweep "${common[@]}" --policy specs --param policy.tau_acc --values 5,7,9 \
    --out "$dir/specs"
  "$SPECS" report "${RUNS[@]/#/$dir/}" "$dir/specs" --baseline "$dir/target_beam_search" \
    --out "$dir/report.md" --plots "$dir/plots"
}

for ((count = SLICE; count < ${SIZE[gsm8k]} + SLICE; count += SLICE)); do
  turn gsm8k $((count < SIZE[gsm8k] ? count : SIZE[gsm8k]))
  if ((count - SLICE < SIZE[math500])); then
    turn math500 $((count < SIZE[math500] ? count : SIZE[math500]))
  fi
done
echo "reports: $OUT/gsm8k/report.md $OUT/math500/report.md"

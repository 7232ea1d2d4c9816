#!/usr/bin/env bash
# The headline comparison of BENCHMARKS.md: on the default configuration with n=4, target beam
# search (the baseline), draft beam search, RSD, best-of-N and SPECS at three thresholds, on a
# fixed 100-problem GSM8K subset and a fixed 50-problem MATH-500 subset (seed 0).
#
#   bash benchmarks/headline.sh [OUT] [SLICE]
#
# The runs advance in turns, SLICE problems at a time (default 5), and the reports are rebuilt
# after each turn, so the tables can be read part-way with every run on the same problems.
# Every command resumes where it stopped: run the script again to go on.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/headline}
SLICE=${2:-5}
SPECS=${SPECS:-.venv/bin/specs}
declare -A SIZE=([gsm8k]=100 [math500]=50)
RUNS=(target_beam_search draft_beam_search rsd best_of_n)
declare -A POLICY=(
  [target_beam_search]=beam_search [draft_beam_search]=draft_beam_search
  [rsd]=rsd [best_of_n]=best_of_n
)

turn() {  # one slice of every run of one dataset, then its report
  local set=$1 dir=$OUT/$1
  local common=(--dataset "$set" --limit "${SIZE[$set]}" --sample-seed 0 --set policy.n=4
                --max-problems "$SLICE" --no-progress)
  for run in "${RUNS[@]}"; do
    "$SPECS" bench "${common[@]}" --policy "${POLICY[$run]}" --out "$dir/$run"
  done
  "$SPECS" sweep "${common[@]}" --policy specs --param policy.tau_acc --values 5,7,9 \
    --out "$dir/specs"
  "$SPECS" report "${RUNS[@]/#/$dir/}" "$dir/specs" --baseline "$dir/target_beam_search" \
    --out "$dir/report.md" --plots "$dir/plots"
}

for ((done = 0; done < ${SIZE[gsm8k]}; done += SLICE)); do
  turn gsm8k
  if ((done < ${SIZE[math500]})); then turn math500; fi
done
echo "reports: $OUT/gsm8k/report.md $OUT/math500/report.md"

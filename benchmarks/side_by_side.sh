#!/usr/bin/env bash
# The side-by-side run of BENCHMARKS.md ("Side by side"): on the seed-0 GSM8K subset (disjoint
# from every training problem: benchmarks/results/verifiers/gsm8k_train.ids and the probe's
# recorded ids), paired runs with the default configuration's verifier:
#   beam_search   target beam search, n = 4, the default reward model        (the baseline)
#   specs         SPECS as configured by default
#   ceiling       SPECS forced to accept every draft (tau_sw = tau_acc = -inf): the speed ceiling
#   sample        one target sample per problem (n = 1)
#   majority      majority vote over 4 target samples (no reward model: a run kept from an
#                 earlier configuration resumes with its own config.yaml)
# The runs advance together, SLICE problems at a time, so a stop leaves them paired; run the
# script again and it goes on where it was.
#
#   bash benchmarks/side_by_side.sh [OUT] [PROBLEMS] [SLICE]
#
# Defaults: OUT=benchmarks/results/side-by-side/gsm8k, PROBLEMS=60, SLICE=5. MAJORITY=N stops the
# majority run (the slowest: 4 whole solutions a problem) at N problems.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/side-by-side/gsm8k}
PROBLEMS=${2:-60}
SLICE=${3:-5}
MAJORITY=${MAJORITY:-$PROBLEMS}
SPECS=${SPECS:-.venv/bin/specs}
common=(--dataset gsm8k --limit 100 --sample-seed 0 --no-progress)
FORCED=(--set policy.tau_sw=-inf --set policy.tau_acc=-inf)

for ((count = SLICE; count < PROBLEMS + SLICE; count += SLICE)); do
  ((count > PROBLEMS)) && count=$PROBLEMS
  "$SPECS" bench "${common[@]}" --policy beam_search --out "$OUT/beam_search" --until "$count"
  "$SPECS" bench "${common[@]}" --out "$OUT/specs" --until "$count"
  "$SPECS" bench "${common[@]}" "${FORCED[@]}" --out "$OUT/ceiling" --until "$count"
  "$SPECS" bench "${common[@]}" --policy majority --set policy.n=1 --out "$OUT/sample" \
    --until "$count"
  majority=()
  [[ -f "$OUT/majority/config.yaml" ]] && majority=(-c "$OUT/majority/config.yaml")
  "$SPECS" bench "${common[@]}" "${majority[@]}" --policy majority --set policy.n=4 \
    --out "$OUT/majority" --until "$((count < MAJORITY ? count : MAJORITY))"
done
"$SPECS" report "$OUT/beam_search" "$OUT/specs" "$OUT/ceiling" "$OUT/sample" "$OUT/majority" \
  --out "$OUT/report.md"

#!/usr/bin/env bash
# The verifier study of BENCHMARKS.md ("Verifiers"):
#   1. the headline GSM8K solutions (target and draft beam search, seed-0 100-problem subset)
#      scored by the likelihood reward model on the target and on the draft, beside the LLM
#      judge's recorded scores: `specs rewards eval`;
#   2. on training problems disjoint from every evaluation subset (benchmarks/split.py), target
#      beam search and SPECS drafting every step, both with the likelihood reward on the target,
#      traced; then `specs calibrate` fits tau_sw and tau_acc to them (the default
#      configuration's thresholds: 80% of target steps switch, 60% of drafted steps pass).
#
#   bash benchmarks/verifiers.sh [OUT] [TRAIN] [SLICE]
#
# Defaults: OUT=benchmarks/results/verifiers, TRAIN=10 (the first 10 of the 30 problems written),
# SLICE=5. Every step resumes: run the script again after a stop and it goes on where it was.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/verifiers}
TRAIN=${2:-10}
SLICE=${3:-5}
SPECS=${SPECS:-.venv/bin/specs}
PYTHON=${PYTHON:-.venv/bin/python}
HEADLINE=benchmarks/results/headline/gsm8k
LIKELIHOOD=(--set reward.name=likelihood --set reward.model=target)

# 1. the headline solutions, every verifier side by side
"$SPECS" rewards eval "$HEADLINE/target_beam_search" "$HEADLINE/draft_beam_search" \
  -r likelihood -r likelihood:model=draft --out "$OUT/gsm8k-headline" --fit --no-progress

# 2. training problems: not in the seed-0 100-problem GSM8K subset (ids printed and kept)
"$PYTHON" benchmarks/split.py "$OUT/gsm8k_train.jsonl" --size 30 --seed 1 \
  --exclude-limit 100 --exclude-seed 0 | tee "$OUT/gsm8k_train.ids"
common=(--dataset gsm8k --data-file "$OUT/gsm8k_train.jsonl" --set policy.n=4 "${LIKELIHOOD[@]}"
        --no-progress)
for ((count = SLICE; count < TRAIN + SLICE; count += SLICE)); do
  ((count > TRAIN)) && count=$TRAIN
  "$SPECS" bench "${common[@]}" --policy beam_search --out "$OUT/train/beam_search" --until "$count"
  "$SPECS" bench "${common[@]}" --set policy.tau_sw=-inf --set policy.tau_acc=-inf \
    --out "$OUT/train/specs_forced" --until "$count"
done
"$SPECS" report "$OUT/train/beam_search" "$OUT/train/specs_forced" --out "$OUT/train/report.md"
"$SPECS" calibrate "$OUT/train/beam_search" "$OUT/train/specs_forced" "${LIKELIHOOD[@]}" \
  --switch-rate 0.8 --accept-rate 0.6 -o "$OUT/calibrated.yaml"

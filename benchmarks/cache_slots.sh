#!/usr/bin/env bash
# One llama.cpp context per model (`cache_slots: 1`) against two (the default), on the default
# configuration, where the LLM judge runs on the draft model: draft beam search and SPECS, n=4,
# on the first PROBLEMS problems of the headline's seed-0 GSM8K subset. With one context the
# draft's generation prompt and the judge's prompts evict each other's cached prefix at every
# call; with two each keeps its own.
#
#   bash benchmarks/cache_slots.sh [OUT] [PROBLEMS]
#
# Defaults: OUT=benchmarks/results/cache-slots, PROBLEMS=5. Resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/cache-slots}
PROBLEMS=${2:-5}
SPECS=${SPECS:-.venv/bin/specs}
common=(--dataset gsm8k --limit 100 --sample-seed 0 --set policy.n=4 --until "$PROBLEMS"
        --no-progress)
for policy in draft_beam_search specs; do
  for slots in 1 2; do
    "$SPECS" bench "${common[@]}" --policy "$policy" --set "draft.cache_slots=$slots" \
      --out "$OUT/$policy/cache_slots=$slots"
  done
  "$SPECS" report "$OUT/$policy/cache_slots=1" "$OUT/$policy/cache_slots=2" \
    --out "$OUT/$policy/report.md" --plots "$OUT/$policy/plots"
done
echo "reports: $OUT/draft_beam_search/report.md $OUT/specs/report.md"

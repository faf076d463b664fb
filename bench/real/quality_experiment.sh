#!/usr/bin/env bash
# Issue 20's experiment on Qwen2.5-Coder-1.5B-Instruct, through the product (hfprune sweep), offline.
# Needs: python bench/real/build_checkpoints.py --models qwen15 && python bench/real/build_data.py
# Every entry: MMLU (18 questions from each of the 57 subjects = 1,026, lm-eval's prompt, 0-shot), word
# perplexity on held-out Wikipedia and C4 text; scoring and fit calibration on other C4 documents.
# Resumable: rerun the script and finished entries are skipped (sweeps resume per stage).
set -euo pipefail
R=${HFPRUNE_REAL:-$HOME/.cache/hfprune/real}
OUT=${OUT:-hfprune-real}
Q15=$R/Qwen2.5-Coder-1.5B-Instruct
EVAL="--tasks real_mmlu,real_ppl_wiki,real_ppl_c4 --include-path $R/data/tasks --limit 18"
CALIB="--data $R/data/calib_c4.jsonl"
mkdir -p "$OUT"
t() { /usr/bin/time -f "$1: %e s wall, %M KB peak RSS" "${@:2}"; }

# 1. no healing, ~15% and ~25% of the parameters: each metric with and without the linear map
for P in 0.85 0.75; do
  t "q15-p$P" python -m hfprune sweep "$Q15" --target-params $P --metrics reverse-order,block-influence,angular \
    --replace none,linear $CALIB $EVAL --work-dir "$OUT/q15-p$P" --resume --no-progress > "$OUT/q15-p$P.log" 2>&1
done
# 2. FinerCut at ~15% (a greedy search over 34 sub-blocks per step: the slowest metric here)
t q15-finercut python -m hfprune sweep "$Q15" --target-params 0.85 --metrics finercut --replace none $CALIB $EVAL \
  --work-dir "$OUT/q15-p0.85-finercut" --resume --no-progress > "$OUT/q15-finercut.log" 2>&1
echo done

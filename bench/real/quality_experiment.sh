#!/usr/bin/env bash
# Issue 20's experiment on Qwen2.5-Coder-1.5B-Instruct, through the product (hfprune sweep), offline.
# Needs: python bench/real/build_checkpoints.py --models qwen15 && python bench/real/build_data.py
# Every entry: MMLU (18 questions from each of the 57 subjects = 1,026, lm-eval's prompt, 0-shot), word
# perplexity on held-out Wikipedia and C4 text; scoring and fit calibration on other C4 documents; healing on the
# 999 real Alpaca pairs, 2 epochs, the model's chat template (the defaults' choice for an instruct model).
# Resumable: rerun the script and finished entries are skipped (sweeps resume per stage).
set -euo pipefail
R=${HFPRUNE_REAL:-$HOME/.cache/hfprune/real}
OUT=${OUT:-hfprune-real}
Q15=$R/Qwen2.5-Coder-1.5B-Instruct
EVAL="--tasks real_mmlu,real_ppl_wiki,real_ppl_c4 --include-path $R/data/tasks --limit 18"
CALIB="--data $R/data/calib_c4.jsonl"
HEAL="--dataset $R/data/alpaca_en_demo.json --recipe $OUT/heal.yaml"
mkdir -p "$OUT"
t() { /usr/bin/time -f "$1: %e s wall, %M KB peak RSS" "${@:2}"; }
# the seed paper's 2 epochs and AdamW; lr 1e-4 with batch 16 (125 steps) instead of its 1e-5 x batch 64, which was
# set for 52k examples (32 steps here: it moves nothing); bf16 mixed precision (this CPU computes bf16)
cat > "$OUT/heal.yaml" <<YAML
recover: {epochs: 2, lr: 1.0e-4, batch_size: 16, micro_batch_size: 4, precision: bf16, teacher_logits: cached}
YAML
sweep() {  # name, args...
  t "$1" python -m hfprune sweep "$Q15" "${@:2}" $CALIB $EVAL --work-dir "$OUT/$1" --resume --no-progress \
    > "$OUT/$1.log" 2>&1
}
# 1. ~15% of the parameters, no healing: each metric with and without the linear map
sweep q15-p0.85 --target-params 0.85 --metrics reverse-order,block-influence,angular --replace none,linear
# 2. ~15%, healed: partial fine-tuning, and its distillation variant, on the reverse-order plan with and without
#    the map (the best plan without healing)
sweep q15-p0.85-heal --target-params 0.85 --metrics reverse-order --replace none,linear --recover partial $HEAL
# 3. ~25% of the parameters, no healing
sweep q15-p0.75 --target-params 0.75 --metrics reverse-order,block-influence,angular --replace none,linear
# 4. distillation at ~15%, healing at ~25%
sweep q15-p0.85-kd --target-params 0.85 --metrics reverse-order --replace linear --recover partial-kd $HEAL
sweep q15-p0.75-heal --target-params 0.75 --metrics reverse-order --replace none,linear --recover partial $HEAL
# 5. FinerCut at ~15% (a greedy search over 34 sub-blocks per step: the slowest metric here)
sweep q15-p0.85-finercut --target-params 0.85 --metrics finercut
# 6. the map fitted on instruction-formatted text (Alpaca through the model's chat template) instead of C4
python bench/real/chat_calibration.py "$Q15" "$R/data/alpaca_en_demo.json" "$OUT/calib_alpaca_chat.jsonl"
sweep q15-p0.85-chatmap --target-params 0.85 --metrics reverse-order,block-influence --replace linear \
  --replace-data "$OUT/calib_alpaca_chat.jsonl"
echo done

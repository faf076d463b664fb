#!/usr/bin/env bash
# Issue 10's experiment: SFT vs KD vs self-data healing of SmolLM2-135M-Instruct with 8 layers removed, same
# steps (and, for SFT and KD, the same tokens). Needs: python bench/real/build_checkpoints.py && python
# bench/real/build_data.py. Results: each sweep dir's results.md and entries' eval.json (bench/RESULTS.md quotes them).
set -euo pipefail
R=${HFPRUNE_REAL:-$HOME/.cache/hfprune/real}
OUT=${OUT:-hfprune-kd}
SMOL=$R/SmolLM2-135M-Instruct
TASKS="--tasks real_capitals_mc,real_ppl_python,real_ppl_chat --include-path $R/data/tasks --limit 100"
DATA="--data $R/data/heal.jsonl --dataset $R/data/heal.jsonl"
mkdir -p "$OUT"
cat > "$OUT/dataset.yaml" <<YAML
recover: {max_samples: 500, epochs: 1, lr: 2.0e-4, batch_size: 16, micro_batch_size: 8, max_length: 256}
YAML
cat > "$OUT/selfdata.yaml" <<YAML
recover: {max_samples: 500, epochs: 1, lr: 2.0e-4, batch_size: 16, micro_batch_size: 8, max_length: 256,
          answers: teacher, answer_max_tokens: 128}
YAML
python -m hfprune sweep "$SMOL" --remove 8 --metrics block-influence --recover partial,partial-kd \
  --recipe "$OUT/dataset.yaml" $DATA $TASKS --work-dir "$OUT/dataset" --resume --no-progress
python -m hfprune sweep "$SMOL" --remove 8 --metrics block-influence --recover partial \
  --recipe "$OUT/selfdata.yaml" $DATA $TASKS --work-dir "$OUT/selfdata" --resume --no-progress
python -m hfprune sweep "$SMOL" --remove 8 --metrics reverse-order --recover partial-kd \
  --recipe "$OUT/dataset.yaml" $DATA $TASKS --work-dir "$OUT/dataset-ro" --resume --no-progress
# the teacher's cost (live vs stored top-k logits), in one run
python bench/bench_kd.py --student "$OUT/dataset/block-influence-partial/pruned" --teacher "$SMOL" \
  --data "$R/data/heal.jsonl" --samples 160

#!/usr/bin/env bash
# The seed paper's experiment at small scale, through the product (hfprune sweep), on real checkpoints.
# Needs: python bench/real/build_checkpoints.py && python bench/real/build_data.py
# Writes sweep dirs under ${OUT:-hfprune-real}; results.md of each is the table quoted in bench/RESULTS.md.
set -euo pipefail
R=${HFPRUNE_REAL:-$HOME/.cache/hfprune/real}
OUT=${OUT:-hfprune-real}
SMOL=$R/SmolLM2-135M-Instruct
GEMMA=$R/gemma-3-270m
TASKS="--tasks real_capitals_mc,real_ppl_python,real_ppl_chat --include-path $R/data/tasks"
DATA="--data $R/data/heal.jsonl --dataset $R/data/heal.jsonl"
mkdir -p "$OUT"
t() { /usr/bin/time -f "$1: %e s wall, %M KB peak RSS" "${@:2}"; }

# healing budgets: the same 500 examples (1 epoch, ~45k tokens with the chat template) for every healing run;
# healing and Gemma sweeps evaluate at most 100 examples per task (each table has its own dense and pruned rows)
LIMIT="--limit 100"
cat > "$OUT/paper.yaml" <<YAML
recover: {max_samples: 500, epochs: 1, lr: 1.0e-5, batch_size: 64, micro_batch_size: 8, max_length: 256}
YAML
cat > "$OUT/tuned.yaml" <<YAML
recover: {max_samples: 500, epochs: 1, lr: 2.0e-4, batch_size: 16, micro_batch_size: 8, max_length: 256}
YAML
cat > "$OUT/tuned-untie.yaml" <<YAML
recover: {max_samples: 500, epochs: 1, lr: 2.0e-4, batch_size: 16, micro_batch_size: 8, max_length: 256,
          tied_embeddings: untie}
YAML

# 1. SmolLM2: 8 of 30 layers by every metric, no healing
[ -f "$OUT/smol-pruned/results.json" ] || t smol-pruned python -m hfprune sweep "$SMOL" --remove 8 \
  --metrics reverse-order,block-influence,angular,taylor,ppl,magnitude-l2 \
  $DATA $TASKS --work-dir "$OUT/smol-pruned" --resume --no-progress > "$OUT/smol-pruned.log" 2>&1
# the best data-driven metric by held-out perplexity on the Python tutorial
BEST=$(python - "$OUT/smol-pruned/results.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
cands = [r for r in rows if r["entry"].rsplit("-none", 1)[0] not in ("dense", "reverse-order", "random")]
print(min(cands, key=lambda r: r["tasks"]["real_ppl_python"]["word_perplexity"])["entry"].rsplit("-none", 1)[0])
PY
)
echo "best data-driven metric: $BEST"
# 2. healing: the seed's hyper-parameters vs ones that heal a 135M model, on the same 500 examples
t smol-paper python -m hfprune sweep "$SMOL" --remove 8 --metrics reverse-order --recover partial \
  --recipe "$OUT/paper.yaml" $DATA $TASKS $LIMIT --work-dir "$OUT/smol-paper" --resume --no-progress > "$OUT/smol-paper.log" 2>&1
t smol-tuned python -m hfprune sweep "$SMOL" --remove 8 --metrics "reverse-order,$BEST" --recover partial,lora \
  --recipe "$OUT/tuned.yaml" $DATA $TASKS $LIMIT --work-dir "$OUT/smol-tuned" --resume --no-progress > "$OUT/smol-tuned.log" 2>&1
# 3. Gemma-3-270M: 4 of 18 layers, no healing
t gemma python -m hfprune sweep "$GEMMA" --remove 4 --metrics reverse-order,block-influence,angular \
  --recover none $DATA $TASKS $LIMIT --work-dir "$OUT/gemma-pruned" --resume --no-progress > "$OUT/gemma-pruned.log" 2>&1
# tied head: untie (train a copy) vs the default freeze, same run otherwise
t smol-untie python -m hfprune sweep "$SMOL" --remove 8 --metrics reverse-order --recover partial \
  --recipe "$OUT/tuned-untie.yaml" $DATA $TASKS $LIMIT --work-dir "$OUT/smol-untie" --resume --no-progress > "$OUT/smol-untie.log" 2>&1
echo done

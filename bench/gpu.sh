#!/usr/bin/env bash
# The one prepared GPU run (issue 12, part 4): partial vs LoRA vs QLoRA tokens/s and peak memory in bf16, and
# scoring time, on real-shaped checkpoints. The GPU machine has no network, so the shapes are built locally with
# random weights (speed and memory do not depend on the values): SmolLM2-135M (30 layers, hidden 576, FFN 1536,
# 9/3 heads, vocab 49152) and Llama-3.2-1B (16 layers, hidden 2048, FFN 8192, 32/8 heads, vocab 128256).
# Usage (from the repo root, torch with CUDA installed): OUT=gpu-results bash bench/gpu.sh
# Each part runs on its own so that one failure (e.g. bitsandbytes missing for QLoRA) does not hide the others.
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
{
  echo "# hfprune GPU bench, $(date -u +%Y-%m-%d)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
  python -c "import bitsandbytes; print('bitsandbytes', bitsandbytes.__version__)" 2>/dev/null || echo "bitsandbytes: not installed (QLoRA rows will fail)"
} > "$OUT/env.txt" 2>&1
run() {  # name, command...
  local name=$1; shift
  echo "== $name" >> "$OUT/gpu.md"
  timeout 240 "$@" >> "$OUT/gpu.md" 2> "$OUT/$name.err" || echo "($name failed: see $name.err)" >> "$OUT/gpu.md"
}
SMOL="--layers 30 --hidden 576 --intermediate 1536 --heads 9 --kv-heads 3 --vocab 49152 --steps 20"
ONEB="--layers 16 --hidden 2048 --intermediate 8192 --heads 32 --kv-heads 8 --vocab 128256 --steps 10"
run smol-partial-lora python bench/bench_recover.py $SMOL --methods partial,lora
run smol-qlora python bench/bench_recover.py $SMOL --methods partial,qlora
run 1b-partial-lora python bench/bench_recover.py $ONEB --methods partial,lora
run 1b-qlora python bench/bench_recover.py $ONEB --methods partial,qlora
run score python bench/bench_score.py
# layer-by-layer scoring computing on the GPU (in memory stays on the CPU without --device-map): same choices?
run stream-score python bench/bench_score_memory.py --layers 12 --metrics block-influence,ppl --timeout 200
cat "$OUT/env.txt" "$OUT/gpu.md"

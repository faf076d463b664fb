"""Recovery: partial-layer fine-tuning vs LoRA on the same model, data and steps, in one run.

Each method runs `hfprune recover` in a fresh process; tokens/s is hfprune's own count of non-padding tokens per
second of training steps, peak RSS is the process's. Usage: python bench/bench_recover.py [--layers 12]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from measure import measure  # noqa: E402

WORDS = ("model layer prune heal token window residual attention network weight bias norm vector matrix "
         "language paris france capital quick brown fox lazy dog answer question response instruction").split()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--intermediate", type=int, help="FFN width (default: hidden x 11/4)")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, help="vocabulary (default: the tiny tokenizer's)")
    ap.add_argument("--methods", default="partial,lora",
                    help="comma list of partial, partial-nocache (frozen prefix recomputed every epoch), partial-disk "
                         "(replayed from a memory-mapped file), partial-bf16, lora, lora-bf16, qlora")
    ap.add_argument("--epochs", type=float, help="run whole epochs over --examples rows instead of --steps")
    ap.add_argument("--examples", type=int, default=512)
    args = ap.parse_args()
    intermediate = args.intermediate or args.hidden * 11 // 4
    vocab = f", vocab_size={args.vocab}" if args.vocab else ""
    work = Path(tempfile.mkdtemp(prefix="hfprune-bench-recover-"))
    try:
        subprocess.run([sys.executable, "-c",
                        "import sys; from hfprune.tiny import build_tiny_checkpoint as b; "
                        f"b(sys.argv[1], 'llama', num_layers={args.layers}, hidden_size={args.hidden}, "
                        f"intermediate_size={intermediate}, num_attention_heads={args.heads}, "
                        f"num_key_value_heads={args.kv_heads}{vocab})",
                        str(work / "model")], check=True, capture_output=True)
        rng = random.Random(0)
        rows = [{"instruction": " ".join(rng.choices(WORDS, k=20)), "input": "",
                 "output": " ".join(rng.choices(WORDS, k=60))} for _ in range(args.examples)]
        (work / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        length = (["--epochs", str(args.epochs)] if args.epochs else ["--max-steps", str(args.steps)])
        common = ["--dataset", str(work / "data.jsonl"), *length, "--batch-size", "16",
                  "--micro-batch-size", "8", "--warmup-steps", "0", "--lr", "1e-4", "--no-progress",
                  "--save-steps", "100000"]
        import torch

        where = (f"bf16 on {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
                 else "fp32 on CPU (torch threads: default)")
        print(f"model: llama-shaped, {args.layers} layers, hidden {args.hidden}, FFN {intermediate}, {where}; "
              + (f"{args.epochs:g} epochs over {args.examples}" if args.epochs else f"{args.steps} optimizer steps of 16")
              + " sequences (~100 tokens)\n")
        print("| method | trainable params | tokens/s | peak RSS MiB | peak GPU GiB (torch) |")
        print("|---|---|---|---|---|")
        results = {}
        methods = {"partial": ("partial (lm_head + norm + last 3 layers)", ["--method", "partial", "--last-k", "3"]),
                   "partial-nocache": ("partial, frozen prefix recomputed every epoch",
                                       ["--method", "partial", "--last-k", "3", "--prefix-cache-gib", "0"]),
                   "partial-disk": ("partial, frozen prefix replayed from a memory-mapped file",
                                    ["--method", "partial", "--last-k", "3", "--prefix-cache-store", "disk"]),
                   "partial-bf16": ("partial, bf16 mixed precision (--precision bf16)",
                                    ["--method", "partial", "--last-k", "3", "--precision", "bf16"]),
                   "lora": ("lora (r=8, all linear projections)", ["--method", "lora", "--lora-r", "8"]),
                   "lora-bf16": ("lora, bf16 mixed precision", ["--method", "lora", "--lora-r", "8",
                                                                "--precision", "bf16"]),
                   "qlora": ("qlora (r=8, 4-bit NF4 base)", ["--method", "qlora", "--lora-r", "8"])}
        for key in args.methods.split(","):
            name, extra = methods[key]
            out = work / key
            log = work / f"{key}.log"
            r = measure(["sh", "-c", f'"$@" > {log} 2>&1', "sh", sys.executable, "-m", "hfprune", "recover",
                         str(work / "model"), "-o", str(out), *common, *extra])
            text = log.read_text()
            tps = float(re.search(r"([\d.]+) tokens/s", text).group(1))
            trained = re.search(r"trained ([\d,]+) of", text).group(1)
            gpu = re.search(r"peak GPU memory \(torch\): ([\d.]+) GiB", text)
            results[key] = (tps, r["peak_rss_bytes"])
            print(f"| {name} | {trained} | {tps:.0f} | {r['peak_rss_bytes'] / 2**20:.0f} | "
                  f"{gpu.group(1) if gpu else '-'} |")
        keys = list(results)
        for key in keys[1:]:
            print(f"{keys[0]} vs {key}: {results[keys[0]][0] / results[key][0]:.2f}x tokens/s, "
                  f"{results[keys[0]][1] / results[key][1]:.2f}x peak RSS")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

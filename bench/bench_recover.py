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
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hfprune-bench-recover-"))
    try:
        subprocess.run([sys.executable, "-c",
                        "import sys; from hfprune.tiny import build_tiny_checkpoint as b; "
                        f"b(sys.argv[1], 'llama', num_layers={args.layers}, hidden_size={args.hidden}, "
                        f"intermediate_size={args.hidden * 11 // 4}, num_attention_heads=8, num_key_value_heads=4)",
                        str(work / "model")], check=True, capture_output=True)
        rng = random.Random(0)
        rows = [{"instruction": " ".join(rng.choices(WORDS, k=20)), "input": "",
                 "output": " ".join(rng.choices(WORDS, k=60))} for _ in range(512)]
        (work / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        common = ["--dataset", str(work / "data.jsonl"), "--max-steps", str(args.steps), "--batch-size", "16",
                  "--micro-batch-size", "8", "--warmup-steps", "0", "--lr", "1e-4", "--no-progress",
                  "--save-steps", "100000"]
        print(f"model: llama-shaped, {args.layers} layers, hidden {args.hidden}, fp32 on CPU (torch threads: "
              f"default); {args.steps} optimizer steps of 16 sequences (~100 tokens)\n")
        print("| method | trainable params | tokens/s | peak RSS MiB |")
        print("|---|---|---|---|")
        results = {}
        for name, extra in (("partial (lm_head + norm + last 3 layers)", ["--method", "partial", "--last-k", "3"]),
                            ("lora (r=8, all linear projections)", ["--method", "lora", "--lora-r", "8"])):
            out = work / name.split()[0]
            log = work / f"{name.split()[0]}.log"
            r = measure(["sh", "-c", f'"$@" > {log} 2>&1', "sh", sys.executable, "-m", "hfprune", "recover",
                         str(work / "model"), "-o", str(out), *common, *extra])
            text = log.read_text()
            tps = float(re.search(r"([\d.]+) tokens/s", text).group(1))
            trained = re.search(r"trained ([\d,]+) of", text).group(1)
            results[name] = (tps, r["peak_rss_bytes"])
            print(f"| {name} | {trained} | {tps:.0f} | {r['peak_rss_bytes'] / 2**20:.0f} |")
        (p_tps, p_rss), (l_tps, l_rss) = results.values()
        print(f"\npartial vs lora: {p_tps / l_tps:.2f}x tokens/s, {p_rss / l_rss:.2f}x peak memory")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Distillation: the teacher's cost, live vs stored top-k logits, against plain SFT, in one run.

Each row runs `hfprune recover` in a fresh process on the same student, data and optimizer steps; tokens/s is
hfprune's count of non-padding tokens per second of training steps, peak RSS the process's. The cached teacher
is run twice: the first run computes and stores the top-k logits (its wall time includes that pass), the second
reuses the file (what every further healing run of a sweep costs).

Usage (real checkpoints from bench/real/):
  python bench/bench_kd.py --student PRUNED_DIR --teacher DENSE_DIR --data heal.jsonl [--samples 160]
Without --student/--teacher it builds a Llama-shaped random model (12 layers, hidden 512) and prunes 4 layers.
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
    ap.add_argument("--student")
    ap.add_argument("--teacher")
    ap.add_argument("--data")
    ap.add_argument("--samples", type=int, default=160)
    ap.add_argument("--top-k", type=int, default=64)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hfprune-bench-kd-"))
    try:
        if not args.student:
            subprocess.run([sys.executable, "-c",
                            "import sys; from hfprune.tiny import build_tiny_checkpoint as b; "
                            "b(sys.argv[1], 'llama', num_layers=12, hidden_size=512, intermediate_size=1408, "
                            "num_attention_heads=8, num_key_value_heads=4)", str(work / "dense")], check=True)
            subprocess.run([sys.executable, "-m", "hfprune", "prune", str(work / "dense"), "-o", str(work / "pruned"),
                            "--drop-layers", "6-9", "--no-progress"], check=True, capture_output=True)
            args.student, args.teacher = str(work / "pruned"), str(work / "dense")
        if not args.data:
            rng = random.Random(0)
            rows = [{"instruction": " ".join(rng.choices(WORDS, k=20)), "input": "",
                     "output": " ".join(rng.choices(WORDS, k=60))} for _ in range(args.samples)]
            args.data = str(work / "data.jsonl")
            Path(args.data).write_text("\n".join(json.dumps(r) for r in rows))
        common = ["--dataset", args.data, "--max-samples", str(args.samples), "--epochs", "1", "--batch-size", "16",
                  "--micro-batch-size", "8", "--max-length", "256", "--lr", "2e-4", "--no-progress",
                  "--save-steps", "100000", "--teacher", args.teacher]
        env_cache = work / "cache"
        print(f"student {Path(args.student).name}, teacher {Path(args.teacher).name}; {args.samples} examples, "
              "1 epoch, batch 16 (micro 8), partial (last 3 layers), fp32 on CPU\n")
        print("| healing | tokens/s | wall s | peak RSS MiB |")
        print("|---|---|---|---|")
        rows = (("SFT (partial)", ["--method", "partial"]),
                ("KD, teacher live (partial-kd)", ["--method", "partial-kd", "--teacher-logits", "live"]),
                (f"KD, top-{args.top_k} stored: first run (computes them)",
                 ["--method", "partial-kd", "--teacher-logits", "cached", "--teacher-top-k", str(args.top_k)]),
                (f"KD, top-{args.top_k} stored: reused",
                 ["--method", "partial-kd", "--teacher-logits", "cached", "--teacher-top-k", str(args.top_k)]))
        for i, (name, extra) in enumerate(rows):
            out, log = work / f"out{i}", work / f"out{i}.log"
            r = measure(["sh", "-c", f'HFPRUNE_CACHE={env_cache} "$@" > {log} 2>&1', "sh", sys.executable, "-m",
                         "hfprune", "recover", args.student, "-o", str(out), *common, *extra])
            tps = float(re.search(r"([\d.]+) tokens/s", log.read_text()).group(1))
            print(f"| {name} | {tps:.0f} | {r['wall_s']:.0f} | {r['peak_rss_bytes'] / 2**20:.0f} |")
        stored = sorted(env_cache.rglob("teacher-topk-*.safetensors"))
        if stored:
            print(f"\nstored top-{args.top_k} file: {stored[0].stat().st_size / 2**20:.1f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

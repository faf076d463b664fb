"""Peak memory of data-driven scoring on a ~0.75B-parameter Llama-shaped checkpoint (bf16), per metric.

Each metric runs `hfprune score` in a fresh process; the figure is that process's peak RSS, next to the size of
the weights. Usage: python bench/bench_score_memory.py [--layers 14]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_prune import build_checkpoint  # noqa: E402
from measure import measure  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=14)
    args = ap.parse_args()
    from hfprune.tiny import DEMO_TEXT, train_tokenizer

    work = Path(tempfile.mkdtemp(prefix="hfprune-bench-mem-"))
    try:
        total = build_checkpoint(work / "m", args.layers)
        train_tokenizer(work / "m")  # 384-token BPE: its ids are valid rows of the 32000-row embedding
        (work / "calib.txt").write_text((DEMO_TEXT + "\n") * 200)
        print(f"checkpoint: {args.layers} layers, {total / 2**30:.2f} GiB of bf16 weights; calibration 10 x 128 "
              "tokens, batch 10\n")
        print("| metric | dtype | peak RSS GiB | RSS / weights |")
        print("|---|---|---|---|")
        for metric, remove, dtype in (("block-influence", 4, "bfloat16"), ("finercut", 4, "bfloat16"),
                                      ("block-influence", 4, "float32")):
            r = measure([sys.executable, "-m", "hfprune", "score", str(work / "m"), "--metric", metric, "--remove",
                         str(remove), "--data", str(work / "calib.txt"), "--dtype", dtype, "-o",
                         str(work / "plan.json"), "--scores", str(work / "scores.json"), "--cache-dir",
                         str(work / "cache"), "--no-progress"])
            print(f"| {metric} | {dtype} | {r['peak_rss_bytes'] / 2**30:.2f} | "
                  f"{r['peak_rss_bytes'] / total:.2f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Scoring: naive recomputation vs hfprune's cached-prefix replay, for ppl and finercut, in one run.

Both paths must choose the same plan (checked here too). Usage: python bench/bench_score.py [--layers 12]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args()

    import torch
    from transformers.utils import logging

    from hfprune.disk.model_types import ARCHITECTURES
    from hfprune.scoring.calibration import load_calibration
    from hfprune.scoring.forward import LayerStack
    from hfprune.scoring.in_memory import InMemoryDriver
    from hfprune.scoring.metrics import METRICS, ScoreInputs, finercut, lowest
    from hfprune.scoring.drivers import load_scoring_model as _load_model
    from hfprune.settings import ScoreOptions
    from hfprune.tiny import DEMO_TEXT, build_tiny_checkpoint

    logging.disable_progress_bar()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="hfprune-bench-score-"))
    try:
        src = build_tiny_checkpoint(work / "m", "llama", num_layers=args.layers, hidden_size=args.hidden,
                                    intermediate_size=4 * args.hidden)
        data = work / "calib.txt"
        data.write_text((DEMO_TEXT + "\n") * 50)
        print(f"model: tiny llama, {args.layers} layers, hidden {args.hidden}; calibration {args.samples} x "
              f"{args.seq_len} tokens; torch threads 2\n")
        # the scoring passes alone (model loading and tokenisation are the same for both and excluded)
        model, tok = _load_model(src, ScoreOptions(metric="ppl", remove=1))
        calib = load_calibration(str(data), tok, samples=args.samples, seq_len=args.seq_len, seed=0)
        stack = LayerStack(model, ARCHITECTURES["llama"])
        print("| metric | naive s | cached s | cached / naive | same choice |")
        print("|---|---|---|---|---|")
        for metric, remove in (("ppl", 4), ("finercut", 6)):
            times, choices = {}, {}
            for naive in (True, False):
                driver = InMemoryDriver(stack, list(calib.input_ids.split(10)), cached=not naive)
                inp = ScoreInputs(num_layers=args.layers, driver=driver)
                t = time.perf_counter()
                if metric == "ppl":
                    choices[naive] = lowest(METRICS["ppl"].score(inp), remove)
                else:
                    choices[naive] = [s["removed"] for s in finercut(inp, remove)]
                times[naive] = time.perf_counter() - t
            print(f"| {metric} (remove {remove}) | {times[True]:.2f} | {times[False]:.2f} | "
                  f"{times[False] / times[True]:.2f}x | {choices[True] == choices[False]} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Quick quality probe: plans x replacement on a real checkpoint, through the product (score, prune --replace,
evaluate_model), one JSON line per model. For the full grid with healing use `hfprune sweep`.

    python bench/real/replace_probe.py --model ~/.cache/hfprune/real/Qwen2.5-Coder-1.5B-Instruct \
        --plans reverse-order:6,angular:6,block-influence:6 --replace none,linear --limit 5 --out probe.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from build_checkpoints import real_root  # noqa: E402


def main() -> int:
    data = real_root() / "data"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--plans", required=True, help="metric:N,... (N layers; finercut: sub-blocks) or layers:A-B "
                                                  "(an explicit block, 0-based, inclusive), separated by spaces")
    ap.add_argument("--replace", default="none,linear")
    ap.add_argument("--calib", default=str(data / "calib_c4.jsonl"), help="scoring and fit calibration text")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--weighting", default="token")
    ap.add_argument("--objective", default="lstsq")
    ap.add_argument("--tag", default="", help="appended to entry names")
    ap.add_argument("--tasks", default="real_mmlu,real_ppl_wiki")
    ap.add_argument("--limit", type=float, default=5)
    ap.add_argument("--dense", action="store_true", help="evaluate the dense model too")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from hfprune.api import prune
    from hfprune.evaluation.harness import evaluate_model
    from hfprune.scoring.score import score
    from hfprune.settings import PruneSection, ScoreOptions

    limit = int(args.limit) if args.limit >= 1 else args.limit
    tasks = args.tasks.split(",")
    include = str(data / "tasks")

    def evaluate(path, label, extra):
        start = time.perf_counter()
        ev = evaluate_model(path, tasks, limit=limit, include_path=include)
        row = {"entry": label, **extra, "params": ev["size"]["parameters"],
               "tasks": {t: m for t, m in ev["tasks"].items() if not t.startswith("real_mmlu_")},
               "eval_s": round(time.perf_counter() - start, 1)}
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    if args.dense:
        evaluate(Path(args.model), "dense", {})
    from hfprune.plan import Plan, parse_layer_list
    from hfprune.disk.checkpoint import Checkpoint

    layers = Checkpoint.open(args.model).num_layers
    for spec in args.plans.replace(",", " ").split():
        metric, n = spec.split(":")
        if metric == "layers":
            plan = Plan.build(layers, drop_layers=parse_layer_list(n, "layers", layers), metric="manual")
            n = n.replace("-", "to")
        else:
            plan = score(args.model, ScoreOptions(metric=metric, remove=int(n), data=args.calib, samples=32,
                                                  seq_len=256)).plan
        for replace in args.replace.split(","):
            with tempfile.TemporaryDirectory(dir=Path(args.out).resolve().parent) as tmp:
                settings = PruneSection(replace=replace, replace_data=args.calib, replace_samples=args.samples,
                                        replace_seq_len=args.seq_len, replace_ridge=args.ridge,
                                        replace_weighting=args.weighting, replace_objective=args.objective)
                start = time.perf_counter()
                result = prune(args.model, Path(tmp) / "m", plan=plan, replace=settings)
                fit_s = round(time.perf_counter() - start, 1)
                evaluate(Path(tmp) / "m", f"{metric}{n}-{replace}{args.tag}",
                         {"plan": plan.to_dict(), "replacement": result.replacement, "prune_s": fit_s})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which letters a model picks on MMLU: a model at chance accuracy that still chats well may simply answer one
letter to everything. Runs lm-eval's MMLU through `hfprune.evaluation.harness.evaluate_model` with its samples
logged, and prints accuracy and the share of each chosen letter per model.

    python bench/real/mmlu_choices.py --limit 3 DENSE PRUNED ...
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from build_checkpoints import real_root  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--limit", type=float, default=3, help="questions per subject (57 subjects)")
    ap.add_argument("--include-path", default=str(real_root() / "data" / "tasks"))
    args = ap.parse_args()
    from hfprune.evaluation.harness import evaluate_model

    print("| model | questions | acc % | chose A / B / C / D % | correct A / B / C / D % |")
    print("|---|---|---|---|---|")
    for folder in args.models:
        result = evaluate_model(folder, ["real_mmlu"], limit=args.limit, include_path=args.include_path,
                                log_samples=True, progress=False)
        chosen, gold, right = Counter(), Counter(), 0
        for samples in result["samples"].values():
            for s in samples:
                scores = [r[0] for r in s["filtered_resps"]]
                pick = max(range(len(scores)), key=scores.__getitem__)
                chosen[pick] += 1
                gold[int(s["target"])] += 1
                right += pick == int(s["target"])
        n = sum(chosen.values())
        share = lambda c: " / ".join(f"{100 * c[i] / n:.0f}" for i in range(4))  # noqa: E731
        label = "/".join(Path(folder).parts[-2:])
        print(f"| {label} | {n} | {100 * right / n:.1f} | {share(chosen)} | {share(gold)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

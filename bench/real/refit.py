"""Refit a finished sweep entry's linear replacement with the current code and compare it with what the entry
recorded (same source, plan, data and settings): a code change that keeps the maths must give the same
calibration errors, block by block.

    python bench/real/refit.py SWEEP_DIR/ENTRY [--stream on|off] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("entry", type=Path, help="a sweep entry folder with recipe.yaml, plan.json, pruned/hfprune.json")
    ap.add_argument("--stream", default="off", choices=["on", "off", "auto"])
    ap.add_argument("--out", type=Path, default=None, help="where the refitted checkpoint goes (default: a temp dir)")
    args = ap.parse_args()

    from hfprune.api import prune
    from hfprune.plan import Plan
    from hfprune.settings import PruneSection

    recipe = yaml.safe_load((args.entry / "recipe.yaml").read_text())
    recorded = json.loads((args.entry / "pruned" / "hfprune.json").read_text())["replacement"]
    plan = Plan.from_dict(json.loads((args.entry / "plan.json").read_text()))
    keys = ("replace", "replace_data", "replace_samples", "replace_seq_len", "replace_ridge", "replace_weighting",
            "replace_objective", "data", "seed")
    section = PruneSection(**{k: recipe["prune"][k] for k in keys}, replace_stream=args.stream)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "refit"
        start = time.perf_counter()
        result = prune(recipe["source"], out, plan=plan, replace=section, echo=lambda *_: None)
        seconds = time.perf_counter() - start
    now = result.replacement
    print(f"{args.entry.name}: refit in {seconds:.0f} s (layer by layer: {now['layer_by_layer']}), data sha256 "
          f"{now['data']['sha256'][:12]} (recorded {recorded['data']['sha256'][:12]}), tokens {now['tokens']}")
    print("| block | fold into | removal error (recorded / now) | fit error (recorded / now) |")
    print("|---|---|---|---|")
    for old, new in zip(recorded["blocks"], now["blocks"]):
        assert old["layers"] == new["layers"] and old["fold_into"] == new["fold_into"]
        print(f"| {old['layers'][0]}-{old['layers'][1]} | {old['fold_into']} | {old['removal_error']:.6f} / "
              f"{new['removal_error']:.6f} | {old['fit_error']:.6f} / {new['fit_error']:.6f} |")


if __name__ == "__main__":
    main()

"""Markdown tables for bench/RESULTS.md from the sweep dirs written by bench/real/seed_experiment.sh.

    python bench/real/report.py hfprune-real      # the OUT folder of seed_experiment.sh
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TASKS = (("real_capitals_mc", "acc", "capitals acc %"), ("real_ppl_python", "word_perplexity", "Python tutorial ppl"),
         ("real_ppl_chat", "word_perplexity", "held-out chat ppl"))


def _fmt(metric: str, v) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}" if metric == "acc" else (f"{v:,.1f}" if v < 1e5 else f"{v:.2e}")


def table(sweep: Path, label: str, dense_once: bool = True) -> list[str]:
    results = json.loads((sweep / "results.json").read_text())
    lines = [f"**{label}** (`{sweep.name}`)", "",
             "| model | layers removed | params | " + " | ".join(t[2] for t in TASKS) + " | stage seconds |",
             "|---|---|---|" + "---|" * len(TASKS) + "---|"]
    rows = list(results["rows"])
    if not dense_once:  # healing sweeps: add each plan's unhealed model (same evaluation settings) after dense
        seen = set()
        for r in list(rows):
            ev_path = sweep / r["entry"] / "eval.json"
            if r["entry"] == "dense" or not ev_path.is_file():
                continue
            metric = r["entry"].rsplit("-", 1)[0]
            if metric not in seen:
                seen.add(metric)
                ev = json.loads(ev_path.read_text())["pruned"]
                rows.insert(1 + len(seen) - 1, {"entry": f"{metric} (no healing)", "removed": r["removed"],
                                                "parameters": ev["size"]["parameters"], "tasks": ev["tasks"]})
    for r in rows:
        removed = "-" if r["removed"] is None else ",".join(map(str, r["removed"]["drop_layers"]))
        cells = [r["entry"], removed, f"{r['parameters'] / 1e6:.2f}M"]
        cells += [_fmt(m, r["tasks"].get(t, {}).get(m)) for t, m, _ in TASKS]
        secs = r.get("stage_seconds") or {}
        cells.append(", ".join(f"{k} {v:.0f}" for k, v in secs.items()) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hfprune-real")
    parts = [("smol-pruned", "SmolLM2-135M-Instruct, 8 of 30 layers removed, no healing"),
             ("smol-paper", "SmolLM2, healed with the seed paper's hyper-parameters (lr 1e-5, batch 64; 500 examples, 1 epoch)"),
             ("smol-tuned", "SmolLM2, healed with lr 2e-4, batch 16 (the same 500 examples, 1 epoch)"),
             ("smol-untie", "SmolLM2, reverse-order + partial, lr 2e-4, lm_head untied"),
             ("gemma-pruned", "Gemma-3-270M, 4 of 18 layers removed, no healing")]
    for name, label in parts:
        if (out / name / "results.json").is_file():
            print("\n".join(table(out / name, label, dense_once=name in ("smol-pruned", "gemma-pruned"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

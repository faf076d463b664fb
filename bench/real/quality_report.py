"""Markdown tables for bench/RESULTS.md from the sweep dirs of bench/real/quality_experiment.sh, or from the
JSON lines of bench/real/replace_probe.py.

    python bench/real/quality_report.py hfprune-real     # the OUT folder of the experiment
    python bench/real/quality_report.py --probe probe.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _row_cells(sweep: Path, row: dict, dense: dict) -> list[str]:
    tasks = row["tasks"]
    mmlu = tasks.get("real_mmlu", {})
    acc, err = mmlu.get("acc"), mmlu.get("acc_stderr")
    dense_acc = dense["tasks"].get("real_mmlu", {}).get("acc")
    removed = "-" if row["removed"] is None else (",".join(map(str, row["removed"]["drop_layers"])) or "-")
    if row["removed"] and (row["removed"]["skip_attention"] or row["removed"]["skip_mlp"]):
        removed += f" (+{len(row['removed']['skip_attention'])} attn, {len(row['removed']['skip_mlp'])} FFN)"
    fit = "-"
    record_path = sweep / row["entry"] / "pruned" / "hfprune.json"
    if record_path.is_file():
        rec = json.loads(record_path.read_text()).get("replacement")
        if rec and rec.get("blocks"):
            fit = "; ".join(f"{b['removal_error']:.2f} -> {b['fit_error']:.2f}" for b in rec["blocks"])
    cells = [row["entry"], removed, f"{row['parameters'] / 1e6:.0f}M ({100 * (1 - row['parameters'] / dense['parameters']):.1f}%)",
             "n/a" if acc is None else f"{100 * acc:.1f} ± {100 * err:.1f}",
             "n/a" if acc is None or not dense_acc else f"{100 * acc / dense_acc:.0f}%"]
    for task in ("real_ppl_wiki", "real_ppl_c4"):
        v = tasks.get(task, {}).get("word_perplexity")
        cells.append("n/a" if v is None else (f"{v:,.1f}" if v < 1e5 else f"{v:.2e}"))
    speed = row.get("speed_relative")
    cells += [fit, "-" if speed is None else f"{speed:.2f}"]
    secs = row.get("stage_seconds") or {}
    cells.append(", ".join(f"{k} {v:.0f}" for k, v in secs.items() if v >= 1) or "-")
    return cells


def table(sweep: Path, label: str) -> list[str]:
    results = json.loads((sweep / "results.json").read_text())
    rows = results["rows"]
    dense = next(r for r in rows if r["entry"] == "dense")
    lines = [f"**{label}** (`{sweep.name}`)", "",
             "| entry | layers removed | params (removed) | MMLU acc % | of dense | wiki ppl | C4 ppl | fit error "
             "(without -> with map) | decode x dense | stage seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(_row_cells(sweep, r, dense)) + " |")
    return lines + [""]


def probe_table(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    dense = next((r for r in rows if r["entry"] == "dense"), None)
    dense_acc = dense["tasks"]["real_mmlu"]["acc"] if dense else None
    lines = ["| entry | layers removed | fit weighting | MMLU acc % | of dense | wiki ppl | fit error (without -> with "
             "map) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        mmlu, wiki = r["tasks"].get("real_mmlu", {}), r["tasks"].get("real_ppl_wiki", {})
        rep = r.get("replacement")
        removed = ",".join(map(str, r["plan"]["drop_layers"])) if r.get("plan") else "-"
        fit = "; ".join(f"{b['removal_error']:.3f} -> {b['fit_error']:.3f}" for b in rep["blocks"]) if rep else "-"
        ppl = wiki.get("word_perplexity")
        lines.append(f"| {r['entry']} | {removed} | {rep.get('weighting', 'unweighted') if rep else '-'} | "
                     f"{100 * mmlu['acc']:.1f} ± {100 * mmlu['acc_stderr']:.1f} | "
                     f"{100 * mmlu['acc'] / dense_acc:.0f}% | {ppl:,.1f} | {fit} |" if dense_acc else "")
    return lines


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":
        print("\n".join(probe_table(Path(sys.argv[2]))))
        return 0
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hfprune-real")
    for sweep in sorted(p for p in out.iterdir() if (p / "results.json").is_file()):
        print("\n".join(table(sweep, sweep.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

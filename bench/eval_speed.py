"""Evaluation speed and memory against the floor, and bf16 vs float32 agreement, on one real checkpoint.

Each contender runs in its own child process (peak RSS is the child's own VmHWM) on the same lm-eval requests:

- floor:     one plain batched forward per distinct prompt (lm-eval's contexts, tokenized as lm-eval does, sorted
             by length, batches of at most --floor-tokens tokens), logits at the last position only: the least any
             evaluator must compute for single-token answers;
- hfprune:   hfprune's evaluate_model (lm-eval's simple_evaluate through BoundedHFLM) at --dtype;
- lm-eval:   lm-eval's own HFLM as hfprune called it before (batch size 8, full-vocabulary log-softmax at every
             position), same dtype: the "before" figure;
- and, with --agreement, hfprune in bfloat16 and in float32 with per-question choices compared.

    python bench/eval_speed.py --model ~/.cache/hfprune/real/Qwen2.5-Coder-0.5B-Instruct \
        --include-path ~/.cache/hfprune/real/data/tasks --tasks real_mmlu --limit 18 --agreement
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def task_contexts(tasks: list[str], include_path: str, limit) -> list[str]:
    """The distinct contexts of the requests lm-eval builds for these tasks."""
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_path=[include_path], include_defaults=False)

    def leaves(d):
        for v in d.values():
            if isinstance(v, dict):
                yield from leaves(v)
            else:
                yield v

    contexts = []
    for task in leaves(get_task_dict(tasks, manager)):
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        contexts += [inst.args[0] for inst in task.instances]
    return list(dict.fromkeys(contexts))


def run_floor(args) -> dict:
    import torch

    from hfprune.evaluation.harness import load_for_eval

    model, tok = load_for_eval(Path(args.model), dtype=args.dtype)
    contexts = task_contexts(args.tasks.split(","), args.include_path, args.limit)
    encoded = sorted((tok(c, add_special_tokens=False).input_ids for c in contexts), key=len, reverse=True)
    pad = tok.pad_token_id or 0
    start = time.perf_counter()
    with torch.no_grad():
        i = 0
        while i < len(encoded):
            width = len(encoded[i])
            rows = max(1, args.floor_tokens // width)
            batch = encoded[i:i + rows]
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, seq in enumerate(batch):
                ids[r, :len(seq)] = torch.tensor(seq)
                mask[r, :len(seq)] = 1
            model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
            i += rows
    return {"seconds": time.perf_counter() - start, "forwards_over": len(encoded),
            "tokens": sum(map(len, encoded))}


def choices(samples: dict) -> dict:
    out = {}
    for task, docs in (samples or {}).items():
        for d in docs:
            lls = [r[0][0] if isinstance(r[0], (list, tuple)) else r[0] for r in d["resps"]]
            if len(lls) > 1:
                out[f"{task}/{d['doc_id']}"] = max(range(len(lls)), key=lls.__getitem__)
    return out


def headline(tasks: dict) -> dict:
    """Groups and stand-alone tasks; a group's subtasks (real_mmlu_*) left out."""
    return {t: m for t, m in tasks.items() if not any(t.startswith(g + "_") for g in tasks if g != t)}


def run_hfprune(args) -> dict:
    from hfprune.evaluation.harness import evaluate_model

    result = evaluate_model(Path(args.model), args.tasks.split(","), limit=args.limit, dtype=args.dtype,
                            include_path=args.include_path, log_samples=args.samples)
    return {"seconds": result["cost"]["seconds"], "tasks": headline(result["tasks"]), "cost": result["cost"],
            "settings": {k: result["settings"][k] for k in ("dtype", "max_length", "batch_memory_gib")},
            "choices": choices(result.get("samples")) if args.samples else None}


def run_lm_eval(args) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from hfprune.evaluation.harness import load_for_eval, summarize

    model, tok = load_for_eval(Path(args.model), dtype=args.dtype)
    manager = TaskManager(include_path=[args.include_path], include_defaults=False)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=8)
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=args.tasks.split(","), limit=args.limit, task_manager=manager,
                                  log_samples=False, verbosity="ERROR")
    return {"seconds": time.perf_counter() - start, "tasks": headline(summarize(out["results"]))}


def child(args) -> None:
    import torch

    torch.manual_seed(0)
    result = {"floor": run_floor, "hfprune": run_hfprune, "lm-eval": run_lm_eval}[args.child](args)
    result["peak_rss_bytes"] = peak_rss()
    print("RESULT " + json.dumps(result))


def spawn(args, mode: str, dtype: str, samples: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--model", args.model, "--tasks", args.tasks,
           "--include-path", args.include_path, "--dtype", dtype, "--floor-tokens", str(args.floor_tokens)]
    if args.limit is not None:
        cmd += ["--limit", str(args.limit)]
    if samples:
        cmd.append("--samples")
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tasks", default="real_mmlu")
    ap.add_argument("--include-path", required=True)
    ap.add_argument("--limit", type=float, default=None, help="per task (lm-eval's --limit)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--floor-tokens", type=int, default=4096, help="tokens per floor batch")
    ap.add_argument("--agreement", action="store_true", help="also run hfprune in float32 and compare choices")
    ap.add_argument("--skip-lm-eval", action="store_true", help="skip the plain lm-eval (before) run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--samples", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.limit is not None and args.limit >= 1:
        args.limit = int(args.limit)
    if args.child:
        child(args)
        return 0
    floor = spawn(args, "floor", args.dtype)
    ours = spawn(args, "hfprune", args.dtype, samples=args.agreement)
    weights = sum(p.stat().st_size for p in Path(args.model).glob("*.safetensors"))
    print(f"model {Path(args.model).name}, tasks {args.tasks}, limit {args.limit}, dtype {args.dtype}, "
          f"{floor['forwards_over']} distinct prompts, {floor['tokens']} prompt tokens; weights {weights / 2**30:.2f} "
          "GiB on disk\n")
    print("| contender | seconds | x floor | peak RSS (GiB) |\n|---|---|---|---|")
    print(f"| floor (one forward per prompt, last-position logits) | {floor['seconds']:.1f} | 1.00 | "
          f"{floor['peak_rss_bytes'] / 2**30:.2f} |")
    print(f"| hfprune eval ({ours['settings']['dtype']}) | {ours['seconds']:.1f} | "
          f"{ours['seconds'] / floor['seconds']:.2f} | {ours['peak_rss_bytes'] / 2**30:.2f} |")
    if not args.skip_lm_eval:
        plain = spawn(args, "lm-eval", args.dtype)
        print(f"| lm-eval HFLM, batch 8 ({args.dtype}) | {plain['seconds']:.1f} | "
              f"{plain['seconds'] / floor['seconds']:.2f} | {plain['peak_rss_bytes'] / 2**30:.2f} |")
        print(f"\nscores: hfprune {json.dumps(ours['tasks'])}\n        lm-eval {json.dumps(plain['tasks'])}")
    print(f"\nhfprune forwards: {json.dumps(ours['cost'])}")
    if args.agreement:
        other = "float32" if args.dtype != "float32" else "bfloat16"
        theirs = spawn(args, "hfprune", other, samples=True)
        a, b = ours["choices"], theirs["choices"]
        same = sum(a[k] == b.get(k) for k in a)
        print(f"\n{other}: {theirs['seconds']:.1f} s, peak RSS {theirs['peak_rss_bytes'] / 2**30:.2f} GiB; "
              f"{args.dtype} is {theirs['seconds'] / ours['seconds']:.2f}x faster")
        print(f"per-question choices: {same} of {len(a)} the same in {args.dtype} and {other}")
        print(f"scores {other}: {json.dumps(theirs['tasks'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

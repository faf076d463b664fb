"""Command line: parse, call one library function, print. Typed errors become one line and exit status 2.

Nothing heavy is imported at module level so that `--help` answers instantly.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import HfpruneError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage dump
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_plan_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to remove (0-based layer indices of the source model)")
    g.add_argument("--drop-last", type=int, metavar="N", help="drop the last N layers (reverse-order pruning)")
    g.add_argument("--drop-layers", metavar="LIST", help="drop these layers, e.g. 3,7,9-11")
    g.add_argument("--skip-attention", metavar="LIST", help="remove only the attention sub-block of these layers")
    g.add_argument("--skip-mlp", metavar="LIST", help="remove only the FFN/MoE sub-block of these layers")
    g.add_argument("--plan", dest="plan_file", metavar="FILE", help="a plan JSON written by `hfprune score`")


RECOVERY_FLAGS = (("--lr", float, "lr", "recovery learning rate"), ("--epochs", float, "epochs", "recovery epochs"),
                  ("--recover-batch-size", int, "batch_size", "recovery effective batch"),
                  ("--last-k", int, "last_k", "partial: train the last K layers"),
                  ("--lora-r", int, "lora_r", "LoRA rank"), ("--max-samples", int, "max_samples",
                                                              "recovery: use only the first N examples"),
                  ("--warmup-steps", int, "warmup_steps", "recovery warm-up steps"))


def _add_recovery_flags(p: argparse.ArgumentParser) -> None:
    from .recover import RecoverOptions

    g = p.add_argument_group("recovery hyper-parameters (override the recipe; defaults as in `hfprune recover`)")
    defaults = RecoverOptions()
    for flag, kind, field, text in RECOVERY_FLAGS:
        g.add_argument(flag, type=kind, dest=f"recover_{field}", metavar="X",
                       help=f"{text} (default: {getattr(defaults, field)})")
    g.add_argument("--tied-embeddings", dest="recover_tied_embeddings", choices=["freeze", "untie"],
                   help=f"tied lm_head (default: {defaults.tied_embeddings})")
    g.add_argument("--prompt", dest="recover_prompt", choices=["auto", "alpaca", "chat"],
                   help=f"recovery prompt (default: {defaults.prompt})")
    _add_distill_flags(g, "recover_", teacher=False)


def _add_distill_flags(g, prefix: str, teacher: bool = True) -> None:
    """Distillation options; with prefix 'recover_' they are recipe overrides (None: the recipe's value)."""
    from .recover import RecoverOptions

    d = RecoverOptions()
    keep = prefix == ""
    if teacher:
        g.add_argument("--teacher", metavar="DENSE",
                       help="*-kd / --answers teacher: the dense model (default: the Hub source recorded in MODEL's "
                            "hfprune.json)")
    g.add_argument("--kd-temperature", type=float, dest=f"{prefix}kd_temperature", metavar="T",
                   default=d.kd_temperature if keep else None,
                   help=f"*-kd: softmax temperature of teacher and student (default: {d.kd_temperature:g})")
    g.add_argument("--kd-alpha", type=float, dest=f"{prefix}kd_alpha", metavar="A", default=d.kd_alpha if keep else None,
                   help=f"*-kd: loss = A x KD + (1 - A) x SFT cross-entropy (default: {d.kd_alpha:g}, pure KD)")
    g.add_argument("--teacher-logits", choices=["live", "cached"], dest=f"{prefix}teacher_logits",
                   default=d.teacher_logits if keep else None,
                   help="*-kd: run the teacher alongside (live, default) or store its top-k logits once in the "
                        "cache and reuse them (cached: no teacher in memory while training)")
    g.add_argument("--teacher-top-k", type=int, dest=f"{prefix}teacher_top_k", metavar="K",
                   default=d.teacher_top_k if keep else None,
                   help=f"with --teacher-logits cached: logits kept per token (default: {d.teacher_top_k})")
    g.add_argument("--answers", choices=["dataset", "teacher"], dest=f"{prefix}answers",
                   default=d.answers if keep else None,
                   help="train on the dataset's answers (default) or on the teacher's own greedy answers to the "
                        "same instructions (self-data distillation; generated once and cached)")
    g.add_argument("--answer-max-tokens", type=int, dest=f"{prefix}answer_max_tokens", metavar="N",
                   default=d.answer_max_tokens if keep else None,
                   help=f"with --answers teacher: longest generated answer (default: {d.answer_max_tokens})")


def _recovery_overrides(args) -> dict:
    return {f"recover.{k[len('recover_'):]}": v for k, v in vars(args).items()
            if k.startswith("recover_") and v is not None}


def _add_eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", help="comma-separated lm-eval tasks")
    p.add_argument("--limit", type=int, help="at most N examples per task")
    p.add_argument("--include-path", help="a folder of extra lm-eval task YAMLs")


def _eval_overrides(args) -> dict:
    return {"eval.tasks": [t for t in args.tasks.split(",") if t] if args.tasks else None,
            "eval.limit": args.limit, "eval.include_path": args.include_path}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hfprune", description="Remove decoder layers from causal LMs and publish the result.")
    parser.add_argument("--version", action="version", version=f"hfprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("prune", help="write a checkpoint with layers or sub-blocks removed",
                       description="Prune SOURCE (a local folder or a Hub repo id[@revision]) on disk, tensor by "
                                   "tensor, into OUT. The result loads with AutoModelForCausalLM.from_pretrained.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("-o", "--output", metavar="OUT", help="output folder (must not exist unless --overwrite)")
    _add_plan_options(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan and sizes; write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept pickle-only (.bin) weights and convert them (pickles can run code when loaded)")
    p.add_argument("--token", help="Hub token (default: the logged-in one); never printed or stored")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_prune)

    from .metrics import METRICS

    p = sub.add_parser("score", help="score layers (or sub-blocks) and write the plan of what to remove",
                       description="Score SOURCE's layers with a metric from the seed papers and write plan.json "
                                   "(for `hfprune prune --plan`) and scores.json.",
                       epilog="metrics:\n" + "\n".join(f"  {m.name:16} {m.description}" for m in METRICS.values()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--metric", required=True, metavar="M",
                   help="reverse-order, random, magnitude-l1, magnitude-l2, taylor, ppl, block-influence, angular, "
                        "finercut")
    p.add_argument("--remove", type=int, required=True, metavar="N",
                   help="layers to remove (angular: the block size; finercut: attention/FFN sub-blocks)")
    p.add_argument("-o", "--output", metavar="PLAN", default="plan.json", help="plan file (default: %(default)s)")
    p.add_argument("--scores", metavar="FILE", help="scores file (default: scores.json beside the plan)")
    p.add_argument("--data", help="calibration text: a .txt/.json/.jsonl file or a Hub dataset id[:config] "
                                  "(ppl defaults to WikiText-2)")
    p.add_argument("--samples", type=int, default=10, help="calibration windows (default: %(default)s)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per window (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="calibration windows' offsets (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=10, help="windows per forward pass (default: %(default)s)")
    p.add_argument("--iterative-step", type=int, metavar="K",
                   help="remove K layers at a time and rescore in between (layer metrics)")
    p.add_argument("--distance", default="js", choices=["js", "angular", "euclidean"],
                   help="finercut's output distance (default: %(default)s)")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16, float16 or auto (default: %(default)s)")
    p.add_argument("--device-map", help="e.g. auto: spread/offload a model larger than memory with accelerate")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the source's own modeling code")
    p.add_argument("--cache-dir", default=None, help="score cache (default: ~/.cache/hfprune/scores)")
    p.add_argument("--token", help="Hub token; never printed or stored")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("recover", help="heal a pruned checkpoint: partial-layer fine-tuning, LoRA or QLoRA",
                       description="Fine-tune MODEL on instruction data and write the healed checkpoint to OUT "
                                   "(LoRA is merged, so OUT loads without peft). Defaults follow the seed paper.")
    p.add_argument("model", metavar="MODEL", help="a local checkpoint folder (e.g. the output of hfprune prune)")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="the healed checkpoint's folder")
    p.add_argument("--method", default="partial", choices=["partial", "lora", "qlora", "partial-kd", "lora-kd"],
                   help="partial-layer fine-tuning (default), LoRA, or QLoRA (CUDA + bitsandbytes); *-kd: the same "
                        "parameters trained to match the dense teacher's next-token distributions")
    p.add_argument("--dataset", default="alpaca",
                   help="alpaca (yahma/alpaca-cleaned), dolly (databricks/databricks-dolly-15k), a Hub id, or a "
                        "local .json/.jsonl in either shape")
    p.add_argument("--last-k", type=int, default=3, help="partial: train the last K layers (default: %(default)s)")
    p.add_argument("--train-layers", metavar="LIST", help="partial: train exactly these layers instead, e.g. 20-23")
    p.add_argument("--tied-embeddings", default="freeze", choices=["freeze", "untie"],
                   help="tied lm_head: keep it tied and frozen (default: the model keeps its size win) or untie it "
                        "and train a copy (adds vocab x hidden parameters)")
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default: %(default)s)")
    p.add_argument("--lora-alpha", type=int, default=16, help="LoRA alpha (default: %(default)s)")
    p.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout (default: %(default)s)")
    p.add_argument("--lora-targets", default=",".join(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                       "up_proj", "down_proj")),
                   help="comma list of module names that get adapters (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-5,
                   help="peak learning rate, AdamW, linear decay (default: %(default)s, the paper's for 8B models)")
    p.add_argument("--epochs", type=float, default=2.0, help="passes over the data (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="effective batch (default: %(default)s)")
    p.add_argument("--micro-batch-size", type=int, default=4,
                   help="per step; the rest is gradient accumulation (default: %(default)s)")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="default: 10%% of the optimizer steps, at most 100 (the paper's value, set for 52k examples)")
    p.add_argument("--max-length", type=int, help="default 256 for Alpaca, 1024 for Dolly")
    p.add_argument("--max-steps", type=int, default=-1, help="stop after N optimizer steps (default: the epochs)")
    p.add_argument("--max-samples", type=int, help="use only the first N examples")
    p.add_argument("--prompt", default="auto", choices=["auto", "alpaca", "chat"],
                   help="auto (default): the model's chat template when it has one, else the Alpaca prompt")
    p.add_argument("--seed", type=int, default=0, help="data order and initialisation (default: %(default)s)")
    p.add_argument("--save-steps", type=int, default=200,
                   help="checkpoint every N optimizer steps (default: %(default)s)")
    _add_distill_flags(p.add_argument_group("distillation from the dense model"), "")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if hfprune wrote it")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (read it first)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_recover)

    p = sub.add_parser("eval", help="evaluate a checkpoint with lm-evaluation-harness, size and speed",
                       description="Run lm-eval tasks on MODEL (in memory) and measure parameters, size on disk and "
                                   "generation latency; write the results as JSON.")
    p.add_argument("model", metavar="MODEL", help="a local checkpoint folder or a Hub repo id[@revision]")
    p.add_argument("--tasks", help="comma-separated lm-eval tasks (default: the seed paper's eight + wikitext; "
                                   "offline: the bundled hfprune_demo_mc and hfprune_demo_ppl, or your own YAMLs "
                                   "with --include-path)")
    p.add_argument("--token", help="Hub token (default: the logged-in one); never printed or stored")
    p.add_argument("--limit", type=int, help="at most N examples per task")
    p.add_argument("--batch-size", type=int, default=8, help="lm-eval batch size (default: %(default)s)")
    p.add_argument("--include-path", help="a folder of extra lm-eval task YAMLs")
    p.add_argument("-o", "--output", default="eval.json", help="results file (default: %(default)s)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (read it first)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("push", help="the whole pipeline: download, prune, heal, evaluate, card, upload",
                       description="Prune SOURCE, optionally recover it, evaluate dense and pruned models, write a "
                                   "model card and push everything to a new Hub repo in one commit.")
    p.add_argument("source", metavar="SOURCE", nargs="?", help="Hub repo id[@revision] or folder (or source: in --recipe)")
    p.add_argument("--recipe", metavar="YAML", help="a recipe from configs/; the flags below override it")
    _add_plan_options(p)
    p.add_argument("--metric", help="choose the layers with this metric (see hfprune score)")
    p.add_argument("--remove", type=int, metavar="N", help="with --metric: how many layers (finercut: sub-blocks)")
    p.add_argument("--data", help="calibration data for --metric")
    p.add_argument("--iterative-step", type=int, metavar="K",
                   help="with --metric: remove K layers at a time, healing (with --recover) and rescoring between")
    p.add_argument("--recover", choices=["partial", "lora", "qlora", "partial-kd", "lora-kd", "none"],
                   help="recovery method (default: none); *-kd distils from the dense source")
    p.add_argument("--dataset", help="recovery data: alpaca, dolly, a Hub id or a local .json/.jsonl")
    _add_recovery_flags(p)
    _add_eval_options(p)
    p.add_argument("--repo-id", help="target repo (default: <you>/<source name>-<plan tag>)")
    p.add_argument("--private", action="store_true", default=None, help="create the repo private")
    p.add_argument("--work-dir", help="where each stage leaves its artifact (default: hfprune-work/<repo name>)")
    p.add_argument("--no-push", action="store_true", help="stop after writing the final folder")
    p.add_argument("--from-sweep", metavar="DIR", help="publish an entry of a finished `hfprune sweep` (with --entry)")
    p.add_argument("--entry", metavar="NAME", help="with --from-sweep: the entry to publish, e.g. reverse-order-partial")
    p.add_argument("--dry-run", action="store_true", help="show the plan and the stages; write nothing")
    p.add_argument("--resume", action="store_true", help="skip the stages an earlier run finished")
    p.add_argument("--overwrite", action="store_true", help="clear a non-empty work dir and start over")
    p.add_argument("--token", help="Hub token (default: the logged-in one); never printed or stored")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the source's own modeling code")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("sweep", help="run several recipes on one source and tabulate quality vs size",
                       description="Prune SOURCE with each metric of --metrics, heal with each method of --recover, "
                                   "evaluate every result the same way and write results.md / results.json with "
                                   "the Pareto front (quality vs size). Downloads, scores, the dense and pruned "
                                   "evaluations are shared between recipes. Publish an entry with "
                                   "`hfprune push --from-sweep DIR --entry NAME`.")
    p.add_argument("source", metavar="SOURCE", nargs="?", help="Hub repo id[@revision] or folder (or source: in --recipe)")
    p.add_argument("--remove", type=int, required=True, metavar="N", help="layers to remove (finercut: sub-blocks)")
    p.add_argument("--metrics", required=True, metavar="LIST", help="comma list, e.g. reverse-order,block-influence")
    p.add_argument("--recover", default="none", metavar="LIST",
                   help="comma list of none, partial, lora, qlora (default: %(default)s)")
    p.add_argument("--recipe", metavar="YAML", help="hyper-parameters (recover:, eval:, prune: data/samples...)")
    p.add_argument("--data", help="calibration data for the data-driven metrics")
    p.add_argument("--dataset", help="recovery data: alpaca, dolly, a Hub id or a local .json/.jsonl")
    _add_recovery_flags(p)
    _add_eval_options(p)
    p.add_argument("--work-dir", help="sweep dir (default: hfprune-sweep/<source name>-remove<N>)")
    p.add_argument("--resume", action="store_true", help="skip what an earlier run of this sweep finished")
    p.add_argument("--overwrite", action="store_true", help="clear a non-empty sweep dir and start over")
    p.add_argument("--token", help="Hub token; never printed or stored")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the source's own modeling code")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("demo", help="run the whole pipeline offline on a tiny built-in model",
                       description="Build a tiny model and tokenizer, prune, heal, evaluate on bundled tasks and "
                                   "write the final repo folder with its model card. No network.")
    p.add_argument("--work-dir", default="hfprune-demo", help="where to leave every artifact (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing work dir")
    p.set_defaults(func=_cmd_demo)
    return parser


def _cmd_prune(args) -> int:
    from .api import prune

    result = prune(args.source, args.output, dry_run=args.dry_run, overwrite=args.overwrite,
                   allow_pickle=args.allow_pickle, progress=not args.no_progress, token=args.token,
                   drop_last=args.drop_last, drop_layers=args.drop_layers, skip_attention=args.skip_attention,
                   skip_mlp=args.skip_mlp, plan_file=args.plan_file)
    if args.dry_run:
        print("dry run: nothing written")
    print("\n".join(result.describe()))
    return 0


def _cmd_score(args) -> int:
    from . import cache_root
    from .scoring import ScoreOptions, score

    options = ScoreOptions(metric=args.metric, remove=args.remove, data=args.data, samples=args.samples,
                           seq_len=args.seq_len, seed=args.seed, batch_size=args.batch_size,
                           iterative_step=args.iterative_step, distance=args.distance, dtype=args.dtype,
                           device_map=args.device_map, trust_remote_code=args.trust_remote_code)
    import shlex
    from pathlib import Path

    from .workdir import check_writable_file

    scores_path = args.scores or str(Path(args.output).with_name("scores.json"))
    for path, what in ((args.output, "-o"), (scores_path, "--scores")):
        check_writable_file(path, what)
    result = score(args.source, options, plan_path=args.output, scores_path=scores_path,
                   cache_dir=args.cache_dir or cache_root() / "scores", progress=not args.no_progress, token=args.token)
    print(f"{args.metric}: {result.plan.summary()}" + (" (cached)" if result.cached else ""))
    print(f"wrote {args.output} and {scores_path}; apply with: "
          f"hfprune prune {shlex.quote(args.source)} --plan {shlex.quote(args.output)} -o OUT")
    return 0


def _cmd_recover(args) -> int:
    from .plan import parse_layer_list
    from .recover import RecoverOptions, recover

    options = RecoverOptions(
        method=args.method, dataset=args.dataset, last_k=args.last_k,
        train_layers=parse_layer_list(args.train_layers, "--train-layers") if args.train_layers else None,
        tied_embeddings=args.tied_embeddings, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout, lora_targets=[t for t in args.lora_targets.split(",") if t], lr=args.lr,
        epochs=args.epochs, batch_size=args.batch_size, micro_batch_size=args.micro_batch_size,
        warmup_steps=args.warmup_steps, max_length=args.max_length, max_steps=args.max_steps,
        max_samples=args.max_samples, prompt=args.prompt, seed=args.seed, save_steps=args.save_steps,
        trust_remote_code=args.trust_remote_code, teacher=args.teacher, kd_temperature=args.kd_temperature,
        kd_alpha=args.kd_alpha, teacher_logits=args.teacher_logits, teacher_top_k=args.teacher_top_k,
        answers=args.answers, answer_max_tokens=args.answer_max_tokens)
    result = recover(args.model, args.output, options, overwrite=args.overwrite, resume=args.resume,
                     progress=not args.no_progress)
    pct = 100.0 * result.trainable_params / result.total_params
    print(f"trained {result.trainable_params:,} of {result.total_params:,} parameters ({pct:.1f}%)"
          + (f"; layers {result.train_layers}" if result.train_layers else ""))
    if result.tied_embeddings:
        print(f"tied embeddings: {result.tied_embeddings}")
    run = result.run
    print(f"{run['optimizer_steps']} optimizer steps ({run['warmup_steps']} warm-up) on {run['examples']} examples, "
          f"{run['tokens']:,} tokens, prompt: {run['prompt']}")
    if run.get("teacher"):
        print(f"teacher {run['teacher']}: {run['objective']}, answers from the {run['answers']}")
    if result.losses:
        print(f"loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}; {result.tokens_per_s:.0f} tokens/s")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"written: {result.output}")
    return 0


def _cmd_eval(args) -> int:
    from .evaluate import evaluate_model
    from .workdir import write_json
    from .recipe import DEFAULT_TASKS

    from .workdir import check_writable_file

    check_writable_file(args.output, "-o")  # before the evaluation, not after it
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else DEFAULT_TASKS
    from .hub import resolve_source

    model = resolve_source(args.model, token=args.token).path  # a folder, or a Hub id[@revision]
    result = evaluate_model(model, tasks, limit=args.limit, batch_size=args.batch_size,
                            include_path=args.include_path, trust_remote_code=args.trust_remote_code)
    write_json(args.output, result)
    for task, metrics in result["tasks"].items():
        print(f"{task}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    print(f"parameters: {result['size']['parameters']:,}; {result['speed']['tokens_per_s']:.1f} tokens/s "
          f"({result['speed']['device']}); wrote {args.output}")
    return 0


def _cmd_sweep(args) -> int:
    from pathlib import Path

    from .hub import parse_source
    from .recipe import Recipe, RecipeError
    from .sweep import run_sweep

    recipe = Recipe.load(args.recipe) if args.recipe else Recipe()
    source = args.source or recipe.source
    if not source:
        raise RecipeError("no SOURCE: give a Hub repo id or folder on the command line or source: in the recipe")
    recipe = recipe.override(**{
        "prune.data": args.data, "recover.dataset": args.dataset, **_recovery_overrides(args),
        **_eval_overrides(args)})
    name = parse_source(source)[0].rstrip("/").split("/")[-1]
    work = Path(args.work_dir) if args.work_dir else Path("hfprune-sweep") / f"{name}-remove{args.remove}"
    result = run_sweep(recipe, source, args.remove, args.metrics, args.recover, work, resume=args.resume,
                       overwrite=args.overwrite, token=args.token, progress=not args.no_progress,
                       trust_remote_code=args.trust_remote_code)
    print(result.table)
    print(f"wrote {work / 'results.md'} and {work / 'results.json'}; publish one with: "
          f"hfprune push --from-sweep {work} --entry NAME")
    return 0


def _cmd_push(args) -> int:
    from pathlib import Path

    from .pipeline import Pipeline, name_stem
    from .recipe import Recipe, RecipeError

    if args.from_sweep or args.entry:
        return _push_from_sweep(args)
    recipe = Recipe.load(args.recipe) if args.recipe else Recipe()
    recipe = recipe.override(**{
        "source": args.source, "prune.drop_last": args.drop_last, "prune.drop_layers": args.drop_layers,
        "prune.skip_attention": args.skip_attention, "prune.skip_mlp": args.skip_mlp, "prune.metric": args.metric,
        "prune.remove": args.remove, "prune.data": args.data, "prune.iterative_step": args.iterative_step,
        "recover.method": args.recover,
        "recover.dataset": args.dataset, **_recovery_overrides(args),
        **_eval_overrides(args), "push.repo_id": args.repo_id, "push.private": args.private,
        "push.enabled": False if args.no_push else None,
    })
    if args.plan_file:
        from .plan import Plan
        from .recipe import PlanSection

        if any(v is not None for v in (args.drop_last, args.drop_layers, args.skip_attention, args.skip_mlp,
                                       args.metric)):
            raise RecipeError("give either --plan or --drop-last/--drop-layers/--skip-*/--metric, not both")
        recipe = recipe.override(**{"prune.plan": PlanSection.from_plan(Plan.load(args.plan_file)).model_dump()})
    if not recipe.source:
        raise RecipeError("no SOURCE: give a Hub repo id or folder on the command line or source: in the recipe")
    work_dir = Path(args.work_dir) if args.work_dir else Path("hfprune-work") / name_stem(recipe)
    pipe = Pipeline(recipe, work_dir, resume=args.resume, overwrite=args.overwrite, token=args.token,
                    progress=not args.no_progress, trust_remote_code=args.trust_remote_code)
    if args.dry_run:
        print("dry run: nothing written")
        print("\n".join(pipe.describe()))
        return 0
    result = pipe.run()
    print(f"final folder: {result.final_dir}")
    if result.repo_id and result.commit:
        print(f"pushed to https://huggingface.co/{result.repo_id} (commit {result.commit[:12]})")
    return 0


def _push_from_sweep(args) -> int:
    from .errors import RecipeError
    from .pipeline import Pipeline
    from .sweep import from_sweep
    from .workdir import remove_hfprune_folder

    if not (args.from_sweep and args.entry):
        raise RecipeError("--from-sweep DIR and --entry NAME go together")
    others = [f for f in ("source", "recipe", "plan_file", "drop_last", "drop_layers", "skip_attention", "skip_mlp",
                          "metric", "remove", "recover", "dataset", "tasks", "limit") if getattr(args, f, None)]
    if others:
        raise RecipeError(f"--from-sweep publishes the entry as it was measured; drop --{others[0].replace('_', '-')}")
    recipe, entry_dir, table = from_sweep(args.from_sweep, args.entry)
    recipe = recipe.override(**{"push.enabled": not args.no_push, "push.repo_id": args.repo_id,
                                "push.private": args.private})
    pipe = Pipeline(recipe, entry_dir, resume=True, token=args.token, progress=not args.no_progress,
                    trust_remote_code=args.trust_remote_code, sweep_table=table)
    if args.dry_run:
        print("dry run: nothing written")
        print("\n".join(pipe.describe()))
        return 0
    remove_hfprune_folder(entry_dir / "final")  # rebuilt with the sweep table and the target repo in the card
    result = pipe.run()
    print(f"final folder: {result.final_dir}")
    if result.repo_id and result.commit:
        print(f"pushed to https://huggingface.co/{result.repo_id} (commit {result.commit[:12]})")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.work_dir, overwrite=args.overwrite)
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so staged outputs are removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def _install_signal_handlers() -> None:
    import signal

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_terminated)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _install_signal_handlers()
    try:
        return args.func(args)
    except HfpruneError as e:
        print(f"hfprune {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"hfprune {args.command}: interrupted; no partial output was left at the destination", file=sys.stderr)
        return 128 + e.signum if isinstance(e, Terminated) else 130
    except OSError as e:  # full or read-only disk, permissions: the user can fix these
        from .workdir import describe_os_error

        print(f"hfprune {args.command}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

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


DISTILL_FIELDS = ("teacher", "kd_temperature", "kd_alpha", "teacher_logits", "teacher_top_k", "answers",
                  "answer_max_tokens")
# the recovery settings push and sweep take as flags (the rest through --recipe); renamed where a flag of the
# pipeline itself has the name
PIPELINE_RECOVERY_FIELDS = ("lr", "epochs", "batch_size", "micro_batch_size", "last_k", "lora_r", "max_samples",
                            "max_length", "warmup_steps", "tied_embeddings", "prompt") + DISTILL_FIELDS[1:]
PIPELINE_RENAMES = {"batch_size": "--recover-batch-size", "micro_batch_size": "--recover-micro-batch-size"}


def _add_recovery_flags(p: argparse.ArgumentParser) -> None:
    from .cli_options import add_model_flags
    from .settings import RecoverOptions

    g = p.add_argument_group("recovery hyper-parameters (override the recipe)")
    add_model_flags(g, RecoverOptions, fields=PIPELINE_RECOVERY_FIELDS, rename=PIPELINE_RENAMES, prefix="recover_",
                    override=True)


def _recovery_overrides(args) -> dict:
    return {f"recover.{k[len('recover_'):]}": v for k, v in vars(args).items()
            if k.startswith("recover_") and v is not None}


def _add_eval_options(p: argparse.ArgumentParser) -> None:
    from .cli_options import add_model_flags
    from .settings import EvalSection

    add_model_flags(p, EvalSection, fields=("tasks", "limit", "include_path", "dtype", "max_length", "speed_rounds",
                                               "latency_tokens"),
                    prefix="eval_", override=True, rename=EVAL_RENAMES)


def _eval_overrides(args) -> dict:
    from .cli_options import values_from_args
    from .settings import EvalSection

    return {f"eval.{k}": v for k, v in values_from_args(args, EvalSection, prefix="eval_",
                                                         rename=EVAL_RENAMES).items()}


# push/sweep carry recovery flags too: the evaluation's own take a prefix where the names would clash
EVAL_RENAMES = {"dtype": "--eval-dtype", "max_length": "--eval-max-length"}


def _add_calibration_options(p: argparse.ArgumentParser, fields) -> None:
    from .cli_options import add_model_flags
    from .settings import CalibrationSettings

    add_model_flags(p, CalibrationSettings, fields=fields, prefix="prune_", override=True)


def _calibration_overrides(args) -> dict:
    from .cli_options import values_from_args
    from .settings import CalibrationSettings, ReplaceSettings

    values = {**values_from_args(args, CalibrationSettings, prefix="prune_"),
              **values_from_args(args, ReplaceSettings, prefix="prune_")}
    return {f"prune.{k}": v for k, v in values.items()}


def _add_replace_options(p: argparse.ArgumentParser, axis: bool = False) -> None:
    """The --replace settings; a sweep takes --replace as a list (one more axis of entries)."""
    from .cli_options import add_model_flags
    from .settings import ReplaceSettings

    g = p.add_argument_group("training-free replacement of the removed layers (ReplaceMe)")
    if axis:
        g.add_argument("--replace", dest="replace_axis", default="none", metavar="LIST",
                       help="comma list of none, linear: each entry with each (default: %(default)s)")
    add_model_flags(g, ReplaceSettings, exclude=("replace",) if axis else (), prefix="prune_", override=True)


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
    from .cli_options import add_model_flags
    from .settings import ReplaceSettings

    add_model_flags(p.add_argument_group("training-free replacement of the removed layers"), ReplaceSettings)
    p.add_argument("--seed", type=int, default=0, help="calibration windows' offsets for --replace (default: 0)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the source's own modeling code (read "
                                                                   "it first)")
    p.add_argument("--token", help="Hub token (default: the logged-in one); never printed or stored")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_prune)

    from .scoring.metrics import METRICS

    p = sub.add_parser("score", help="score layers (or sub-blocks) and write the plan of what to remove",
                       description="Score SOURCE's layers with a metric from the seed papers and write plan.json "
                                   "(for `hfprune prune --plan`) and scores.json.",
                       epilog="metrics:\n" + "\n".join(f"  {m.name:16} {m.description}" for m in METRICS.values()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE")
    from .cli_options import add_model_flags
    from .settings import ScoreOptions

    add_model_flags(p, ScoreOptions, fields=("metric", "remove"))
    p.add_argument("-o", "--output", metavar="PLAN", default="plan.json", help="plan file (default: %(default)s)")
    p.add_argument("--scores", metavar="FILE", help="scores file (default: scores.json beside the plan)")
    add_model_flags(p, ScoreOptions, exclude=("metric", "remove"))
    p.add_argument("--cache-dir", default=None, help="score cache (default: ~/.cache/hfprune/scores)")
    p.add_argument("--token", help="Hub token; never printed or stored")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("recover", help="heal a pruned checkpoint: partial-layer fine-tuning, LoRA or QLoRA",
                       description="Fine-tune MODEL on instruction data and write the healed checkpoint to OUT "
                                   "(LoRA is merged, so OUT loads without peft). Defaults follow the seed paper.")
    p.add_argument("model", metavar="MODEL", help="a local checkpoint folder (e.g. the output of hfprune prune)")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="the healed checkpoint's folder")
    from .cli_options import add_model_flags
    from .settings import RecoverOptions

    add_model_flags(p, RecoverOptions, exclude=DISTILL_FIELDS + ("trust_remote_code",))
    add_model_flags(p.add_argument_group("distillation from the dense model"), RecoverOptions, fields=DISTILL_FIELDS)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if hfprune wrote it")
    add_model_flags(p, RecoverOptions, fields=("trust_remote_code",))
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_recover)

    p = sub.add_parser("export-gguf", help="convert a pruned checkpoint to GGUF (llama.cpp) with per-layer metadata",
                       description="Convert MODEL with llama.cpp's own convert_hf_to_gguf.py (fetched once from the "
                                   "llama-cpp-python source release on the package index, or --llama-cpp PATH), "
                                   "then write the per-layer sliding-window pattern that pruning made irregular. "
                                   "Refuses, with the reason, what no GGUF can express (skip maps, SmolLM3 with "
                                   "moved NoPE layers).")
    p.add_argument("model", metavar="MODEL", help="a checkpoint folder (e.g. the output of hfprune prune/recover)")
    p.add_argument("-o", "--output", metavar="FILE", help="the .gguf file (default: MODEL.gguf beside MODEL, "
                                                         "MODEL-OUTTYPE.gguf with --outtype)")
    p.add_argument("--outtype", default="auto", choices=["auto", "f32", "f16", "bf16", "q8_0"],
                   help="tensor type, as llama.cpp's converter; auto keeps the checkpoint's precision (bf16 stays "
                        "bf16; default)")
    p.add_argument("--llama-cpp", metavar="PATH", help="a llama.cpp checkout whose converter to use")
    p.add_argument("--overwrite", action="store_true", help="replace FILE")
    p.set_defaults(func=_cmd_export_gguf)

    p = sub.add_parser("eval", help="evaluate a checkpoint with lm-evaluation-harness, size and speed",
                       description="Run lm-eval tasks on MODEL (in memory, in the dtype this hardware computes "
                                   "fastest) and measure parameters, size on disk and decode speed; write the "
                                   "results as JSON.")
    p.add_argument("model", metavar="MODEL", help="a local checkpoint folder or a Hub repo id[@revision]")
    from .cli_options import add_model_flags
    from .settings import EvalSection

    add_model_flags(p, EvalSection)
    p.add_argument("--token", help="Hub token (default: the logged-in one); never printed or stored")
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
    p.add_argument("--target-params", type=float, metavar="T",
                   help="with --metric, instead of --remove: remove until the model has at most T parameters, a "
                        "fraction of the source's (0.85) or a count (1.3e9)")
    _add_calibration_options(p, ("data", "samples", "seq_len", "seed", "distance", "iterative_step"))
    _add_replace_options(p)
    from .settings import RECOVERY_METHODS

    p.add_argument("--recover", choices=[*RECOVERY_METHODS, "none"],
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
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--remove", type=int, metavar="N", help="layers to remove (finercut: sub-blocks)")
    size.add_argument("--target-params", type=float, metavar="T",
                      help="remove until every entry has at most T parameters, a fraction of the source's (0.85) or "
                           "a count (1.3e9): recipes compared at equal size")
    p.add_argument("--metrics", required=True, metavar="LIST", help="comma list, e.g. reverse-order,block-influence")
    p.add_argument("--recover", default="none", metavar="LIST",
                   help=f"comma list of none, {', '.join(RECOVERY_METHODS)} (default: %(default)s)")
    p.add_argument("--recipe", metavar="YAML", help="hyper-parameters (recover:, eval:, prune: data/samples...)")
    _add_calibration_options(p, ("data", "samples", "seq_len", "seed", "distance"))
    _add_replace_options(p, axis=True)
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
    from .cli_options import build, values_from_args
    from .settings import PruneSection, ReplaceSettings

    replace = build(PruneSection, {**values_from_args(args, ReplaceSettings), "seed": args.seed})
    result = prune(args.source, args.output, dry_run=args.dry_run, overwrite=args.overwrite,
                   allow_pickle=args.allow_pickle, progress=not args.no_progress, token=args.token,
                   replace=replace, trust_remote_code=args.trust_remote_code,
                   echo=lambda m: print(m, file=sys.stderr),
                   drop_last=args.drop_last, drop_layers=args.drop_layers, skip_attention=args.skip_attention,
                   skip_mlp=args.skip_mlp, plan_file=args.plan_file)
    if args.dry_run:
        print("dry run: nothing written")
    print("\n".join(result.describe()))
    return 0


def _cmd_score(args) -> int:
    from . import cache_root
    from .cli_options import build, values_from_args
    from .scoring.score import score
    from .settings import ScoreOptions

    options = build(ScoreOptions, values_from_args(args, ScoreOptions))
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
    from .cli_options import build, values_from_args
    from .recovery.train import recover
    from .settings import RecoverOptions

    options = build(RecoverOptions, values_from_args(args, RecoverOptions))
    result = recover(args.model, args.output, options, overwrite=args.overwrite, resume=args.resume,
                     progress=not args.no_progress)
    if not result.main_process:
        return 0  # rank 0 reports and writes
    pct = 100.0 * result.trainable_params / result.total_params
    print(f"trained {result.trainable_params:,} of {result.total_params:,} parameters ({pct:.1f}%)"
          + (f"; layers {result.train_layers}" if result.train_layers else ""))
    if result.tied_embeddings:
        print(f"tied embeddings: {result.tied_embeddings}")
    run = result.run
    if run["processes"] > 1:
        print(f"{run['processes']} processes, rows per process: {run['rows_per_process']}")
    print(f"{run['optimizer_steps']} optimizer steps ({run['warmup_steps']} warm-up) on {run['examples']} examples, "
          f"{run['tokens']:,} tokens, prompt: {run['prompt']}")
    cache = run.get("frozen_prefix_cache")
    if cache and "off" not in cache:
        print(f"frozen layers 0-{cache['layers'] - 1}: computed for {cache['computed_batches']} micro-batches, "
              f"replayed for {cache['replayed_batches']} ({cache['bytes'] / 2**20:.0f} MiB kept)")
    if run.get("peak_cuda_bytes"):
        print(f"peak GPU memory (torch): {run['peak_cuda_bytes'] / 2**30:.2f} GiB")
    if run.get("teacher"):
        print(f"teacher {run['teacher']}: {run['objective']}, answers from the {run['answers']}")
    if result.losses:
        print(f"loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}; {result.tokens_per_s:.0f} tokens/s")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"written: {result.output}")
    return 0


def _cmd_export_gguf(args) -> int:
    from .gguf_export import export_gguf

    result = export_gguf(args.model, args.output, outtype=args.outtype, llama_cpp=args.llama_cpp,
                         overwrite=args.overwrite, echo=lambda m: print(m, file=sys.stderr))
    extra = "".join(f"; wrote {k} ({sum(not v for v in vals)} full-attention of {len(vals)} layers)"
                    for k, vals in result.metadata_written.items())
    print(f"wrote {result.output} ({result.bytes / 2**20:.1f} MiB, {result.layers} layers){extra}")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _cmd_eval(args) -> int:
    from .cli_options import build, values_from_args
    from .evaluation.harness import evaluate_model
    from .settings import EvalSection
    from .workdir import check_writable_file, write_json

    settings = build(EvalSection, values_from_args(args, EvalSection))
    check_writable_file(args.output, "-o")  # before the evaluation, not after it
    from .hub import resolve_source

    model = resolve_source(args.model, token=args.token).path  # a folder, or a Hub id[@revision]
    result = evaluate_model(model, settings.tasks, limit=settings.limit, batch_size=settings.batch_size,
                            include_path=settings.include_path, dtype=settings.dtype, max_length=settings.max_length,
                            batch_memory_gib=settings.batch_memory_gib, trust_remote_code=args.trust_remote_code)
    speed = ""
    if settings.speed_rounds:
        from .evaluation.speed import decode_speed

        measured = decode_speed({"model": model}, dtype=result["settings"]["dtype"],
                                new_tokens=settings.latency_tokens, rounds=settings.speed_rounds,
                                trust_remote_code=args.trust_remote_code)
        result["speed"] = {**measured["models"]["model"], "method": measured["method"]}
        speed = f"; {result['speed']['tokens_per_s']:.1f} tokens/s decoding"
    write_json(args.output, result)
    for task, metrics in result["tasks"].items():
        print(f"{task}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    s = result["settings"]
    print(f"parameters: {result['size']['parameters']:,}; {s['dtype']} on {s['device']}, "
          f"{result['cost']['seconds']:.0f} s{speed}; wrote {args.output}")
    return 0


def _cmd_sweep(args) -> int:
    from pathlib import Path

    from .hub import parse_source
    from .settings import Recipe, RecipeError
    from .sweep import run_sweep

    recipe = Recipe.load(args.recipe) if args.recipe else Recipe()
    source = args.source or recipe.source
    if not source:
        raise RecipeError("no SOURCE: give a Hub repo id or folder on the command line or source: in the recipe")
    recipe = recipe.override(**{
        **_calibration_overrides(args), "recover.dataset": args.dataset, **_recovery_overrides(args),
        **_eval_overrides(args)})
    from .sweep import Size

    size = Size(remove=args.remove, target_params=args.target_params)
    name = parse_source(source)[0].rstrip("/").split("/")[-1]
    work = Path(args.work_dir) if args.work_dir else Path("hfprune-sweep") / f"{name}-{size.tag()}"
    result = run_sweep(recipe, source, size, args.metrics, args.recover, work, resume=args.resume,
                       overwrite=args.overwrite, token=args.token, progress=not args.no_progress,
                       trust_remote_code=args.trust_remote_code, replace=args.replace_axis)
    print(result.table)
    print(f"wrote {work / 'results.md'} and {work / 'results.json'}; publish one with: "
          f"hfprune push --from-sweep {work} --entry NAME")
    return 0


def _cmd_push(args) -> int:
    from pathlib import Path

    from .pipeline import Pipeline, name_stem
    from .settings import Recipe, RecipeError

    if args.from_sweep or args.entry:
        return _push_from_sweep(args)
    recipe = Recipe.load(args.recipe) if args.recipe else Recipe()
    recipe = recipe.override(**{
        "source": args.source, "prune.drop_last": args.drop_last, "prune.drop_layers": args.drop_layers,
        "prune.skip_attention": args.skip_attention, "prune.skip_mlp": args.skip_mlp, "prune.metric": args.metric,
        "prune.remove": args.remove, "prune.target_params": args.target_params, **_calibration_overrides(args),
        "recover.method": args.recover,
        "recover.dataset": args.dataset, **_recovery_overrides(args),
        **_eval_overrides(args), "push.repo_id": args.repo_id, "push.private": args.private,
        "push.enabled": False if args.no_push else None,
    })
    if args.plan_file:
        from .plan import Plan
        from .settings import PlanSection

        if any(v is not None for v in (args.drop_last, args.drop_layers, args.skip_attention, args.skip_mlp,
                                       args.metric)):
            raise RecipeError("give either --plan or --drop-last/--drop-layers/--skip-*/--metric, not both")
        recipe = recipe.override(**{"prune.plan": PlanSection.from_plan(Plan.load(args.plan_file)).model_dump()})
    if not recipe.source:
        raise RecipeError("no SOURCE: give a Hub repo id or folder on the command line or source: in the recipe")
    recipe = _size_only_default(recipe, args)
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


def _size_only_default(recipe, args):
    """`push SOURCE --target-params T` with no metric and no --replace: the recipe measured best without healing
    (reverse-order with the linear map; calibration text: --data, else WikiText-2), said on stderr."""
    from .settings import DEFAULT_SIZE_REPLACE

    p = recipe.prune
    if args.target_params is None or args.metric is not None or getattr(args, "prune_replace", None) is not None:
        return recipe
    if p.metric != "reverse-order" or p.replace != "none":
        return recipe
    data = p.replace_data or p.data
    print(f"--target-params without --metric: reverse-order with --replace {DEFAULT_SIZE_REPLACE} (the best recipe "
          f"without healing in bench/RESULTS.md) on {data or 'wikitext:wikitext-2-raw-v1'}; give --metric or "
          "--replace none to choose otherwise", file=sys.stderr)
    return recipe.override(**{"prune.replace": DEFAULT_SIZE_REPLACE,
                              "prune.replace_data": data or "wikitext:wikitext-2-raw-v1"})


def _push_from_sweep(args) -> int:
    from .errors import RecipeError
    from .pipeline import Pipeline
    from .sweep import from_sweep
    from .workdir import remove_hfprune_folder

    if not (args.from_sweep and args.entry):
        raise RecipeError("--from-sweep DIR and --entry NAME go together")
    others = [f for f in ("source", "recipe", "plan_file", "drop_last", "drop_layers", "skip_attention", "skip_mlp",
                          "metric", "remove", "target_params", "recover", "dataset", "tasks", "limit")
              if getattr(args, f, None)]
    if others:
        raise RecipeError(f"--from-sweep publishes the entry as it was measured; drop --{others[0].replace('_', '-')}")
    recipe, entry_dir, table, svg = from_sweep(args.from_sweep, args.entry)
    recipe = recipe.override(**{"push.enabled": not args.no_push, "push.repo_id": args.repo_id,
                                "push.private": args.private})
    pipe = Pipeline(recipe, entry_dir, resume=True, token=args.token, progress=not args.no_progress,
                    trust_remote_code=args.trust_remote_code, sweep_table=table, sweep_svg=svg)
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

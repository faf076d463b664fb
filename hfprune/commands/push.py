"""`hfprune push`."""

from __future__ import annotations

import sys

from ._shared import (
    add_calibration_options,
    add_eval_options,
    add_plan_options,
    add_recovery_flags,
    add_replace_options,
    add_run_flags,
    calibration_overrides,
    eval_overrides,
    recovery_overrides,
)


def register(sub) -> None:
    p = sub.add_parser("push", help="the whole pipeline: download, prune, heal, evaluate, card, upload",
                       description="Prune SOURCE, optionally recover it, evaluate dense and pruned models, write a "
                                   "model card and push everything to a new Hub repo in one commit.")
    p.add_argument("source", metavar="SOURCE", nargs="?", help="Hub repo id[@revision] or folder (or source: in --recipe)")
    p.add_argument("--recipe", metavar="YAML", help="a recipe from configs/; the flags below override it")
    add_plan_options(p)
    p.add_argument("--metric", help="choose the layers with this metric (see hfprune score)")
    p.add_argument("--remove", type=int, metavar="N", help="with --metric: how many layers (finercut: sub-blocks)")
    p.add_argument("--target-params", type=float, metavar="T",
                   help="with --metric, instead of --remove: remove until the model has at most T parameters, a "
                        "fraction of the source's (0.85) or a count (1.3e9)")
    add_calibration_options(p, ("data", "samples", "seq_len", "seed", "distance", "iterative_step"))
    add_replace_options(p)
    from ..settings import RECOVERY_METHODS

    p.add_argument("--recover", choices=[*RECOVERY_METHODS, "none"],
                   help="recovery method (default: none); *-kd distils from the dense source")
    p.add_argument("--dataset", help="recovery data: alpaca, dolly, a Hub id or a local .json/.jsonl")
    add_recovery_flags(p)
    add_eval_options(p)
    p.add_argument("--repo-id", help="target repo (default: <you>/<source name>-<plan tag>)")
    p.add_argument("--private", action="store_true", default=None, help="create the repo private")
    p.add_argument("--work-dir", help="where each stage leaves its artifact (default: hfprune-work/<repo name>)")
    p.add_argument("--no-push", action="store_true", help="stop after writing the final folder")
    p.add_argument("--from-sweep", metavar="DIR", help="publish an entry of a finished `hfprune sweep` (with --entry)")
    p.add_argument("--entry", metavar="NAME", help="with --from-sweep: the entry to publish, e.g. reverse-order-partial")
    p.add_argument("--dry-run", action="store_true", help="show the plan and the stages; write nothing")
    p.add_argument("--resume", action="store_true", help="skip the stages an earlier run finished")
    add_run_flags(p, "a non-empty work dir, starting over")
    p.set_defaults(func=_cmd_push)


def _cmd_push(args) -> int:
    from pathlib import Path

    from ..pipeline import Pipeline, name_stem
    from ..settings import Recipe, RecipeError

    if args.from_sweep or args.entry:
        return _push_from_sweep(args)
    recipe = Recipe.load(args.recipe) if args.recipe else Recipe()
    recipe = recipe.override(**{
        "source": args.source, "prune.drop_last": args.drop_last, "prune.drop_layers": args.drop_layers,
        "prune.skip_attention": args.skip_attention, "prune.skip_mlp": args.skip_mlp, "prune.metric": args.metric,
        "prune.remove": args.remove, "prune.target_params": args.target_params, **calibration_overrides(args),
        "recover.method": args.recover,
        "recover.dataset": args.dataset, **recovery_overrides(args),
        **eval_overrides(args), "push.repo_id": args.repo_id, "push.private": args.private,
        "push.enabled": False if args.no_push else None,
    })
    if args.plan_file:
        from ..plan import Plan
        from ..settings import PlanSection

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
    """`push SOURCE --target-params T` with no metric: the recipe measured best at equal size (settings.DEFAULT_*):
    without healing Block Influence with the linear map, with healing reverse-order; said on stderr."""
    from ..settings import DEFAULT_HEALED_SIZE_METRIC, DEFAULT_SIZE_DATA, DEFAULT_SIZE_METRIC, DEFAULT_SIZE_REPLACE

    p = recipe.prune
    if args.target_params is None or args.metric is not None or p.metric != DEFAULT_SIZE_METRIC:
        return recipe
    chosen = getattr(args, "prune_replace", None) is not None or p.replace != "none"
    if recipe.recover.method != "none":
        data = recipe.model_dump()
        data["prune"]["metric"] = DEFAULT_HEALED_SIZE_METRIC
        if getattr(args, "prune_data", None) is None and p.data == DEFAULT_SIZE_DATA:
            data["prune"]["data"] = None  # reverse-order reads no calibration data
        print(f"--target-params without --metric: {DEFAULT_HEALED_SIZE_METRIC}"
              + (f" with --replace {p.replace}" if p.replace != "none" else "")
              + f", healed by {recipe.recover.label} (what healed best at equal size in bench/RESULTS.md); give "
              "--metric to choose otherwise", file=sys.stderr)
        return type(recipe).model_validate(data)
    replace = p.replace if chosen else DEFAULT_SIZE_REPLACE
    print(f"--target-params without --metric: {DEFAULT_SIZE_METRIC}"
          + (f" with --replace {replace}" if replace != "none" else "")
          + f" on {p.data} (what kept a usable model at equal size without healing in bench/RESULTS.md); give "
          "--metric or --replace to choose otherwise", file=sys.stderr)
    return recipe if chosen else recipe.override(**{"prune.replace": replace})


def _push_from_sweep(args) -> int:
    from ..errors import RecipeError
    from ..pipeline import Pipeline
    from ..pipeline.sweep import from_sweep
    from ..workdir import remove_hfprune_folder

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


"""`hfprune sweep`."""

from __future__ import annotations

from ._shared import (
    add_calibration_options,
    add_eval_options,
    add_recovery_flags,
    add_replace_options,
    add_run_flags,
    calibration_overrides,
    eval_overrides,
    recovery_overrides,
)


def register(sub) -> None:
    from ..settings import RECOVERY_METHODS

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
    add_calibration_options(p, ("data", "samples", "seq_len", "seed", "distance"))
    add_replace_options(p, axis=True)
    p.add_argument("--dataset", help="recovery data: alpaca, dolly, a Hub id or a local .json/.jsonl")
    add_recovery_flags(p)
    add_eval_options(p)
    p.add_argument("--work-dir", help="sweep dir (default: hfprune-sweep/<source name>-remove<N>)")
    p.add_argument("--resume", action="store_true", help="skip what an earlier run of this sweep finished")
    add_run_flags(p, "a non-empty sweep dir, starting over")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args) -> int:
    from pathlib import Path

    from ..hub import parse_source
    from ..settings import Recipe, RecipeError
    from ..pipeline.sweep import run_sweep

    recipe = Recipe.load(args.recipe) if args.recipe else Recipe()
    source = args.source or recipe.source
    if not source:
        raise RecipeError("no SOURCE: give a Hub repo id or folder on the command line or source: in the recipe")
    recipe = recipe.override(**{
        **calibration_overrides(args), "recover.dataset": args.dataset, **recovery_overrides(args),
        **eval_overrides(args)})
    from ..pipeline.sweep import Size

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


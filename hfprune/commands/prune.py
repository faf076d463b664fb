"""`hfprune prune`."""

from __future__ import annotations

import sys

from ._shared import add_plan_options, add_run_flags


def register(sub) -> None:
    p = sub.add_parser("prune", help="write a checkpoint with layers or sub-blocks removed",
                       description="Prune SOURCE (a local folder or a Hub repo id[@revision]) on disk, tensor by "
                                   "tensor, into OUT. The result loads with AutoModelForCausalLM.from_pretrained.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("-o", "--output", metavar="OUT", help="output folder (must not exist unless --overwrite)")
    add_plan_options(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan and sizes; write nothing")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept pickle-only (.bin) weights and convert them (pickles can run code when loaded)")
    from ..cli_options import add_model_flags
    from ..settings import ReplaceSettings

    add_model_flags(p.add_argument_group("training-free replacement of the removed layers"), ReplaceSettings)
    p.add_argument("--seed", type=int, default=0, help="calibration windows' offsets for --replace (default: 0)")
    add_run_flags(p, "OUT")
    p.set_defaults(func=_cmd_prune)


def _cmd_prune(args) -> int:
    from ..api import prune
    from ..cli_options import build, values_from_args
    from ..settings import PruneSection, ReplaceSettings

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


"""`hfprune demo`."""

from __future__ import annotations

from ._shared import add_overwrite


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline offline on a tiny built-in model",
                       description="Build a tiny model and tokenizer, prune, heal, evaluate on bundled tasks and "
                                   "write the final repo folder with its model card. No network.")
    p.add_argument("--work-dir", default="hfprune-demo", help="where to leave every artifact (default: %(default)s)")
    add_overwrite(p, "replace an existing work dir")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from ..demo import run_demo

    run_demo(args.work_dir, overwrite=args.overwrite)
    return 0


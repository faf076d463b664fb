"""`hfprune score`."""

from __future__ import annotations

import argparse


from ._shared import add_no_progress, add_token


def register(sub) -> None:
    from ..scoring.metrics import METRICS

    p = sub.add_parser("score", help="score layers (or sub-blocks) and write the plan of what to remove",
                       description="Score SOURCE's layers with a metric from the seed papers and write plan.json "
                                   "(for `hfprune prune --plan`) and scores.json.",
                       epilog="metrics:\n" + "\n".join(f"  {m.name:16} {m.description}" for m in METRICS.values()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE")
    from ..cli_options import add_model_flags
    from ..settings import ScoreOptions

    add_model_flags(p, ScoreOptions, fields=("metric", "remove"))
    p.add_argument("-o", "--output", metavar="PLAN", default="plan.json", help="plan file (default: %(default)s)")
    p.add_argument("--scores", metavar="FILE", help="scores file (default: scores.json beside the plan)")
    add_model_flags(p, ScoreOptions, exclude=("metric", "remove"))
    p.add_argument("--cache-dir", default=None, help="score cache (default: ~/.cache/hfprune/scores)")
    add_token(p)
    add_no_progress(p)
    p.set_defaults(func=_cmd_score)


def _cmd_score(args) -> int:
    from .. import cache_root
    from ..cli_options import build, values_from_args
    from ..scoring.score import score
    from ..settings import ScoreOptions

    options = build(ScoreOptions, values_from_args(args, ScoreOptions))
    import shlex
    from pathlib import Path

    from ..workdir import check_writable_file

    scores_path = args.scores or str(Path(args.output).with_name("scores.json"))
    for path, what in ((args.output, "-o"), (scores_path, "--scores")):
        check_writable_file(path, what)
    result = score(args.source, options, plan_path=args.output, scores_path=scores_path,
                   cache_dir=args.cache_dir or cache_root() / "scores", progress=not args.no_progress, token=args.token)
    print(f"{args.metric}: {result.plan.summary()}" + (" (cached)" if result.cached else ""))
    print(f"wrote {args.output} and {scores_path}; apply with: "
          f"hfprune prune {shlex.quote(args.source)} --plan {shlex.quote(args.output)} -o OUT")
    return 0


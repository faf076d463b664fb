"""`hfprune recover`."""

from __future__ import annotations

import sys

from ._shared import DISTILL_FIELDS, add_no_progress, add_overwrite


def register(sub) -> None:
    p = sub.add_parser("recover", help="heal a pruned checkpoint: partial-layer fine-tuning, LoRA or QLoRA",
                       description="Fine-tune MODEL on instruction data and write the healed checkpoint to OUT "
                                   "(LoRA is merged, so OUT loads without peft). Defaults follow the seed paper.")
    p.add_argument("model", metavar="MODEL", help="a local checkpoint folder (e.g. the output of hfprune prune)")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="the healed checkpoint's folder")
    from ..cli_options import add_model_flags
    from ..settings import RecoverOptions

    add_model_flags(p, RecoverOptions, exclude=DISTILL_FIELDS + ("trust_remote_code",))
    add_model_flags(p.add_argument_group("distillation from the dense model"), RecoverOptions, fields=DISTILL_FIELDS)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of an interrupted run")
    add_overwrite(p, "OUT")
    add_model_flags(p, RecoverOptions, fields=("trust_remote_code",))
    add_no_progress(p)
    p.set_defaults(func=_cmd_recover)


def _cmd_recover(args) -> int:
    from ..cli_options import build, values_from_args
    from ..recovery.train import recover
    from ..settings import RecoverOptions

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
    if run.processes > 1:
        print(f"{run.processes} processes, rows per process: {run.rows_per_process}")
    print(f"{run.optimizer_steps} optimizer steps ({run.warmup_steps} warm-up) on {run.examples} examples, "
          f"{run.tokens:,} tokens, prompt: {run.prompt}, {run.precision}")
    cache = run.frozen_prefix_cache
    if cache and "off" not in cache:
        print(f"frozen layers 0-{cache['layers'] - 1}: computed for {cache['computed_batches']} micro-batches, "
              f"replayed for {cache['replayed_batches']} ({cache['bytes'] / 2**20:.0f} MiB kept)")
    if run.peak_cuda_bytes:
        print(f"peak GPU memory (torch): {run.peak_cuda_bytes / 2**30:.2f} GiB")
    if run.teacher:
        print(f"teacher {run.teacher}: {run.objective}, answers from the {run.answers}")
    if result.losses:
        print(f"loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}; {result.tokens_per_s:.0f} tokens/s")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"written: {result.output}")
    return 0


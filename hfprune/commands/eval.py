"""`hfprune eval`."""

from __future__ import annotations


from ._shared import add_token, add_trust_remote_code


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint with lm-evaluation-harness, size and speed",
                       description="Run lm-eval tasks on MODEL (in memory, in the dtype this hardware computes "
                                   "fastest) and measure parameters, size on disk and decode speed; write the "
                                   "results as JSON.")
    p.add_argument("model", metavar="MODEL", help="a local checkpoint folder or a Hub repo id[@revision]")
    from ..cli_options import add_model_flags
    from ..settings import EvalSection

    add_model_flags(p, EvalSection)
    add_token(p)
    p.add_argument("-o", "--output", default="eval.json", help="results file (default: %(default)s)")
    add_trust_remote_code(p)
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    from ..cli_options import build, values_from_args
    from ..evaluation.harness import evaluate_model
    from ..settings import EvalSection
    from ..workdir import check_writable_file, write_json

    settings = build(EvalSection, values_from_args(args, EvalSection))
    check_writable_file(args.output, "-o")  # before the evaluation, not after it
    from ..hub import resolve_source

    model = resolve_source(args.model, token=args.token).path  # a folder, or a Hub id[@revision]
    result = evaluate_model(model, settings.tasks, limit=settings.limit, batch_size=settings.batch_size,
                            include_path=settings.include_path, dtype=settings.dtype, max_length=settings.max_length,
                            batch_memory_gib=settings.batch_memory_gib, trust_remote_code=args.trust_remote_code)
    speed = ""
    if settings.speed_rounds:
        from ..evaluation.speed import decode_speed

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


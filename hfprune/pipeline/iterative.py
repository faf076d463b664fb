"""Iterative pruning with recovery between steps: remove k layers, heal, rescore the healed model, repeat.

Every round scores the current (already pruned and healed) checkpoint with a layer metric, prunes its k least
important layers on disk and, except after the last round, heals the result. The plan that comes out is in the
original model's numbering; the last round's pruned checkpoint carries the earlier rounds' healing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import PlanError
from ..plan import Plan
from ..scoring.metrics import get_metric


def iterative_prune(source: Path, output: Path, *, score_options, step: int, recover_options, work: Path,
                    score_cache=None, progress: bool = False, echo=print, teacher_source=None,
                    distill_cache=None) -> tuple[Plan, list[dict]]:
    """Return (plan in source numbering, per-round records); the final pruned checkpoint is written to `output`.

    A distillation recovery between rounds learns from `teacher_source` (the dense source)."""
    from ..disk.checkpoint import Checkpoint
    from ..disk.surgery import prune_checkpoint
    from ..recovery.train import recover
    from ..scoring.score import score

    metric = get_metric(score_options.metric)
    if metric.kind != "layer":
        raise PlanError(f"iterative pruning needs a layer metric; {score_options.metric} scores "
                        f"{'blocks' if metric.kind == 'block' else 'sub-blocks'}")
    total = score_options.remove
    num_layers = Checkpoint.open(source).num_layers
    original = list(range(num_layers))  # current layer index -> source layer index
    removed: list[int] = []
    rounds: list[dict] = []
    current = Path(source)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    while len(removed) < total:
        r = len(rounds)
        k = min(step, total - len(removed))
        opts = score_options.model_copy(update={"remove": k, "iterative_step": None})
        result = score(current, opts, cache_dir=score_cache, progress=progress)
        chosen = [original[i] for i in result.plan.drop_layers]
        removed += chosen
        pruned = work / f"round{r}-pruned"
        prune_checkpoint(current, pruned, result.plan, overwrite=True, progress=progress)
        original = [original[i] for i in result.plan.kept_layers]
        record = {"round": r, "removed_source_layers": chosen, "scores": result.scores.get("scores")}
        current = pruned
        if len(removed) < total:
            healed = work / f"round{r}-recovered"
            res = recover(pruned, healed, recover_options, overwrite=True, progress=progress, echo=echo,
                          teacher_source=teacher_source, cache_dir=distill_cache)
            record["recovery_loss"] = [res.losses[0], res.losses[-1]] if res.losses else None
            current = healed
        rounds.append(record)
        echo(f"  round {r}: removed source layers {chosen}")
    if output.exists():
        shutil.rmtree(output)
    shutil.copytree(current, output)
    plan = Plan.build(num_layers, drop_layers=sorted(removed), metric=score_options.metric,
                      extra={"iterative_step": step, "recovery_between_steps": recover_options.label})
    return plan, rounds

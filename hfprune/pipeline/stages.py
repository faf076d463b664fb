"""Push's stages, one function each: source -> plan -> prune -> recover -> eval -> final -> push.

Each takes the artifacts of the stages before it (a `SourceRecord`, a `Plan`, the evaluation) and returns its own;
where it leaves a folder (pruned/, recovered/, final/) it returns nothing. The runner (runner.py) stores and reuses
them; the order is Pipeline's (run.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..errors import HfpruneError
from ..hub import EVAL_RESULTS_DIR, Source, resolve_source, source_license
from ..plan import Plan
from ..settings import Recipe
from ..workdir import staged_folder, write_json


@dataclass
class StageContext:
    """What every stage may read: the recipe, where the work dir is, and how to run."""

    recipe: Recipe
    work: Path
    token: str | None
    progress: bool
    trust_remote_code: bool
    score_cache: Path
    eval_cache: Path
    distill_cache: Path  # teacher answers and logits, shared by a sweep's entries
    echo: Callable = print
    sweep_table: str | None = None  # the sweep this recipe was chosen from, for the card
    sweep_svg: str | None = None  # its quality-vs-size picture, shipped beside the card


@dataclass
class SourceRecord:
    """The source stage's artifact (source.json): the resolved source and its licence card fields."""

    source: Source
    license: dict | str | None = None

    def to_dict(self) -> dict:
        return {**self.source.to_dict(), "license": self.license}

    @classmethod
    def from_dict(cls, d: dict) -> "SourceRecord":
        return cls(Source.from_dict(d), d.get("license"))


# ---------------------------------------------------------------- source

def source_stage(ctx: StageContext) -> SourceRecord:
    src = resolve_source(ctx.recipe.source, token=ctx.token)
    if not any(any(src.path.glob(p)) for p in ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken*")):
        raise HfpruneError(f"{ctx.recipe.source} has no tokenizer files; evaluation and the pushed repo need "
                           "one (add tokenizer.json or tokenizer.model to the source)")
    return SourceRecord(src, source_license(src, ctx.token))


# ---------------------------------------------------------------- plan

def explicit_plan(recipe: Recipe, num_layers: int) -> Plan:
    """The plan a recipe states outright (a plan file, --drop-last, --drop-layers, --skip-*), checked against the
    model's depth: the plan stage's decision, also made by the dry run and by the check before any work."""
    from ..api import make_plan

    p = recipe.prune
    if p.plan is not None:  # a plan file: its depth is checked and its metric kept (the card cites it)
        plan = Plan.from_dict(p.plan.as_plan_dict(), "the recipe's prune.plan")
        plan.check_model(num_layers)
        return plan
    plan = make_plan(num_layers, drop_last=p.drop_last, drop_layers=p.drop_layers, skip_attention=p.skip_attention,
                     skip_mlp=p.skip_mlp)
    if p.drop_last and not (p.drop_layers or p.skip_attention or p.skip_mlp):
        plan = Plan.from_dict({**plan.to_dict(), "metric": "reverse-order"})
    return plan


def heals_between_rounds(recipe: Recipe) -> bool:
    p = recipe.prune
    return bool(p.metric and p.iterative_step and recipe.recover.method != "none")


def plan_stage(ctx: StageContext, src: Source) -> Plan:
    p = ctx.recipe.prune
    if heals_between_rounds(ctx.recipe):
        return _iterative_plan(ctx, src)
    if p.metric:
        from ..scoring.score import score

        return score(src, p.score_options(ctx.trust_remote_code), scores_path=ctx.work / "scores.json",
                     cache_dir=ctx.score_cache, progress=ctx.progress).plan
    from ..disk.checkpoint import Checkpoint

    return explicit_plan(ctx.recipe, Checkpoint.open(src.path).num_layers)


def _iterative_plan(ctx: StageContext, src: Source) -> Plan:
    """Prune k, heal, rescore, repeat; the last round's pruned checkpoint becomes the prune stage's output."""
    from .iterative import iterative_prune

    p = ctx.recipe.prune
    plan, rounds = iterative_prune(src.path, ctx.work / "iterative" / "final-pruned",
                                   score_options=p.score_options(ctx.trust_remote_code), step=p.iterative_step,
                                   recover_options=ctx.recipe.recover.options(),
                                   work=ctx.work / "iterative" / "rounds", score_cache=ctx.score_cache,
                                   progress=ctx.progress, echo=ctx.echo, teacher_source=src,
                                   distill_cache=ctx.distill_cache)
    write_json(ctx.work / "scores.json", {"format": "hfprune-scores", "version": 1, "metric": p.metric,
                                           "mode": "iterative-with-recovery", "rounds": rounds,
                                           "num_layers": plan.num_layers, "remove": p.remove,
                                           "plan": plan.to_dict()})
    return plan


# ---------------------------------------------------------------- prune, recover

def prune_stage(ctx: StageContext, src: Source, plan: Plan) -> None:
    from ..disk.surgery import prune_checkpoint

    if plan.extra.get("recovery_between_steps"):
        # the rounds already pruned (and healed in between); surgery on the original would lose that healing
        (ctx.work / "iterative" / "final-pruned").rename(ctx.work / "pruned")
        return
    provenance, replacements = {"source": src.provenance()}, None
    p = ctx.recipe.prune
    if p.replace != "none":
        from ..api import replace_blocks
        from ..disk.checkpoint import Checkpoint

        replacements, provenance["replacement"] = replace_blocks(
            src.path, Checkpoint.open(src.path), plan, p, progress=ctx.progress,
            trust_remote_code=ctx.trust_remote_code, echo=ctx.echo)
        for note in provenance["replacement"].get("not_replaced", []):
            ctx.echo(f"  note: {note}")
    report = prune_checkpoint(src.path, ctx.work / "pruned", plan, overwrite=True, progress=ctx.progress,
                              provenance=provenance, replacements=replacements)
    for line in report.lines():
        ctx.echo(f"  {line}")
    for warning in runtime_notes(src, plan):
        ctx.echo(f"  warning: {warning}")


def runtime_notes(src: Source, plan: Plan) -> list[str]:
    from ..api import runtime_warnings
    from ..disk.checkpoint import Checkpoint

    return runtime_warnings(Checkpoint.open(src.path), plan)


def recover_stage(ctx: StageContext, src: Source) -> None:
    from ..recovery.train import recover

    result = recover(ctx.work / "pruned", ctx.work / "recovered", ctx.recipe.recover.options(), overwrite=True,
                     resume=(ctx.work / "recovered.checkpoints").exists(), progress=ctx.progress,
                     cache_dir=ctx.distill_cache, echo=ctx.echo, teacher_source=src)
    if result.losses:
        ctx.echo(f"  loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}, {result.tokens_per_s:.0f} tokens/s")
    for w in result.warnings:
        ctx.echo(f"  warning: {w}")


# ---------------------------------------------------------------- eval

def eval_stage(ctx: StageContext, src: Source, plan: Plan) -> dict:
    """{"dense": ..., "pruned": ..., ["recovered": ...]}: lm-eval results per model, and their decode speeds."""
    from ..evaluation.harness import cached_evaluation, evaluate_model
    from ..hardware import resolve_eval_dtype

    e = ctx.recipe.eval
    dtype, why = resolve_eval_dtype(e.dtype)  # resolved first: a cached result in another dtype is another key
    ctx.echo(f"  evaluating in {dtype} ({why})")
    kwargs = dict(limit=e.limit, batch_size=e.batch_size, include_path=e.include_path, dtype=dtype,
                  max_length=e.max_length, batch_memory_gib=e.batch_memory_gib,
                  trust_remote_code=ctx.trust_remote_code, progress=ctx.progress)
    out = {"dense": cached_evaluation(src.identity(), src.path, e.tasks, ctx.eval_cache, **kwargs)}
    if out["dense"].get("cached"):
        ctx.echo("  dense baseline: reused from the cache")
    kwargs.pop("trust_remote_code")
    if plan.extra.get("recovery_between_steps"):  # healed between rounds: not a function of source and plan alone
        out["pruned"] = evaluate_model(ctx.work / "pruned", e.tasks, **kwargs)
    else:  # the pruned model is a pure function of the source, the plan and the replacement: shared by recipes
        out["pruned"] = cached_evaluation(pruned_identity(ctx.work / "pruned", src, plan), ctx.work / "pruned",
                                          e.tasks, ctx.eval_cache, **kwargs)
        if out["pruned"].get("cached"):
            ctx.echo("  pruned model: evaluation reused from the cache (same source, plan and replacement)")
    final = "pruned"
    if ctx.recipe.recover.method != "none":
        out["recovered"] = evaluate_model(ctx.work / "recovered", e.tasks, **kwargs)
        final = "recovered"
    if e.speed_rounds:
        _measure_speed(ctx, src, out, final, dtype)
    return out


def pruned_identity(pruned: Path, src: Source, plan: Plan) -> dict:
    """Everything that determines the pruned weights: the source, the plan and, when the removed layers were
    replaced, the fit's method, data (by content hash), sizes, seed and ridge."""
    replacement = (read_json(pruned / "hfprune.json") or {}).get("replacement")
    if replacement:  # the fit's own settings and results, not where its data file lives
        data = {k: v for k, v in (replacement.get("data") or {}).items() if k != "source"}  # content, not path
        replacement = {**{k: replacement.get(k) for k in ("method", "objective", "weighting", "ridge", "blocks")},
                       "data": data}
    layout = plan.to_dict()
    return {"source": src.identity(),
            "plan": {k: layout.get(k) for k in ("num_layers", "drop_layers", "skip_attention", "skip_mlp")},
            "replacement": replacement}


def _measure_speed(ctx: StageContext, src: Source, out: dict, final: str, dtype: str) -> None:
    """Decode speed of the final model relative to the dense one, interleaved in one process (speed.py)."""
    from ..evaluation.speed import decode_speed

    e = ctx.recipe.eval
    measured = decode_speed({"dense": src.path, final: ctx.work / final}, dtype=dtype,
                            new_tokens=e.latency_tokens, rounds=e.speed_rounds,
                            trust_remote_code=ctx.trust_remote_code)
    for name, figures in measured["models"].items():
        out[name]["speed"] = {**figures, "relative": measured["relative"][name], "method": measured["method"]}
    ctx.echo(f"  decode speed: {measured['relative'][final]:.2f}x the dense model "
             f"({measured['models'][final]['tokens_per_s']:.1f} vs {measured['models']['dense']['tokens_per_s']:.1f}"
             f" tokens/s, {measured['method']['schedule']})")


# ---------------------------------------------------------------- final, push

def final_stage(ctx: StageContext, source: SourceRecord, plan: Plan, model_dir: Path, evaluation: dict,
                repo_id: str) -> None:
    """The folder that is pushed: the model, its card, layer map, recipe, evaluation files and scores."""
    with staged_folder(ctx.work / "final", overwrite=True) as staging:
        shutil.copytree(model_dir, staging, dirs_exist_ok=True)
        _write_final(ctx, staging, source, plan, evaluation, repo_id)


def _write_final(ctx: StageContext, staging: Path, record: SourceRecord, plan: Plan, evaluation: dict,
                 repo_id: str) -> None:
    import yaml

    from ..publish.card import CardInputs, build_card, eval_results_files, layer_map_svg, publishable_recipe

    src, recipe = record.source, ctx.recipe
    published_recipe = yaml.safe_dump(publishable_recipe(recipe.model_dump(mode="json")), sort_keys=False)
    scores = read_json(ctx.work / "scores.json")
    card = build_card(CardInputs(
        repo_id=repo_id, source_ref=(f"{src.repo_id}@{src.sha}" if src.repo_id else f"local folder {src.path.name}"),
        base_model=src.repo_id, license=_license_fields(record.license), plan=plan,
        runtime_notes=runtime_notes(src, plan), recipe_yaml=published_recipe,
        evaluation=evaluation, scores=scores,
        recovery=recipe.recover if recipe.recover.method != "none" else None,
        recovery_record=read_json(ctx.work / "recovered" / "hfprune.json"), sweep_table=ctx.sweep_table,
        needs_remote_code=(staging / "modeling_hfprune.py").exists(),
        replacement=(read_json(ctx.work / "pruned" / "hfprune.json") or {}).get("replacement")))
    card.save(staging / "README.md")
    (staging / "layer_map.svg").write_text(layer_map_svg(plan))
    if ctx.sweep_svg and ctx.sweep_table:
        from .naming import PARETO_SVG

        (staging / PARETO_SVG).write_text(ctx.sweep_svg)
    (staging / "recipe.yaml").write_text(published_recipe)
    slim = {k: {kk: vv for kk, vv in v.items() if kk not in ("raw", "model", "cached")}
            for k, v in evaluation.items()}  # no local paths in what is published
    write_json(staging / "eval.json", slim)
    write_json(staging / "lm_eval_results.json", {k: v.get("raw") for k, v in evaluation.items()})
    results = eval_results_files(evaluation, date=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if results:
        (staging / EVAL_RESULTS_DIR).mkdir(exist_ok=True)
        for name, text in results.items():
            (staging / EVAL_RESULTS_DIR / name).write_text(text)
    if scores:
        write_json(staging / "scores.json", scores)


def push_stage(ctx: StageContext, repo_id: str) -> dict:
    from ..hub import upload_model_folder

    pushed = upload_model_folder(ctx.work / "final", repo_id, token=ctx.token, private=ctx.recipe.push.private)
    ctx.echo(f"  pushed: {pushed['url']}")
    return pushed


def _license_fields(value) -> dict | None:
    """source.json's licence: a dict of card fields (or a bare licence id from an older work dir)."""
    if isinstance(value, str):
        return {"license": value}
    return value or None


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None

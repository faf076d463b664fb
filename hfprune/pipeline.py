"""The only place that knows stage order: source -> plan -> prune -> recover -> eval -> final -> push.

Each stage leaves one artifact in the work dir and is skipped by --resume when that artifact exists. Artifacts are
written atomically (files via rename, folders via surgery's write-aside-then-rename), so a killed run never leaves
a half-finished artifact that a resume would trust.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path

from .errors import (
    HfpruneError,
    OutputExistsError,
    RecipeError,
    UnsafeOutputError,
)
from .hub import EVAL_RESULTS_DIR, Source, resolve_source, source_license
from .plan import Plan
from .settings import Recipe
from .workdir import (
    LOCK_FILE,
    WORKDIR_MARKER,
    check_not_input,
    remove_hfprune_folder,
    staged_folder,
    work_dir_lock,
    write_json,
    write_text,
)


@dataclass
class PipelineResult:
    work_dir: Path
    final_dir: Path
    repo_id: str | None
    commit: str | None
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Pipeline:
    def __init__(self, recipe: Recipe, work_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                 token: str | None = None, progress: bool = False, eval_cache: Path | None = None,
                 score_cache: Path | None = None, trust_remote_code: bool = False, echo=print,
                 keep: tuple[str, ...] = (), sweep_table: str | None = None, sweep_svg: str | None = None):
        if not recipe.source:
            raise RecipeError("no SOURCE: give a Hub repo id or folder on the command line or source: in the recipe")
        if recipe.prune.is_empty:
            raise RecipeError("nothing to remove: give --drop-last, --drop-layers, --skip-*, --metric M --remove N, "
                              "or a prune: section in the recipe")
        if recipe.recover.method != "none":
            from .recovery.train import validate_options

            validate_options(recipe.recover.options())  # fail before any long work
        self.recipe, self.work = recipe, Path(work_dir)
        self.resume, self.overwrite, self.token, self.progress = resume, overwrite, token, progress
        from . import cache_root

        self.eval_cache = eval_cache if eval_cache is not None else cache_root() / "eval"
        self.score_cache = score_cache if score_cache is not None else cache_root() / "scores"
        self.distill_cache = cache_root() / "distill"  # teacher answers and logits, shared by a sweep's entries
        self.trust_remote_code = trust_remote_code
        self.echo = echo
        self.keep = set(keep)  # entries of the work dir that belong to the caller (the demo's source model)
        self.sweep_table = sweep_table  # the sweep this recipe was chosen from, for the card
        self.sweep_svg = sweep_svg  # its quality-vs-size picture, shipped beside the card
        self.result = PipelineResult(self.work, self.work / "final", None, None)

    # -------------------------------------------------------------- driver
    def describe(self) -> list[str]:
        """What run() would do, from headers and settings alone: nothing is downloaded (but headers) or written."""
        r, p = self.recipe, self.recipe.prune
        lines = [f"work dir:   {self.work}"]
        if p.metric:
            size = f"remove {p.remove}" if p.remove is not None else f"down to {_target_text(p.target_params)} parameters"
            lines.append(f"plan:       chosen by {p.metric}, {size}"
                         + (f" on {p.data}" if p.data else "")
                         + (f", {p.iterative_step} at a time with {r.recover.label} in between"
                            if p.iterative_step and r.recover.method != "none" else ""))
            from .api import inspect_source

            src, ckpt = inspect_source(r.source, token=self.token)
            lines.append(f"source:     {src.repo_id or src.path}" + (f" @ {src.sha}" if src.sha else "")
                         + f" ({ckpt.num_layers} layers)")
        else:
            from .api import prune

            if p.plan is not None:
                plan = Plan.from_dict(p.plan.as_plan_dict(), "the recipe's prune.plan")
                result = prune(r.source, dry_run=True, token=self.token, plan=plan)
            else:
                result = prune(r.source, dry_run=True, token=self.token, drop_last=p.drop_last,
                               drop_layers=p.drop_layers, skip_attention=p.skip_attention, skip_mlp=p.skip_mlp)
            lines += result.describe()
        if p.replace != "none":
            lines.append(f"replace:    each removed block by a linear map fitted on {p.replace_data or p.data} "
                         f"({p.replace_samples} windows of {p.replace_seq_len} tokens), folded into the layer before")
        rec = r.recover
        lines.append("recover:    none" if rec.method == "none" else
                     f"recover:    {rec.label} on {rec.dataset} (lr {rec.lr}, batch {rec.batch_size}, "
                     f"{rec.epochs:g} epochs)")
        lines.append(f"evaluate:   {', '.join(r.eval.tasks)}" + (f" (limit {r.eval.limit})" if r.eval.limit else ""))
        target = r.push.repo_id or f"<you>/{name_stem(r)}"
        lines.append(f"push:       {target}" + (" (private)" if r.push.private else "") if r.push.enabled
                     else "push:       no (final folder only)")
        return lines

    def run(self) -> PipelineResult:
        self._check_work_dir()  # reads only: a refused run leaves nothing behind
        repo_id = self._check_push_target() if self.recipe.push.enabled else None
        self._check_plan()  # from the source's headers: a plan the model cannot take is refused before any write
        self.result.repo_id = repo_id
        with work_dir_lock(self.work):
            return self._run(repo_id)

    def _run(self, repo_id: str | None) -> PipelineResult:
        self._prepare_work_dir()
        keys = self._stage_keys(repo_id)
        source = self._stage("source", self.work / "source.json", self._source, keys)
        src = Source.from_dict(source)
        plan = self._stage("plan", self.work / "plan.json", lambda: self._plan(src), keys)
        plan = Plan.from_dict(plan)
        self._stage("prune", self.work / "pruned", lambda: self._prune(src, plan), keys)
        model_dir = self.work / "pruned"
        if self.recipe.recover.method != "none":
            self._stage("recover", self.work / "recovered", lambda: self._recover(src), keys)
            model_dir = self.work / "recovered"
        evaluation = self._stage("eval", self.work / "eval.json", lambda: self._evaluate(src), keys)
        self._stage("final", self.work / "final",
                    lambda: self._final(src, plan, model_dir, evaluation,
                                        repo_id or self.recipe.push.repo_id or f"<you>/{name_stem(self.recipe)}"),
                    keys)
        if repo_id:
            pushed = self._stage("push", self.work / "push.json", lambda: self._push(repo_id), keys)
            self.result.commit = pushed["commit"]
        return self.result

    def _stage_keys(self, repo_id: str | None) -> dict[str, str]:
        """Each stage's key: the settings its artifact depends on, chained to the stage before it. --resume reuses
        an artifact only when its key is unchanged, so changing --tasks reruns evaluation alone."""
        import hashlib

        r = self.recipe.model_dump(mode="json")

        def key(*parts) -> str:
            return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

        iterative = bool(self.recipe.prune.metric and self.recipe.prune.iterative_step
                         and self.recipe.recover.method != "none")
        keys = {"source": key(r["source"])}
        keys["plan"] = key(keys["source"], r["prune"], r["recover"] if iterative else None)
        keys["prune"] = key(keys["plan"])
        keys["recover"] = key(keys["prune"], r["recover"])
        upstream = keys["recover"] if self.recipe.recover.method != "none" else keys["prune"]
        keys["eval"] = key(upstream, r["eval"])
        keys["final"] = key(keys["eval"], _artifact_settings(self.recipe.to_yaml()), repo_id, self.sweep_table)
        keys["push"] = key(keys["final"], repo_id, r["push"]["private"])
        return keys

    def _stage(self, name: str, artifact: Path, fn, keys: dict[str, str]):
        record = self.work / "stages.json"
        done = json.loads(record.read_text()) if record.is_file() else {}
        reusable = self.resume and artifact.exists() and done.get(name) == keys[name]
        if reusable:
            self.result.skipped.append(name)
            self.echo(f"[{name}] done earlier: {artifact}")
        else:
            if self.resume and artifact.exists():
                self.echo(f"[{name}] settings changed since the earlier run: redoing it")
                if artifact.is_dir():
                    remove_hfprune_folder(artifact)
            else:
                self.echo(f"[{name}] ...")
            start = time.perf_counter()
            value = fn()
            if artifact.suffix == ".json" and value is not None:
                write_json(artifact, value)
            seconds = time.perf_counter() - start
            done[name] = keys[name]
            done.setdefault("seconds", {})[name] = round(seconds, 1)
            write_json(record, done)
            self.result.ran.append(name)
            self.echo(f"[{name}] done in {seconds:.1f} s")
        return json.loads(artifact.read_text()) if artifact.suffix == ".json" else None

    def _own_entries(self) -> list[Path]:
        """What is in the work dir besides the caller's kept entries and hfprune's marker and lock."""
        if not self.work.is_dir():
            return []
        return [p for p in self.work.iterdir() if p.name not in self.keep and p.name not in (WORKDIR_MARKER, LOCK_FILE)]

    def _check_plan(self) -> None:
        """What the recipe removes, checked against the source's headers (no weights downloaded): an impossible
        plan fails here, before the work dir is touched, so the corrected retry needs no --overwrite."""
        from .api import inspect_source, make_plan

        p = self.recipe.prune
        _, ckpt = inspect_source(self.recipe.source, token=self.token)
        n = ckpt.num_layers
        if p.plan is not None:
            Plan.from_dict(p.plan.as_plan_dict(), "the recipe's prune.plan").check_model(n)
        elif p.metric:
            from .scoring.metrics import get_metric

            kind = get_metric(p.metric).kind
            if p.remove is not None:
                limit = 2 * n if kind == "sub-block" else n
                if p.remove >= limit:
                    raise RecipeError(f"--remove {p.remove}: the model has {limit} "
                                      f"{'sub-blocks' if kind == 'sub-block' else 'layers'}; remove at most {limit - 1}")
            else:
                from .sizing import params_to_remove, sizes

                params_to_remove(p.target_params, sizes(ckpt).total)
        else:
            make_plan(n, drop_last=p.drop_last, drop_layers=p.drop_layers, skip_attention=p.skip_attention,
                      skip_mlp=p.skip_mlp)

    def _check_work_dir(self) -> None:
        """Refuse a work dir that collides with the source, or one that --overwrite must not clear."""
        local = Path(self.recipe.source).expanduser()
        if local.is_dir():
            kept = [self.work / k for k in self.keep]
            if not any(local.resolve().is_relative_to(k.resolve()) for k in kept):
                check_not_input(self.work, {"source": local}, "work dir")
        if self.work.exists() and not self.work.is_dir():
            raise OutputExistsError(f"work dir {self.work} exists and is not a folder; choose another --work-dir")
        if not self._own_entries():
            return
        if self.resume:
            return  # each stage checks its own key (see _stage_keys)
        if self.overwrite:
            if not (self.work / WORKDIR_MARKER).is_file():
                raise UnsafeOutputError(f"work dir {self.work} was not made by hfprune (no {WORKDIR_MARKER}); "
                                        "--overwrite only clears hfprune's own work dirs. Choose another --work-dir")
        else:
            raise OutputExistsError(f"work dir {self.work} is not empty; pass --resume to continue it or "
                                    "--overwrite to start over")

    def _prepare_work_dir(self) -> None:
        if self.overwrite and not self.resume:
            for p in self._own_entries():
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / WORKDIR_MARKER).write_text("work dir of hfprune push: --overwrite may clear it\n")
        write_text(self.work / "recipe.yaml", self.recipe.to_yaml())

    # -------------------------------------------------------------- stages
    def _source(self) -> dict:
        src = resolve_source(self.recipe.source, token=self.token)
        if not any(any(src.path.glob(p)) for p in ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken*")):
            raise HfpruneError(f"{self.recipe.source} has no tokenizer files; evaluation and the pushed repo need "
                               "one (add tokenizer.json or tokenizer.model to the source)")
        record = src.to_dict()
        record["license"] = source_license(src, self.token)
        return record

    def _plan(self, src: Source) -> dict:
        p = self.recipe.prune
        if p.metric and p.iterative_step and self.recipe.recover.method != "none":
            return self._iterative_plan(src)
        if p.metric:
            from .scoring.score import score

            result = score(src, p.score_options(self.trust_remote_code), scores_path=self.work / "scores.json", cache_dir=self.score_cache,
                           progress=self.progress)
            return result.plan.to_dict()
        from .api import make_plan
        from .disk.checkpoint import Checkpoint

        ckpt = Checkpoint.open(src.path)
        if p.plan is not None:  # a plan file: its depth is checked and its metric kept (the card cites it)
            plan = Plan.from_dict(p.plan.as_plan_dict(), "the recipe's prune.plan")
            plan.check_model(ckpt.num_layers)
            return plan.to_dict()
        plan = make_plan(ckpt.num_layers, drop_last=p.drop_last, drop_layers=p.drop_layers,
                         skip_attention=p.skip_attention, skip_mlp=p.skip_mlp)
        if p.drop_last and not (p.drop_layers or p.skip_attention or p.skip_mlp):
            plan = Plan.from_dict({**plan.to_dict(), "metric": "reverse-order"})
        return plan.to_dict()

    def _iterative_plan(self, src: Source) -> dict:
        """Prune k, heal, rescore, repeat; the last round's pruned checkpoint becomes the prune stage's output."""
        from .scoring.iterative import iterative_prune

        p = self.recipe.prune
        plan, rounds = iterative_prune(src.path, self.work / "iterative" / "final-pruned",
                                       score_options=p.score_options(self.trust_remote_code), step=p.iterative_step,
                                       recover_options=self.recipe.recover.options(),
                                       work=self.work / "iterative" / "rounds", score_cache=self.score_cache,
                                       progress=self.progress, echo=self.echo, teacher_source=src,
                                       distill_cache=self.distill_cache)
        write_json(self.work / "scores.json", {"format": "hfprune-scores", "version": 1, "metric": p.metric,
                                                "mode": "iterative-with-recovery", "rounds": rounds,
                                                "num_layers": plan.num_layers, "remove": p.remove,
                                                "plan": plan.to_dict()})
        return plan.to_dict()

    def _prune(self, src: Source, plan: Plan) -> None:
        from .disk.surgery import prune_checkpoint

        iterated = self.work / "iterative" / "final-pruned"
        if plan.extra.get("recovery_between_steps"):
            # the rounds already pruned (and healed in between); surgery on the original would lose that healing
            iterated.rename(self.work / "pruned")
            return
        provenance, replacements = {"source": src.provenance()}, None
        p = self.recipe.prune
        if p.replace != "none":
            from .api import replace_blocks
            from .disk.checkpoint import Checkpoint

            replacements, provenance["replacement"] = replace_blocks(
                src.path, Checkpoint.open(src.path), plan, p, progress=self.progress,
                trust_remote_code=self.trust_remote_code, echo=self.echo)
            for note in provenance["replacement"].get("not_replaced", []):
                self.echo(f"  note: {note}")
        report = prune_checkpoint(src.path, self.work / "pruned", plan, overwrite=True, progress=self.progress,
                                  provenance=provenance, replacements=replacements)
        for line in report.lines():
            self.echo(f"  {line}")
        for warning in self._runtime_warnings(src, plan):
            self.echo(f"  warning: {warning}")

    def _runtime_warnings(self, src: Source, plan: Plan) -> list[str]:
        from .api import runtime_warnings
        from .disk.checkpoint import Checkpoint

        return runtime_warnings(Checkpoint.open(src.path), plan)

    def _recover(self, src: Source) -> None:
        from .recovery.train import recover

        result = recover(self.work / "pruned", self.work / "recovered", self.recipe.recover.options(), overwrite=True,
                         resume=(self.work / "recovered.checkpoints").exists(), progress=self.progress,
                         cache_dir=self.distill_cache, echo=self.echo, teacher_source=src)
        if result.losses:
            self.echo(f"  loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}, {result.tokens_per_s:.0f} tokens/s")
        for w in result.warnings:
            self.echo(f"  warning: {w}")

    def _evaluate(self, src: Source) -> dict:
        from .evaluation.harness import cached_evaluation, evaluate_model
        from .hardware import resolve_eval_dtype

        e = self.recipe.eval
        dtype, why = resolve_eval_dtype(e.dtype)  # resolved first: a cached result in another dtype is another key
        self.echo(f"  evaluating in {dtype} ({why})")
        kwargs = dict(limit=e.limit, batch_size=e.batch_size, include_path=e.include_path, dtype=dtype,
                      max_length=e.max_length, batch_memory_gib=e.batch_memory_gib,
                      trust_remote_code=self.trust_remote_code, progress=self.progress)
        out = {"dense": cached_evaluation(src.identity(), src.path, e.tasks, self.eval_cache, **kwargs)}
        if out["dense"].get("cached"):
            self.echo("  dense baseline: reused from the cache")
        kwargs.pop("trust_remote_code")
        plan = json.loads((self.work / "plan.json").read_text())
        if plan.get("recovery_between_steps"):  # healed between rounds: not a function of source and plan alone
            out["pruned"] = evaluate_model(self.work / "pruned", e.tasks, **kwargs)
        else:  # the pruned model is a pure function of the source, the plan and the replacement: shared by recipes
            out["pruned"] = cached_evaluation(self._pruned_identity(src, plan), self.work / "pruned", e.tasks,
                                              self.eval_cache, **kwargs)
            if out["pruned"].get("cached"):
                self.echo("  pruned model: evaluation reused from the cache (same source, plan and replacement)")
        final = "pruned"
        if self.recipe.recover.method != "none":
            out["recovered"] = evaluate_model(self.work / "recovered", e.tasks, **kwargs)
            final = "recovered"
        if e.speed_rounds:
            self._measure_speed(src, out, final, dtype)
        return out

    def _pruned_identity(self, src: Source, plan: dict) -> dict:
        """Everything that determines the pruned weights: the source, the plan and, when the removed layers were
        replaced, the fit's method, data (by content hash), sizes, seed and ridge."""
        replacement = (_read_json(self.work / "pruned" / "hfprune.json") or {}).get("replacement")
        if replacement:  # the fit's own settings and results, not where its data file lives
            data = {k: v for k, v in (replacement.get("data") or {}).items() if k != "source"}  # content, not path
            replacement = {**{k: replacement.get(k) for k in ("method", "objective", "weighting", "ridge", "blocks")}, "data": data}
        return {"source": src.identity(),
                "plan": {k: plan.get(k) for k in ("num_layers", "drop_layers", "skip_attention", "skip_mlp")},
                "replacement": replacement}

    def _measure_speed(self, src: Source, out: dict, final: str, dtype: str) -> None:
        """Decode speed of the final model relative to the dense one, interleaved in one process (speed.py)."""
        from .evaluation.speed import decode_speed

        e = self.recipe.eval
        measured = decode_speed({"dense": src.path, final: self.work / final}, dtype=dtype,
                                new_tokens=e.latency_tokens, rounds=e.speed_rounds,
                                trust_remote_code=self.trust_remote_code)
        for name, figures in measured["models"].items():
            out[name]["speed"] = {**figures, "relative": measured["relative"][name], "method": measured["method"]}
        self.echo(f"  decode speed: {measured['relative'][final]:.2f}x the dense model "
                  f"({measured['models'][final]['tokens_per_s']:.1f} vs {measured['models']['dense']['tokens_per_s']:.1f}"
                  f" tokens/s, {measured['method']['schedule']})")

    def _final(self, src: Source, plan: Plan, model_dir: Path, evaluation: dict, repo_id: str) -> None:

        with staged_folder(self.work / "final", overwrite=True) as staging:
            shutil.copytree(model_dir, staging, dirs_exist_ok=True)
            self._write_final(staging, src, plan, evaluation, repo_id)

    def _write_final(self, staging: Path, src: Source, plan: Plan, evaluation: dict, repo_id: str) -> None:
        import yaml

        from .publish.card import (
            CardInputs,
            build_card,
            eval_results_files,
            layer_map_svg,
            publishable_recipe,
        )

        published_recipe = yaml.safe_dump(publishable_recipe(self.recipe.model_dump(mode="json")), sort_keys=False)
        scores = json.loads((self.work / "scores.json").read_text()) if (self.work / "scores.json").exists() else None
        source = json.loads((self.work / "source.json").read_text())
        needs_code = (staging / "modeling_hfprune.py").exists()
        card = build_card(CardInputs(
            repo_id=repo_id, source_ref=(f"{src.repo_id}@{src.sha}" if src.repo_id else f"local folder {src.path.name}"),
            base_model=src.repo_id, license=_license_fields(source.get("license")), plan=plan,
            runtime_notes=self._runtime_warnings(src, plan), recipe_yaml=published_recipe,
            evaluation=evaluation, scores=scores,
            recovery=self.recipe.recover.model_dump() if self.recipe.recover.method != "none" else None,
            recovery_record=_read_json(self.work / "recovered" / "hfprune.json"), sweep_table=self.sweep_table,
            needs_remote_code=needs_code,
            replacement=(_read_json(self.work / "pruned" / "hfprune.json") or {}).get("replacement")))
        card.save(staging / "README.md")
        (staging / "layer_map.svg").write_text(layer_map_svg(plan))
        if self.sweep_svg and self.sweep_table:
            from .sweep import PARETO_SVG

            (staging / PARETO_SVG).write_text(self.sweep_svg)
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

    def _push(self, repo_id: str) -> dict:
        from .hub import upload_model_folder

        pushed = upload_model_folder(self.work / "final", repo_id, token=self.token, private=self.recipe.push.private)
        self.echo(f"  pushed: {pushed['url']}")
        return pushed

    def _check_push_target(self) -> str:
        """Resolve the repo id and prove the token can write there, before any long work."""
        from .hub import writable_repo

        repo_id, self.token = writable_repo(self.recipe.push.repo_id, self.token, self._default_repo_id)
        return repo_id

    def _default_repo_id(self, user: str) -> str:
        return f"{user}/{name_stem(self.recipe)}"


def name_stem(recipe: Recipe) -> str:
    """'<source name>-<plan tag>[-<recovery>]': the default repo name and work dir name."""
    from .hub import parse_source

    name = parse_source(recipe.source)[0].rstrip("/").split("/")[-1]
    p = recipe.prune
    if p.drop_last:
        tag = f"drop{p.drop_last}"
    elif p.metric:
        tag = f"{p.metric}{p.remove}" if p.remove is not None else f"{p.metric}-p{_target_tag(p.target_params)}"
    elif p.plan is not None:
        removed = len(p.plan.drop_layers)
        tag = (f"{p.plan.metric}{removed}" if p.plan.metric and removed else
               Plan.from_dict(p.plan.as_plan_dict(), "the recipe's prune.plan").tag())
    else:
        tag = "pruned"
    method = recipe.recover.label
    return (f"{name}-{tag}" + ("-linear" if p.replace != "none" else "")
            + ("" if method == "none" else f"-{method}"))


def _target_text(target: float) -> str:
    return f"{100 * target:g}% of the source's" if target < 1 else f"{target:,.0f}"


def _target_tag(target: float) -> str:
    """'85' for 0.85 of the source, '1.3B' for 1.3e9 parameters."""
    if target < 1:
        return f"{100 * target:g}"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if target >= div:
            return f"{target / div:g}{unit}"
    return f"{target:g}"


def _license_fields(value) -> dict | None:
    """source.json's licence: a dict of card fields (or a bare licence id from an older work dir)."""
    if isinstance(value, str):
        return {"license": value}
    return value or None


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _artifact_settings(recipe_yaml: str) -> dict:
    """The recipe minus where it is published: changing the target repo or --no-push never invalidates work."""
    import yaml

    data = yaml.safe_load(recipe_yaml) or {}
    data.pop("push", None)
    return data

"""The only place that knows stage order: source -> plan -> prune -> recover -> eval -> final -> push.

Pipeline checks everything it can before any work (settings, the push target, the plan against the source's
headers, the work dir), then runs the stages (stages.py) through the runner (runner.py), which reuses artifacts
under --resume.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputExistsError, RecipeError, UnsafeOutputError
from ..plan import Plan
from ..settings import Recipe
from ..workdir import LOCK_FILE, WORKDIR_MARKER, check_not_input, work_dir_lock, write_text
from . import stages
from .naming import name_stem, target_text
from .runner import StageRunner, stage_keys, stage_settings


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
            from ..recovery.train import validate_options

            validate_options(recipe.recover.options())  # fail before any long work
        from .. import cache_root

        self.recipe, self.work = recipe, Path(work_dir)
        self.resume, self.overwrite = resume, overwrite
        self.keep = set(keep)  # entries of the work dir that belong to the caller (the demo's source model)
        self.ctx = stages.StageContext(
            recipe=recipe, work=self.work, token=token, progress=progress, trust_remote_code=trust_remote_code,
            score_cache=score_cache if score_cache is not None else cache_root() / "scores",
            eval_cache=eval_cache if eval_cache is not None else cache_root() / "eval",
            distill_cache=cache_root() / "distill", echo=echo, sweep_table=sweep_table, sweep_svg=sweep_svg)
        self.result = PipelineResult(self.work, self.work / "final", None, None)

    # -------------------------------------------------------------- before any work
    def describe(self) -> list[str]:
        """What run() would do, from headers and settings alone: nothing is downloaded (but headers) or written."""
        from ..api import dry_run_result, inspect_source

        r, p = self.recipe, self.recipe.prune
        lines = [f"work dir:   {self.work}"]
        if p.metric:
            size = f"remove {p.remove}" if p.remove is not None else f"down to {target_text(p.target_params)} parameters"
            lines.append(f"plan:       chosen by {p.metric}, {size}"
                         + (f" on {p.data}" if p.data else "")
                         + (f", {p.iterative_step} at a time with {r.recover.label} in between"
                            if stages.heals_between_rounds(r) else ""))
            src, ckpt = inspect_source(r.source, token=self.ctx.token)
            lines.append(f"source:     {src.repo_id or src.path}" + (f" @ {src.sha}" if src.sha else "")
                         + f" ({ckpt.num_layers} layers)")
        else:  # the plan stage's own decision, shown as prune's dry run shows it
            src, ckpt = inspect_source(r.source, token=self.ctx.token)
            lines += dry_run_result(src, ckpt, stages.explicit_plan(r, ckpt.num_layers)).describe()
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

    def _check_plan(self) -> None:
        """What the recipe removes, checked against the source's headers (no weights downloaded): an impossible
        plan fails here, before the work dir is touched, so the corrected retry needs no --overwrite."""
        from ..api import inspect_source

        p = self.recipe.prune
        _, ckpt = inspect_source(self.recipe.source, token=self.ctx.token)
        n = ckpt.num_layers
        if not p.metric:
            stages.explicit_plan(self.recipe, n)
        elif p.remove is not None:
            from ..scoring.metrics import get_metric

            kind = get_metric(p.metric).kind
            limit = 2 * n if kind == "sub-block" else n
            if p.remove >= limit:
                raise RecipeError(f"--remove {p.remove}: the model has {limit} "
                                  f"{'sub-blocks' if kind == 'sub-block' else 'layers'}; remove at most {limit - 1}")
        else:
            from ..sizing import params_to_remove, sizes

            params_to_remove(p.target_params, sizes(ckpt).total)

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
            return  # each stage checks its own key (see runner.stage_keys)
        if self.overwrite:
            if not (self.work / WORKDIR_MARKER).is_file():
                raise UnsafeOutputError(f"work dir {self.work} was not made by hfprune (no {WORKDIR_MARKER}); "
                                        "--overwrite only clears hfprune's own work dirs. Choose another --work-dir")
        else:
            raise OutputExistsError(f"work dir {self.work} is not empty; pass --resume to continue it or "
                                    "--overwrite to start over")

    def _check_push_target(self) -> str:
        """Resolve the repo id and prove the token can write there, before any long work."""
        from ..hub import writable_repo

        repo_id, self.ctx.token = writable_repo(self.recipe.push.repo_id, self.ctx.token,
                                                lambda user: f"{user}/{name_stem(self.recipe)}")
        return repo_id

    def _own_entries(self) -> list[Path]:
        """What is in the work dir besides the caller's kept entries and hfprune's marker and lock."""
        if not self.work.is_dir():
            return []
        return [p for p in self.work.iterdir() if p.name not in self.keep and p.name not in (WORKDIR_MARKER, LOCK_FILE)]

    def _prepare_work_dir(self) -> None:
        if self.overwrite and not self.resume:
            for p in self._own_entries():
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / WORKDIR_MARKER).write_text("work dir of hfprune push: --overwrite may clear it\n")
        write_text(self.work / "recipe.yaml", self.recipe.to_yaml())

    # -------------------------------------------------------------- the stages, in order
    def run(self) -> PipelineResult:
        self._check_work_dir()  # reads only: a refused run leaves nothing behind
        repo_id = self._check_push_target() if self.recipe.push.enabled else None
        self._check_plan()  # from the source's headers: a plan the model cannot take is refused before any write
        self.result.repo_id = repo_id
        with work_dir_lock(self.work):
            self._prepare_work_dir()
            return self._run(repo_id)

    def _run(self, repo_id: str | None) -> PipelineResult:
        ctx, work = self.ctx, self.work
        stage = StageRunner(work, stage_keys(self.recipe, repo_id, ctx.sweep_table), self.resume, ctx.echo,
                            stage_settings(self.recipe, repo_id, ctx.sweep_table))
        record = stage.run("source", work / "source.json", lambda: stages.source_stage(ctx),
                           encode=stages.SourceRecord.to_dict, decode=stages.SourceRecord.from_dict)
        src = record.source
        plan = stage.run("plan", work / "plan.json", lambda: stages.plan_stage(ctx, src),
                         encode=Plan.to_dict, decode=Plan.from_dict)
        stage.run("prune", work / "pruned", lambda: stages.prune_stage(ctx, src, plan))
        model_dir = work / "pruned"
        if self.recipe.recover.method != "none":
            stage.run("recover", work / "recovered", lambda: stages.recover_stage(ctx, src))
            model_dir = work / "recovered"
        evaluation = stage.run("eval", work / "eval.json", lambda: stages.eval_stage(ctx, src, plan))
        card_repo = repo_id or self.recipe.push.repo_id or f"<you>/{name_stem(self.recipe)}"
        stage.run("final", work / "final", lambda: stages.final_stage(ctx, record, plan, model_dir, evaluation,
                                                                      card_repo))
        if repo_id:
            pushed = stage.run("push", work / "push.json", lambda: stages.push_stage(ctx, repo_id))
            self.result.commit = pushed["commit"]
        self.result.ran, self.result.skipped = stage.ran, stage.skipped
        return self.result

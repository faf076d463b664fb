"""The library's entry points, one per CLI command; each returns a result object and raises HfpruneError."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from .disk.checkpoint import Checkpoint
from .disk.surgery import SizeReport, prune_checkpoint, size_report
from .errors import PlanError
from .hub import Source, resolve_source
from .plan import Plan, parse_layer_list
from .workdir import check_output


@dataclass
class PruneResult:
    """What `prune` did (or, for a dry run, would do)."""

    source: Source
    plan: Plan
    report: SizeReport
    output: Path | None  # None for a dry run

    def describe(self) -> list[str]:
        lines = [f"source:     {self.source.repo_id or self.source.path}"
                 + (f" @ {self.source.sha}" if self.source.sha else ""),
                 f"plan:       {self.plan.summary()}"]
        skips = self.plan.skip_map()
        if skips:
            lines.append("skip map:   " + ", ".join(f"{i}:{'+'.join(b)}" for i, b in skips.items())
                         + " (pruned numbering; needs trust_remote_code=True to load)")
        lines += self.report.lines()
        if self.output:
            lines.append(f"written:    {self.output}")
        return lines


def make_plan(num_layers: int, *, drop_last: int | None = None, drop_layers: str | list | None = None,
              skip_attention: str | list | None = None, skip_mlp: str | list | None = None,
              plan_file: str | Path | None = None) -> Plan:
    """Build a validated plan from CLI-style options or a plan JSON file (not both)."""
    def listify(value, what):
        if value is None:
            return []
        return parse_layer_list(value, what, num_layers) if isinstance(value, str) else list(value)

    inline = drop_last is not None or drop_layers or skip_attention or skip_mlp
    if plan_file is not None:
        if inline:
            raise PlanError("give either --plan or the inline options (--drop-last/--drop-layers/--skip-*), not both")
        plan = Plan.load(plan_file)
        plan.check_model(num_layers)
        return plan
    return Plan.build(num_layers, drop_last=drop_last, drop_layers=listify(drop_layers, "--drop-layers"),
                      skip_attention=listify(skip_attention, "--skip-attention"),
                      skip_mlp=listify(skip_mlp, "--skip-mlp"))


def prune(source: str | Path, output: str | Path | None = None, *, plan: Plan | None = None, dry_run: bool = False,
          overwrite: bool = False, allow_pickle: bool = False, progress: bool = False, token: str | None = None,
          **plan_options) -> PruneResult:
    """Prune `source` (a local folder or Hub id[@revision]) into `output` by `plan` or by plan options.

    plan_options are those of `make_plan` (drop_last, drop_layers, skip_attention, skip_mlp, plan_file).
    """
    if not dry_run:
        if output is None:
            raise PlanError("give an output folder with -o OUT (or use --dry-run)")
        local = Path(str(source)).expanduser()
        check_output(Path(output), overwrite, {"source": local if local.is_dir() else None})
    elif not allow_pickle:
        src, ckpt = inspect_source(str(source), token=token)
        return _dry_run(src, ckpt, plan or make_plan(ckpt.num_layers, **plan_options))
    src = resolve_source(str(source), token=token, allow_pickle=allow_pickle)
    with tempfile.TemporaryDirectory(prefix="hfprune-convert-") as tmp:
        folder = src.path
        if allow_pickle and not any(folder.glob("*.safetensors")):
            from .disk.pickle_convert import convert_pickle_checkpoint

            folder = convert_pickle_checkpoint(folder, Path(tmp) / "converted")
        ckpt = Checkpoint.open(folder)
        if plan is None:
            plan = make_plan(ckpt.num_layers, **plan_options)
        plan.check_model(ckpt.num_layers)
        if dry_run:
            return _dry_run(src, ckpt, plan)
        report = prune_checkpoint(folder, output, plan, overwrite=overwrite, progress=progress,
                                  provenance={"source": src.provenance()})
    return PruneResult(src, plan, report, Path(output))


def inspect_source(source: str, token: str | None = None) -> tuple[Source, Checkpoint]:
    """Headers of a source without downloading weights: HTTP range reads for a Hub id, the files for a folder."""
    from .hub import remote_headers

    remote = remote_headers(source, token=token)
    if remote is not None:
        src, files = remote
        return src, Checkpoint.open(src.path, files=files)
    src = resolve_source(source, token=token)
    return src, Checkpoint.open(src.path)


def _dry_run(src: Source, ckpt: Checkpoint, plan: Plan) -> PruneResult:
    """Everything prune would check and report, nothing written."""
    from .disk.config_edit import edit_config

    plan.check_model(ckpt.num_layers)
    edit_config(ckpt.config, plan, ckpt.arch)  # refuses unknown per-layer fields now, not after a download
    return PruneResult(src, plan, size_report(ckpt, plan), None)  # size_report attributes every removed tensor

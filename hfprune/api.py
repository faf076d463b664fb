"""The library's entry points, one per CLI command; each returns a result object and raises HfpruneError."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
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
    warnings: list[str] = field(default_factory=list)  # e.g. a plan that breaks llama.cpp's layer period
    replacement: dict | None = None  # what --replace linear changed (hfprune.json's record)

    def describe(self) -> list[str]:
        lines = [f"source:     {self.source.repo_id or self.source.path}"
                 + (f" @ {self.source.sha}" if self.source.sha else ""),
                 f"plan:       {self.plan.summary()}"]
        skips = self.plan.skip_map()
        if skips:
            lines.append("skip map:   " + ", ".join(f"{i}:{'+'.join(b)}" for i, b in skips.items())
                         + " (pruned numbering; needs trust_remote_code=True to load)")
        lines += self.report.lines()
        if self.replacement:
            for b in self.replacement.get("blocks", []):
                lines.append(f"replaced:   layers {b['layers'][0]}-{b['layers'][1]} by a linear map in "
                             f"{b['fold_into']} (calibration error {b['removal_error']:.4f} -> {b['fit_error']:.4f})")
            lines += [f"note:       {n}" for n in self.replacement.get("not_replaced", [])]
        if self.output:
            lines.append(f"written:    {self.output}")
        lines += [f"warning:    {w}" for w in self.warnings]
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
          replace=None, trust_remote_code: bool = False, echo=print, **plan_options) -> PruneResult:
    """Prune `source` (a local folder or Hub id[@revision]) into `output` by `plan` or by plan options.

    plan_options are those of `make_plan` (drop_last, drop_layers, skip_attention, skip_mlp, plan_file). `replace`
    (settings.ReplaceSettings with replace="linear") replaces each removed block by a fitted linear map.
    """
    if not dry_run:
        if output is None:
            raise PlanError("give an output folder with -o OUT (or use --dry-run)")
        local = Path(str(source)).expanduser()
        check_output(Path(output), overwrite, {"source": local if local.is_dir() else None})
    elif not allow_pickle:
        src, ckpt = inspect_source(str(source), token=token)
        return dry_run_result(src, ckpt, plan or make_plan(ckpt.num_layers, **plan_options))
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
            return dry_run_result(src, ckpt, plan)
        provenance, replacements = {"source": src.provenance()}, None
        if replace is not None and replace.replace != "none":
            replacements, provenance["replacement"] = replace_blocks(folder, ckpt, plan, replace, progress=progress,
                                                                     trust_remote_code=trust_remote_code, echo=echo)
        report = prune_checkpoint(folder, output, plan, overwrite=overwrite, progress=progress, provenance=provenance,
                                  readme=_short_card(src, plan, token), replacements=replacements)
    result = PruneResult(src, plan, report, Path(output), runtime_warnings(ckpt, plan))
    result.replacement = provenance.get("replacement")
    return result


def replace_blocks(folder: Path, ckpt: Checkpoint, plan: Plan, settings, *, progress: bool = False,
                   trust_remote_code: bool = False, echo=print) -> tuple[dict[str, bytes], dict]:
    """The folded tensors (source names -> bytes) and the record of `--replace linear` for `plan`."""
    from .scoring.linear_fit import fit_replacement

    replacements, record = fit_replacement(folder, ckpt, plan, settings, trust_remote_code=trust_remote_code,
                                           progress=progress, echo=echo)
    return replacements, record


def runtime_warnings(ckpt: Checkpoint, plan: Plan) -> list[str]:
    """Assumptions of other runtimes (llama.cpp's fixed layer periods) that `plan` breaks for this checkpoint."""
    from .disk.model_types import base_model_type
    from .disk.runtimes import period_warnings

    dec = ckpt.decoder_config
    return period_warnings(base_model_type(str(dec.get("model_type") or ckpt.config.get("model_type"))), dec, plan)


def _short_card(src: Source, plan: Plan, token: str | None) -> str:
    """README.md of a pruned folder: base_model lineage (kept on the Hub and by GGUF converters), no benchmarks."""
    from .publish.card import prune_card
    from .hub import source_license

    ref = f"{src.repo_id}@{src.sha}" if src.repo_id else src.path.name
    return str(prune_card(plan, src.repo_id, ref, source_license(src, token)))


def inspect_source(source: str, token: str | None = None) -> tuple[Source, Checkpoint]:
    """Headers of a source without downloading weights: HTTP range reads for a Hub id, the files for a folder."""
    from .hub import remote_headers

    remote = remote_headers(source, token=token)
    if remote is not None:
        src, files = remote
        return src, Checkpoint.open(src.path, files=files)
    src = resolve_source(source, token=token)
    return src, Checkpoint.open(src.path)


def dry_run_result(src: Source, ckpt: Checkpoint, plan: Plan) -> PruneResult:
    """Everything prune would check and report, nothing written."""
    from .disk.config_edit import edit_config

    plan.check_model(ckpt.num_layers)
    edit_config(ckpt.config, plan, ckpt.arch)  # refuses unknown per-layer fields now, not after a download
    return PruneResult(src, plan, size_report(ckpt, plan), None, runtime_warnings(ckpt, plan))  # size_report attributes every removed tensor

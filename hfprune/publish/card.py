"""The model card: huggingface_hub's ModelCard built from the template in model_cards/, plus the layer map."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..plan import Plan, format_layer_list
from ..settings import RecoverSection

DATASET_IDS = {"alpaca": "yahma/alpaca-cleaned", "dolly": "databricks/databricks-dolly-15k"}


def cited(plan: Plan, replaced: bool, recovery_method: str | None) -> list[str]:
    """The papers behind what ran, each once: the metric's (a skip map follows FinerCut whatever chose it), the
    linear replacement's, the healing method's, lm-eval's."""
    from ..evaluation.harness import CITATION as LM_EVAL
    from ..recovery import METHOD_CITATIONS
    from ..scoring.linear_fit import CITATION as REPLACEME
    from ..scoring.metrics import FINERCUT, METRICS

    metric = METRICS.get(plan.metric or "reverse-order")
    found = [FINERCUT] if plan.has_skips else []
    found += [metric.citation] if metric is not None and metric.citation else []
    found += [REPLACEME] if replaced else []
    found += [METHOD_CITATIONS[recovery_method]] if recovery_method in METHOD_CITATIONS else []
    return list(dict.fromkeys(found + [LM_EVAL]))


def template_path() -> Path:
    """The card template, from the installed package (or the source tree in a checkout)."""
    try:
        path = Path(str(resources.files("hfprune.model_cards").joinpath("hfprune_card.md")))
        if path.is_file():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "model_cards" / "hfprune_card.md"


@dataclass
class CardInputs:
    repo_id: str
    source_ref: str  # "org/name@sha" or a folder
    base_model: str | None  # Hub id when the source came from the Hub
    license: dict | None  # the base card's license, license_name, license_link
    plan: Plan
    recipe_yaml: str
    evaluation: dict  # eval.json
    scores: dict | None = None
    recovery: RecoverSection | None = None  # the recipe's recover section, when a method ran
    recovery_record: dict | None = None  # the healed checkpoint's hfprune.json: what actually ran
    sweep_table: str | None = None  # results of the sweep this recipe was chosen from
    needs_remote_code: bool = False
    runtime_notes: list = field(default_factory=list)  # plan vs other runtimes (llama.cpp layer periods)
    replacement: dict | None = None  # the pruned checkpoint's hfprune.json "replacement" (--replace linear)


def layer_map_svg(plan: Plan) -> str:
    """An SVG of every source layer: attention and FFN cells, kept (filled) or removed (hollow, crossed)."""
    n, cell, gap, left, top = plan.num_layers, 18, 2, 44, 22
    title = f"layer map: {n} source layers, {len(plan.kept_layers)} kept"
    width = max(left + n * (cell + gap) + 10, left + 6 * len(title) + 10)  # ~6 px per 10-px character
    height = top + 2 * (cell + gap) + 30
    drop, attn, mlp = set(plan.drop_layers), set(plan.skip_attention), set(plan.skip_mlp)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="10">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="12">{title}</text>',
             f'<text x="4" y="{top + 13}">attn</text>', f'<text x="4" y="{top + cell + gap + 13}">FFN</text>']
    for i in range(n):
        x = left + i * (cell + gap)
        for row, removed in enumerate((i in drop or i in attn, i in drop or i in mlp)):
            y = top + row * (cell + gap)
            if removed:
                parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="#f3f3f3" stroke="#bbb"/>'
                             f'<path d="M{x} {y}L{x + cell} {y + cell}M{x + cell} {y}L{x} {y + cell}" stroke="#c33"/>')
            else:
                parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="#3a7" stroke="#286"/>')
        if i % 5 == 0 or i == n - 1:
            parts.append(f'<text x="{x + 2}" y="{top + 2 * (cell + gap) + 12}">{i}</text>')
    parts.append(f'<text x="{left}" y="{height - 4}">green: kept, crossed: removed</text></svg>')
    return "".join(parts)


def layer_map_text(plan: Plan) -> str:
    drop, attn, mlp = set(plan.drop_layers), set(plan.skip_attention), set(plan.skip_mlp)
    idx = " ".join(f"{i % 100:>2}" for i in range(plan.num_layers))
    a = " ".join(" ." if (i in drop or i in attn) else " #" for i in range(plan.num_layers))
    f = " ".join(" ." if (i in drop or i in mlp) else " #" for i in range(plan.num_layers))
    return f"layer {idx}\nattn  {a}\nFFN   {f}\n(# kept, . removed)"


def _fmt(metric: str, value: float, stderr: float | None) -> str:
    if metric.startswith("acc") or metric == "exact_match":
        s = f"{100 * value:.2f}"
        return s + (f" ± {100 * stderr:.2f}" if stderr is not None else "")
    return f"{value:.4g}"


def benchmark_rows(evaluation: dict) -> list[dict]:
    """One row per (task, metric): dense, pruned and recovered values with deltas; also used to check the card."""
    models = [m for m in ("dense", "pruned", "recovered") if evaluation.get(m)]
    rows = []
    tasks = sorted({t for m in models for t in evaluation[m]["tasks"]})
    for task in tasks:
        metrics = {k for m in models for k in evaluation[m]["tasks"].get(task, {}) if not k.endswith("_stderr")}
        for metric in sorted(metrics):
            row = {"task": task, "metric": metric}
            for m in models:
                t = evaluation[m]["tasks"].get(task, {})
                row[m] = t.get(metric)
                row[f"{m}_stderr"] = t.get(f"{metric}_stderr")
            rows.append(row)
    return rows


def format_delta(metric: str, dense: float | None, value: float | None) -> str:
    """Accuracy-like metrics: the change in percentage points; perplexities and the like: the relative change."""
    if value is None or dense is None:
        return "n/a"
    if metric.startswith("acc") or metric == "exact_match":
        return f"{100 * (value - dense):+.2f} pt"
    if dense == 0:
        return "n/a"
    return f"{100 * (value - dense) / abs(dense):+,.1f}%"


def benchmark_table(evaluation: dict) -> str:
    models = [m for m in ("dense", "pruned", "recovered") if evaluation.get(m)]
    head = "| task | metric | " + " | ".join(
        f"{m}" + ("" if m == "dense" else f" | Δ {m}") for m in models) + " |"
    sep = "|" + "---|" * (2 + len(models) + (len(models) - 1)) 
    lines = [head, sep]
    acc_rows = []
    for row in benchmark_rows(evaluation):
        cells = [row["task"], row["metric"]]
        for m in models:
            v = row[m]
            cells.append(_fmt(row["metric"], v, row[f"{m}_stderr"]) if v is not None else "n/a")
            if m != "dense":
                d = row["dense"]
                cells.append(format_delta(row["metric"], d, v))
        lines.append("| " + " | ".join(cells) + " |")
        if row["metric"] == "acc":
            acc_rows.append(row)
    if acc_rows:
        cells = ["**average**", "acc"]
        means = {m: sum(r[m] for r in acc_rows if r[m] is not None) / len(acc_rows) for m in models}
        for m in models:
            cells.append(f"{100 * means[m]:.2f}")
            if m != "dense":
                cells.append(format_delta("acc", means["dense"], means[m]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _human(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def _speed(e: dict) -> str:
    sp = e.get("speed")
    if not sp:
        return "not measured"
    relative = f" ({sp['relative']:.2f}x)" if "relative" in sp else ""
    return f"{sp['tokens_per_s']:.1f}{relative}"


def speed_note(evaluation: dict) -> str:
    """How the decode speed in the size table was measured, or that it was not."""
    measured = next((evaluation[m]["speed"] for m in ("recovered", "pruned") if (evaluation.get(m) or {}).get("speed")),
                    None)
    if not measured:
        return "Decode speed was not measured (speed_rounds: 0)."
    m = measured["method"]
    return (f"Decode speed: greedy generation of {m['new_tokens']} tokens after a {m['prompt_tokens']}-token prompt, "
            f"batch 1, {m['dtype']} on {m['device']}; median of {m['rounds']} rounds, the models timed "
            f"{m['schedule']}, so the ratio to the dense model (in brackets) is the figure to read: absolute "
            "tokens/s depend on the machine that made this card.")


def size_table(evaluation: dict) -> str:
    models = [m for m in ("dense", "pruned", "recovered") if evaluation.get(m)]
    lines = ["| | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for label, fn in (
        ("decoder layers", lambda e: str(e["size"]["num_layers"])),
        ("parameters", lambda e: _human(e["size"]["parameters"])),
        ("safetensors on disk", lambda e: f"{e['size']['bytes_on_disk'] / 2**20:.1f} MiB"),
        ("decode tokens/s (x dense)", _speed),
    ):
        lines.append(f"| {label} | " + " | ".join(fn(evaluation[m]) for m in models) + " |")
    return "\n".join(lines)


def publishable_recipe(recipe: dict) -> dict:
    """The recipe as a card or a published recipe.yaml may show it: local paths reduced to file names, and only
    the recovery settings of the method that ran."""
    import copy

    r = copy.deepcopy(recipe)

    def local_name(v):
        if isinstance(v, str) and (Path(v).is_absolute() or Path(v).expanduser().exists()):
            return Path(v).name
        return v

    r["source"] = local_name(r.get("source"))
    r.get("prune", {})["data"] = local_name(r.get("prune", {}).get("data"))
    r.get("eval", {})["include_path"] = local_name(r.get("eval", {}).get("include_path"))
    rec = r.get("recover") or {}
    rec["dataset"] = local_name(rec.get("dataset"))
    method = rec.get("method", "none")
    if method == "none":
        r["recover"] = {"method": "none"}
    else:
        if method.removesuffix("-kd") == "partial":
            for k in [k for k in rec if k.startswith("lora_")]:
                rec.pop(k)
        else:
            for k in ("last_k", "train_layers", "tied_embeddings"):
                rec.pop(k, None)
        distilling = rec.get("objective") == "kd"
        if not distilling:
            for k in ("kd_temperature", "kd_alpha", "teacher_logits", "teacher_top_k"):
                rec.pop(k, None)
        if rec.get("answers", "dataset") == "dataset":
            rec.pop("answer_max_tokens", None)
        if distilling or rec.get("answers") == "teacher":
            rec["teacher"] = local_name(rec.get("teacher")) or "the dense source"
        else:
            rec.pop("teacher", None)
    return r


def build_card(inputs: CardInputs):
    """A huggingface_hub ModelCard with model-index eval results, rendered from the shipped template."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    ev = inputs.evaluation
    final = "recovered" if ev.get("recovered") else "pruned"
    plan = inputs.plan
    model_name = inputs.repo_id.split("/")[-1]
    results = []
    for task, metrics in ev[final]["tasks"].items():
        for metric, value in metrics.items():
            if metric.endswith("_stderr"):
                continue
            dataset = _task_dataset(ev[final].get("raw"), task)
            results.append(EvalResult(task_type="text-generation", dataset_type=dataset.get("id", task),
                                      dataset_name=task, dataset_config=dataset.get("config"),
                                      dataset_split=dataset.get("split"), metric_type=metric,
                                      metric_value=round(float(value), 6), metric_name=metric,
                                      task_name="Text Generation"))
    datasets = []
    if inputs.recovery:
        ds = inputs.recovery.dataset
        datasets.append(DATASET_IDS.get(ds, ds) if ds and not Path(ds).exists() and not Path(ds).is_absolute()
                        else None)
    if inputs.scores and inputs.scores.get("data") and not Path(inputs.scores["data"]["source"]).exists() and not Path(inputs.scores["data"]["source"]).is_absolute():
        datasets.append(inputs.scores["data"]["source"].split(":")[0])
    datasets = [d for d in dict.fromkeys(datasets) if d]
    tags = ["pruned", "layer-pruning", "hfprune"] + ([plan.metric] if plan.metric else [])
    if inputs.recovery:
        tags.append(f"recovery-{recovery_label(inputs.recovery)}")
    licence = inputs.license or {}
    data = ModelCardData(base_model=inputs.base_model, library_name="transformers", license=licence.get("license"),
                         license_name=licence.get("license_name"), license_link=licence.get("license_link"),
                         datasets=datasets or None, tags=tags, model_name=model_name,
                         eval_results=results or None, pipeline_tag="text-generation")
    before, after = ev["dense"]["size"]["parameters"], ev[final]["size"]["parameters"]
    citations = cited(plan, bool((inputs.replacement or {}).get("blocks")),
                      inputs.recovery.method if inputs.recovery else None)
    recovery = _recovery_summary(inputs, ev) if inputs.recovery else None
    scores_table = _scores_table(inputs.scores) if inputs.scores else ""
    return ModelCard.from_template(
        data, template_path=str(template_path()),
        model_name=model_name, repo_id=inputs.repo_id,
        base_label=inputs.base_model or inputs.source_ref,
        base_url=f"https://huggingface.co/{inputs.base_model}" if inputs.base_model else "#recipe",
        removed_summary=_removed_summary(plan, bool((inputs.replacement or {}).get("blocks"))), recovery=recovery,
        size_after={"parameters_h": _human(after)}, size_change=f"{100 * (after - before) / before:+.1f}%",
        layers_before=plan.num_layers, layers_after=len(plan.kept_layers),
        layers_sentence=(f"{len(plan.kept_layers)} decoder layers instead of {plan.num_layers}"
                         if plan.drop_layers else f"all {plan.num_layers} decoder layers, some without a sub-block"),
        plan_description=_plan_description(plan), metric_description=_metric_description(plan, inputs.scores),
        replacement_description=replacement_description(inputs.replacement),
        scores_table=scores_table, layer_map_text=layer_map_text(plan),
        eval_note=_eval_note(ev), benchmark_table=benchmark_table(ev), size_table=size_table(ev),
        speed_note=speed_note(ev),
        needs_remote_code=inputs.needs_remote_code, source_ref=inputs.source_ref,
        recipe_yaml=inputs.recipe_yaml.strip(), citations=citations, sweep_table=inputs.sweep_table,
        notices=required_notices(licence.get("license"), inputs.base_model),
        runtime_notes=inputs.runtime_notes,
    )


# Attribution that a base model's licence requires in derivatives (checked by licence id, then by family name).
NOTICES = {
    "llama3.1": "Built with Llama. Llama 3.1 is licensed under the Llama 3.1 Community License, Copyright © Meta "
                "Platforms, Inc. All Rights Reserved.",
    "llama3.2": "Built with Llama. Llama 3.2 is licensed under the Llama 3.2 Community License, Copyright © Meta "
                "Platforms, Inc. All Rights Reserved.",
    "llama3.3": "Built with Llama. Llama 3.3 is licensed under the Llama 3.3 Community License, Copyright © Meta "
                "Platforms, Inc. All Rights Reserved.",
    "llama3": "Built with Meta Llama 3.",
    "llama4": "Built with Llama. Llama 4 is licensed under the Llama 4 Community License, Copyright © Meta "
              "Platforms, Inc. All Rights Reserved.",
    "gemma": "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms.",
}


def required_notices(license_id: str | None, base_model: str | None) -> list[str]:
    """The notices the base model's licence asks derivatives to carry ("Built with Llama", Gemma's terms)."""
    key = (license_id or "").lower()
    if key not in NOTICES and base_model and "gemma" in base_model.lower():
        key = "gemma"
    return [NOTICES[key]] if key in NOTICES else []


def prune_card(plan, base_model: str | None, source_ref: str, license: dict | None):
    """The short card `hfprune prune` writes: lineage (base_model), what was removed, licence, notices; no
    benchmarks (nothing was measured)."""
    from huggingface_hub import ModelCard, ModelCardData

    licence = license or {}
    data = ModelCardData(base_model=base_model, library_name="transformers", license=licence.get("license"),
                         license_name=licence.get("license_name"), license_link=licence.get("license_link"),
                         tags=["pruned", "layer-pruning", "hfprune"] + ([plan.metric] if plan.metric else []),
                         pipeline_tag="text-generation")
    lines = [f"# {source_ref} with {_removed_summary(plan)}", "",
             f"Made with hfprune from `{source_ref}`.", "", _plan_description(plan), "",
             "Not evaluated and not healed: `hfprune eval` measures it, `hfprune recover` heals it, and `hfprune "
             "push` does both and writes the full card with benchmarks.", "", "```text", layer_map_text(plan),
             "```"]
    lines += ["", *required_notices(licence.get("license"), base_model)]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines).rstrip() + "\n")


def _task_dataset(raw: dict | None, task: str) -> dict:
    """The Hub dataset an lm-eval task reads ({id, config, split}) from the task config lm-eval reports, so the
    model-index names e.g. allenai/ai2_arc ARC-Easy test rather than the task name. Local data (json, text, a
    path) has no Hub id: {} (the task name stands in)."""
    config = ((raw or {}).get("configs") or {}).get(task) or {}
    path = config.get("dataset_path")
    if not isinstance(path, str) or path in ("json", "csv", "text", "parquet", "arrow") or "/" not in path \
            or Path(path).is_absolute() or Path(path).exists():
        return {}
    split = config.get("test_split") or config.get("validation_split") or config.get("training_split")
    return {"id": path, "config": config.get("dataset_name"), "split": split}


def eval_results_files(evaluation: dict, date: str | None = None) -> dict[str, str]:
    """The Hub's `.eval_results/<task>.yaml` files (https://huggingface.co/docs/hub/eval-results), written with
    huggingface_hub's EvalResultEntry: one entry per lm-eval task that reads a Hub dataset, for the final model
    (healed if it was). Local tasks have no Hub dataset and get no file. {file name: YAML text}."""
    import yaml
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    final = "recovered" if evaluation.get("recovered") else "pruned"
    ev = evaluation[final]
    settings = ev.get("settings") or {}
    limit = f", at most {settings['limit']} examples" if settings.get("limit") else ""
    files = {}
    for task, metrics in ev["tasks"].items():
        dataset = _task_dataset(ev.get("raw"), task)
        names = [m for m in metrics if not m.endswith("_stderr")]
        if not dataset or not names:
            continue
        metric = next((m for m in ("acc_norm", "acc", "word_perplexity") if m in names), names[0])
        entry = EvalResultEntry(
            dataset_id=dataset["id"], task_id=dataset.get("config") or "default",
            value=round(float(metrics[metric]), 6), date=date,
            notes=(f"{metric} on the {dataset.get('split') or 'test'} split, lm-evaluation-harness "
                   f"{settings.get('lm_eval_version', '')} task {task}, zero-shot{limit}; measured by hfprune"))
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in task)
        files[f"{safe}.yaml"] = yaml.safe_dump(eval_result_entries_to_yaml([entry]), sort_keys=False)
    return files


def dataset_label(name: str | None) -> str | None:
    """A dataset as a card may name it: Hub ids as they are, local files by file name only (no local paths)."""
    if not name:
        return name
    if name in DATASET_IDS:
        return DATASET_IDS[name]
    p = Path(name)
    return p.name if (p.is_absolute() or p.exists() or len(p.parts) > 2) else name


def recovery_label(recovery: RecoverSection) -> str:
    """partial, lora, qlora, partial-kd or lora-kd: the method as the CLI spells it, from a recover section."""
    return recovery.method + ("-kd" if recovery.objective == "kd" else "")


def _recovery_summary(inputs: CardInputs, ev: dict) -> dict:
    r = inputs.recovery
    record = inputs.recovery_record or {}
    tied = (record.get("recovery") or {}).get("tied_embeddings_result")
    if r.method == "partial":
        head = {"frozen": "the tied lm_head kept frozen", "untied": "an untied copy of lm_head"}.get(tied, "lm_head")
        what = f"partial-layer fine-tuning (the last {r.last_k} layers, final norm and {head})"
    else:
        what = f"{r.method.upper()} (r={r.lora_r}, merged)"
    from ..recovery.record import RecoveryRun

    run = RecoveryRun.from_dict(record.get("recovery_run"))
    data = dataset_label(r.dataset)
    if run and run.answers == "teacher":
        data = f"the teacher's own greedy answers to the instructions of {data} (self-data distillation)"
    if run and run.objective != "SFT":
        what += f", distilled from the dense model {run.teacher} ({run.objective})"
    elif run and run.teacher:
        data += f" (teacher: {run.teacher})"
    out = {"label": f"{what} on {data}"}
    if run:
        loss = f", loss {run.first_loss:.3f} → {run.last_loss:.3f}" if run.first_loss is not None else ""
        out["ran"] = (f"{run.optimizer_steps} optimizer steps ({run.warmup_steps} warm-up) at lr {run.lr:g} "
                      f"on {run.examples:,} examples ({run.tokens:,} tokens, {run.prompt} prompt, {run.precision})"
                      f"{loss}")
        out["warnings"] = run.warnings
    if tied == "untied" and ev.get("pruned") and ev.get("recovered"):
        extra = ev["recovered"]["size"]["parameters"] - ev["pruned"]["size"]["parameters"]
        saved = ev["dense"]["size"]["parameters"] - ev["pruned"]["size"]["parameters"]
        share = f" ({100 * extra / saved:.0f}% of what pruning saved)" if saved > 0 else ""
        out["untie_note"] = (f"Healing untied lm_head from the input embeddings: +{_human(extra)} parameters{share}. "
                             "Heal with --tied-embeddings freeze to keep the size win.")
    return out


def _removed_summary(plan: Plan, replaced: bool = False) -> str:
    parts = []
    if plan.drop_layers:
        parts.append(f"{len(plan.drop_layers)} of {plan.num_layers} decoder layers removed"
                     + (" and replaced by linear maps" if replaced else ""))
    if plan.skip_attention:
        parts.append(f"{len(plan.skip_attention)} attention sub-blocks removed")
    if plan.skip_mlp:
        parts.append(f"{len(plan.skip_mlp)} FFN sub-blocks removed")
    return ", ".join(parts)


def _plan_description(plan: Plan) -> str:
    lines = [f"- Layers removed (0-based, original numbering): {format_layer_list(plan.drop_layers)}"]
    if plan.skip_attention:
        lines.append(f"- Attention removed, FFN kept: layers {format_layer_list(plan.skip_attention)}")
    if plan.skip_mlp:
        lines.append(f"- FFN removed, attention kept: layers {format_layer_list(plan.skip_mlp)}")
    lines.append(f"- Kept layers are renumbered 0-{len(plan.kept_layers) - 1}.")
    return "\n".join(lines)


def replacement_description(rec: dict | None) -> str:
    """What --replace linear changed, for the card: the data, each block's map and fit, what was not done."""
    if not rec:
        return ""
    lines = []
    if rec.get("blocks"):
        d = rec.get("data") or {}
        lines.append(f"**Training-free replacement** (ReplaceMe): each removed block was replaced by a linear map "
                     f"fitted ({'least squares in closed form' if rec.get('objective') == 'least squares' else 'least squares, then refined to minimise the cosine distance to the original stream'}, "
                     f"ridge {rec.get('ridge')}) on "
                     f"{rec.get('tokens', 0):,} tokens ({d.get('samples')} windows of {d.get('seq_len')}) of "
                     f"`{dataset_label(d.get('source', ''))}` (seed {d.get('seed')}, sha256 `{d.get('sha256', '')[:12]}…`), "
                     "and folded into the layer before the block, so the checkpoint stays a stock one. The error "
                     "columns are the calibration residual ||L - out||² as a fraction of the stream's energy ||L||², "
                     "L being the original model's residual stream after the block.")
        lines += ["", "| removed layers | map folded into | error without the map | error with the map |",
                  "|---|---|---|---|"]
        for b in rec["blocks"]:
            lo, hi = b["layers"]
            lines.append(f"| {lo}–{hi} | `{b['fold_into']}` | {b['removal_error']:.4f} | {b['fit_error']:.4f} |")
    for note in rec.get("not_replaced", []):
        lines.append(f"\n> Not replaced: {note}")
    if rec.get("warning"):
        lines.append(f"\n> {rec['warning']}")
    return "\n".join(lines)


def _metric_description(plan: Plan, scores: dict | None) -> str:
    metric = plan.metric or "manual"
    if metric in ("manual",) and not scores:
        return "The layers were chosen explicitly in the recipe (reverse-order pruning when they are the last ones)."
    text = f"Chosen by the `{metric}` metric"
    if scores and scores.get("data"):
        d = scores["data"]
        text += (f" on {d['samples']} windows of {d['seq_len']} tokens of `{dataset_label(d['source'])}` (seed {d['seed']}, "
                 f"sha256 `{d['sha256'][:12]}…`)")
    return text + "."


def _scores_table(scores: dict) -> str:
    values = scores.get("scores")
    if scores.get("steps"):
        lines = ["| step | removed | distance |", "|---|---|---|"]
        for k, s in enumerate(scores["steps"], start=1):
            lines.append(f"| {k} | layer {s['removed']['layer']} {s['removed']['block']} | {s['distance']:.4g} |")
        return "\n".join(lines)
    if not values:
        return ""
    header = "block start" if scores.get("metric") == "angular" else "layer"
    lines = [f"| {header} | score |", "|---|---|"]
    lines += [f"| {i} | {v:.4g} |" for i, v in enumerate(values) if v is not None]
    return "\n".join(lines)


def _eval_note(ev: dict) -> str:
    s = ev["dense"]["settings"]
    limit = s.get("limit")
    limit = ("" if not limit else f", {100 * limit:g}% of each task's examples" if limit < 1
             else f", at most {limit} examples per task")
    precision = (f", {s['dtype']} weights ({s.get('dtype_reason', '')}) on {s.get('device', 'cpu')}, windows of at most "
                 f"{s['max_length']} tokens" if s.get("dtype") else f", batch size {s['batch_size']}")
    return (f"lm-evaluation-harness {s.get('lm_eval_version')}, zero-shot{limit}{precision}; the dense and pruned "
            "models ran with the same settings. Accuracies in %, ± standard error; Δ is the change from the dense "
            "model.")

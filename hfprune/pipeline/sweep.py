"""`hfprune sweep`: several recipes over one source, measured with the same evaluation, and the Pareto front.

Every entry (metric x recovery method) is an ordinary `push --no-push` pipeline in its own folder of the sweep dir,
so each is resumable and can later be published with `hfprune push --from-sweep DIR --entry NAME`. What can be
shared is shared through hfprune's caches, keyed by content: the source is resolved once (Hub snapshots are
cached), the dense evaluation runs once, each metric scores once, and the pruned model of a (source, plan) pair is
evaluated once whatever the healing methods that follow it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputExistsError, RecipeError, UnsafeOutputError
from ..settings import RECOVERY_METHODS as _METHODS
from ..settings import Recipe
from ..workdir import LOCK_FILE, check_not_input, work_dir_lock, write_json, write_text
from .naming import PARETO_SVG

SWEEP_FILE = "sweep.json"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
SWEEP_MARKER = ".hfprune-workdir"
RECOVERY_METHODS = ("none",) + _METHODS


@dataclass
class SweepResult:
    work_dir: Path
    rows: list[dict] = field(default_factory=list)
    pareto: list[str] = field(default_factory=list)
    table: str = ""


@dataclass(frozen=True)
class Size:
    """How much every entry removes: `remove` layers (finercut: sub-blocks) or down to `target_params`."""

    remove: int | None = None
    target_params: float | None = None

    def __post_init__(self):
        if (self.remove is None) == (self.target_params is None):
            raise RecipeError("give --remove N or --target-params T (one of them)")
        if self.remove is not None and self.remove < 1:
            raise RecipeError("--remove N: give how many layers to remove (at least 1)")

    @classmethod
    def coerce(cls, value) -> "Size":
        return value if isinstance(value, Size) else cls(remove=value)

    def tag(self) -> str:
        if self.remove is not None:
            return f"remove{self.remove}"
        from .naming import target_tag

        return f"p{target_tag(self.target_params)}"

    def to_dict(self) -> dict:
        return {"remove": self.remove, "target_params": self.target_params}


def entry_name(metric: str, method: str, replace: str = "none") -> str:
    return f"{metric}-{method}" if replace == "none" else f"{metric}-{replace}-{method}"


def parse_list(text: str | list | None, what: str) -> list[str]:
    items = text if isinstance(text, list) else [t.strip() for t in (text or "").split(",")]
    items = [t for t in items if t]
    if not items:
        raise RecipeError(f"{what} is empty; give a comma-separated list")
    if len(set(items)) != len(items):
        raise RecipeError(f"{what} lists an entry twice: {','.join(items)}")
    return items


def plan_sweep(base: Recipe, source: str, size, metrics, methods, replace="none") -> dict[str, Recipe]:
    """{entry name: recipe} for every metric x replacement x method, validated before any work."""
    from ..scoring.metrics import METRICS

    size = Size.coerce(size)
    metrics = parse_list(metrics, "--metrics")
    methods = parse_list(methods, "--recover")
    replaces = parse_list(replace, "--replace")
    wrong = [r for r in replaces if r not in ("none", "linear")]
    if wrong:
        raise RecipeError(f"--replace: unknown value {wrong[0]!r}; choose from none, linear")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise RecipeError(f"--metrics: unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    bad = [m for m in methods if m not in RECOVERY_METHODS]
    if bad:
        raise RecipeError(f"--recover: unknown method {bad[0]!r}; choose from {', '.join(RECOVERY_METHODS)}")
    recipes = {}
    for metric in metrics:
        for rep in replaces:
            for method in methods:
                recipes[entry_name(metric, method, rep)] = base.override(**{
                    "source": source, "prune.metric": metric, "prune.remove": size.remove,
                    "prune.target_params": size.target_params, "prune.replace": rep, "recover.method": method,
                    "push.enabled": False})
    return recipes


def check_remove(source: str, size, metrics: list[str], token: str | None = None) -> int:
    """Refuse a removal the model cannot take, from its headers alone; return its layer count."""
    from ..api import inspect_source
    from ..scoring.metrics import METRICS

    size = Size.coerce(size)
    _, ckpt = inspect_source(source, token=token)
    n = ckpt.num_layers
    if size.remove is None:
        from ..sizing import params_to_remove, sizes

        params_to_remove(size.target_params, sizes(ckpt).total)
        return n
    remove = size.remove
    for metric in metrics:
        limit = 2 * n if METRICS[metric].kind == "sub-block" else n
        if remove >= limit:
            unit = "attention/FFN sub-blocks" if limit == 2 * n else "layers"
            raise RecipeError(f"--remove {remove} is impossible for {metric}: the model has {limit} {unit}; "
                              f"remove at most {limit - 1}")
    return n


def run_sweep(base: Recipe, source: str, size, metrics, methods, work_dir: str | Path, *,
              resume: bool = False, overwrite: bool = False, token: str | None = None, progress: bool = False,
              trust_remote_code: bool = False, echo=print, eval_cache=None, score_cache=None,
              replace="none") -> SweepResult:
    """Run every recipe of the sweep (resumable), then write results.json / results.md with the Pareto front.
    `size` is a Size (or an int: layers to remove)."""
    size = Size.coerce(size)
    recipes = plan_sweep(base, source, size, metrics, methods, replace)
    metric_list = parse_list(metrics, "--metrics")
    check_remove(source, size, metric_list, token)
    work = Path(work_dir)
    _check_sweep_dir(work, source, size, resume, overwrite)  # reads only: the lock writes into the folder
    with work_dir_lock(work, "sweep dir"):
        return _run(work, source, size, recipes, resume, overwrite, token, progress, trust_remote_code, echo,
                    eval_cache, score_cache)


def _run(work, source, size, recipes, resume, overwrite, token, progress, trust_remote_code, echo, eval_cache,
         score_cache) -> SweepResult:
    from .run import Pipeline

    _prepare(work, source, size, recipes, resume, overwrite)
    result = SweepResult(work)
    for k, (name, recipe) in enumerate(recipes.items(), start=1):
        echo(f"== [{k}/{len(recipes)}] {name}")
        entry = work / name
        Pipeline(recipe, entry, resume=True, token=token, progress=progress, echo=lambda m: echo(f"  {m}"),
                 trust_remote_code=trust_remote_code, eval_cache=eval_cache, score_cache=score_cache).run()
    rows = collect(work, list(recipes))
    result.rows, result.pareto = rows, pareto_front(rows)
    result.table = f"![Quality against size: every entry, the Pareto front joined]({PARETO_SVG})\n\n" + results_table(
        rows, result.pareto)
    write_text(work / PARETO_SVG, pareto_svg(rows, result.pareto))
    write_json(work / RESULTS_JSON, {"source": source, **size.to_dict(), "rows": rows, "pareto": result.pareto})
    write_text(work / RESULTS_MD, result.table + "\n")
    return result


def _check_sweep_dir(work: Path, source: str, size: Size, resume: bool, overwrite: bool) -> None:
    """Refuse a sweep dir that is an input, someone else's folder, another sweep, or full without --resume or
    --overwrite; changes nothing."""
    local = Path(source).expanduser()
    if local.is_dir():
        check_not_input(work, {"source": local}, "sweep dir")
    existing = work / SWEEP_FILE
    if work.is_dir() and any(p.name != LOCK_FILE for p in work.iterdir()):
        if not existing.is_file() and not (work / SWEEP_MARKER).is_file():
            raise UnsafeOutputError(f"{work} is not an hfprune sweep dir; choose another --work-dir")
        if resume:
            old = json.loads(existing.read_text()) if existing.is_file() else {}
            theirs = Size(old.get("remove"), old.get("target_params")) if old else None
            if old.get("source") != source or theirs != size:
                what = theirs.tag() if theirs else "?"
                raise RecipeError(f"--resume: {work} is a sweep of {old.get('source')} ({what}), not of {source} "
                                  f"({size.tag()}); use another --work-dir")
        elif not overwrite:
            raise OutputExistsError(f"sweep dir {work} is not empty; pass --resume to continue it or --overwrite "
                                    "to start over")


def _prepare(work: Path, source: str, size: Size, recipes: dict, resume: bool, overwrite: bool) -> None:
    _check_sweep_dir(work, source, size, resume, overwrite)
    record = {"format": "hfprune-sweep", "version": 1, "source": source, **size.to_dict(), "entries": list(recipes)}
    existing = work / SWEEP_FILE
    if overwrite and not resume and work.is_dir():
        import shutil

        for p in work.iterdir():
            if p.name != LOCK_FILE:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    work.mkdir(parents=True, exist_ok=True)
    (work / SWEEP_MARKER).write_text("work dir of hfprune sweep: --overwrite may clear it\n")
    if resume and existing.is_file():
        old = json.loads(existing.read_text())
        record["entries"] = list(dict.fromkeys(old.get("entries", []) + record["entries"]))
    write_json(existing, record)


def _quality(tasks: dict) -> tuple[str, float | None]:
    accs = [m["acc"] for m in tasks.values() if "acc" in m]
    if accs:
        return "mean acc", sum(accs) / len(accs)
    ppl = [m["word_perplexity"] for m in tasks.values() if "word_perplexity" in m]
    if ppl:
        return "-mean word ppl", -sum(ppl) / len(ppl)
    return "none", None


def collect(work: Path, names: list[str]) -> list[dict]:
    """One row per model: the dense baseline (once) and each entry's final model."""
    rows = []
    for name in names:
        ev_path = work / name / "eval.json"
        if not ev_path.is_file():
            continue
        ev = json.loads(ev_path.read_text())
        if not rows:
            rows.append(_row("dense", ev["dense"], None))
        final = "recovered" if ev.get("recovered") else "pruned"
        plan = json.loads((work / name / "plan.json").read_text())
        row = _row(name, ev[final], plan)
        stages = work / name / "stages.json"
        row["stage_seconds"] = json.loads(stages.read_text()).get("seconds", {}) if stages.is_file() else {}
        rows.append(row)
    return rows


def _row(name: str, ev: dict, plan: dict | None) -> dict:
    kind, quality = _quality(ev["tasks"])
    return {"entry": name, "parameters": ev["size"]["parameters"], "layers": ev["size"]["num_layers"],
            "tokens_per_s": (ev.get("speed") or {}).get("tokens_per_s"),
            "speed_relative": (ev.get("speed") or {}).get("relative"), "tasks": ev["tasks"], "quality": quality,
            "quality_kind": kind,
            "removed": None if plan is None else {k: plan.get(k) for k in ("drop_layers", "skip_attention",
                                                                           "skip_mlp")}}


def pareto_front(rows: list[dict]) -> list[str]:
    """Entries no other entry beats on both size (fewer parameters) and quality (higher), dense included."""
    front = []
    for r in rows:
        if r["quality"] is None:
            continue
        dominated = any(o is not r and o["quality"] is not None and o["parameters"] <= r["parameters"]
                        and o["quality"] >= r["quality"]
                        and (o["parameters"] < r["parameters"] or o["quality"] > r["quality"]) for o in rows)
        if not dominated:
            front.append(r["entry"])
    return front


def pareto_svg(rows: list[dict], pareto: list[str], width: int = 640, height: int = 400) -> str:
    """Quality (y) against parameters (x) for every row, the Pareto front joined by a line, the dense model
    marked: the front at a glance."""
    from html import escape

    points = [r for r in rows if r["quality"] is not None]
    kind = next((r["quality_kind"] for r in points), "none")
    scale = 100 if kind == "mean acc" else 1
    left, right, top, bottom = 70, 20, 30, 50
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><rect width="{width}" height="{height}" fill="white"/>']
    if not points:
        return "".join(parts) + '<text x="20" y="30">no entry has a quality figure yet</text></svg>'
    xs = [r["parameters"] / 1e6 for r in points]
    ys = [r["quality"] * scale for r in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    pad_x, pad_y = (x1 - x0) * 0.08 or 1.0, (y1 - y0) * 0.1 or 1.0
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y

    def px(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    plot_w, plot_h = width - left - right, height - top - bottom
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    for k in range(5):  # ticks
        xv, yv = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        parts.append(f'<text x="{px(xv):.0f}" y="{height - bottom + 15}" text-anchor="middle">{xv:.0f}</text>')
        parts.append(f'<text x="{left - 6}" y="{py(yv) + 4:.0f}" text-anchor="end">{yv:.3g}</text>')
    y_label = "mean accuracy (%)" if kind == "mean acc" else "- mean word perplexity"
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 12}" text-anchor="middle">parameters (M)</text>')
    parts.append(f'<text x="14" y="{top + plot_h / 2:.0f}" transform="rotate(-90 14 {top + plot_h / 2:.0f})" '
                 f'text-anchor="middle">{y_label}</text>')
    front = sorted((r for r in points if r["entry"] in pareto), key=lambda r: r["parameters"])
    if len(front) > 1:
        path = " ".join(f"{px(r['parameters'] / 1e6):.1f},{py(r['quality'] * scale):.1f}" for r in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#2a7" stroke-width="2"/>')
    for r in points:
        x, y = px(r["parameters"] / 1e6), py(r["quality"] * scale)
        on_front = r["entry"] in pareto
        if r["entry"] == "dense":
            parts.append(f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="#333"/>')
        else:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{"#2a7" if on_front else "#bbb"}" '
                         f'stroke="#555"/>')
        parts.append(f'<text x="{x + 7:.1f}" y="{y - 6:.1f}">{escape(r["entry"])}</text>')
    parts.append(f'<text x="{left}" y="18">quality against size; green: the Pareto front, square: the dense '
                 'model</text></svg>')
    return "".join(parts)


def results_table(rows: list[dict], pareto: list[str]) -> str:
    """Markdown: one row per model, every task's primary metric, size, speed, Pareto membership."""
    columns = []
    for r in rows:
        for task, metrics in r["tasks"].items():
            for metric in metrics:
                if not metric.endswith("_stderr") and (task, metric) not in columns:
                    columns.append((task, metric))
    head = ["entry", "params", "layers"] + [f"{t} {m}" for t, m in columns] + ["quality", "decode x dense", "Pareto"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["entry"], f"{r['parameters'] / 1e6:.2f}M", str(r["layers"])]
        for task, metric in columns:
            v = r["tasks"].get(task, {}).get(metric)
            cells.append("n/a" if v is None else f"{100 * v:.2f}" if metric.startswith("acc") else f"{v:.4g}")
        q = r["quality"]
        cells.append("n/a" if q is None else f"{100 * q:.2f}" if r["quality_kind"] == "mean acc" else f"{q:.4g}")
        cells.append("n/a" if r.get("speed_relative") is None else f"{r['speed_relative']:.2f}")
        cells.append("yes" if r["entry"] in pareto else "")
        lines.append("| " + " | ".join(cells) + " |")
    kind = next((r["quality_kind"] for r in rows if r["quality"] is not None), "none")
    lines.append("")
    lines.append(f"quality: {kind} over the tasks (accuracies in %); Pareto: no other model is both smaller and "
                 "better. decode x dense: greedy decode speed relative to the dense model, both timed in one process.")
    return "\n".join(lines)


def from_sweep(sweep_dir: str | Path, entry: str) -> tuple[Recipe, Path, str, str | None]:
    """(recipe, entry work dir, results table, Pareto SVG) of one entry of a finished sweep, for
    `push --from-sweep`."""
    work = Path(sweep_dir)
    record = work / SWEEP_FILE
    if not record.is_file():
        raise RecipeError(f"{work} is not an hfprune sweep dir (no {SWEEP_FILE})")
    entries = json.loads(record.read_text()).get("entries", [])
    if entry not in entries:
        raise RecipeError(f"--entry {entry!r} is not in the sweep {work}; entries: {', '.join(entries)}")
    entry_dir = work / entry
    if not (entry_dir / "eval.json").is_file() or not (work / RESULTS_MD).is_file():
        raise RecipeError(f"entry {entry} of {work} has not finished; run the sweep again with --resume")
    recipe = Recipe.load(entry_dir / "recipe.yaml")
    svg = (work / PARETO_SVG).read_text() if (work / PARETO_SVG).is_file() else None
    return recipe, entry_dir, (work / RESULTS_MD).read_text(), svg

"""`hfprune score`: load what a metric needs, score, choose what to remove, write scores.json and plan.json.

Results are cached in a work dir under a key of every input (source identity, metric, data hash, sizes, seed),
so rerunning with the same inputs is instant.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, cache_root
from ..datasets_io import check_local_data
from ..disk.checkpoint import Checkpoint
from ..errors import DataError, PlanError
from ..hub import Source, resolve_source
from ..plan import Plan
from ..settings import WIKITEXT2, ScoreOptions
from ..workdir import write_json
from .calibration import Calibration, load_texts
from .drivers import open_driver
from .metrics import (
    DISTANCES,
    ScoreInputs,
    angular_distances,
    finercut,
    get_metric,
    lowest,
)

SCORES_FORMAT = "hfprune-scores"
DEFAULT_CACHE = cache_root() / "scores"


@dataclass
class ScoreResult:
    plan: Plan
    scores: dict
    cached: bool


def score(source: str | Path | Source, options: ScoreOptions, *, plan_path: str | Path | None = None,
          scores_path: str | Path | None = None, cache_dir: str | Path | None = DEFAULT_CACHE,
          progress: bool = False, token: str | None = None, naive: bool = False) -> ScoreResult:
    """Score `source` with `options.metric`, pick `options.remove` layers (or sub-blocks), write the outputs."""
    metric = get_metric(options.metric)
    if options.distance not in DISTANCES:
        raise PlanError(f"unknown distance {options.distance!r}; choose one of {', '.join(DISTANCES)}")
    data = options.data
    if data is not None:
        check_local_data(data)
    if metric.needs_data and data is None:
        if options.metric != "ppl":
            raise DataError(f"metric {options.metric} needs calibration data: give --data FILE (.txt/.json/.jsonl) "
                            f"or a Hub dataset id such as {WIKITEXT2}")
        data = WIKITEXT2
    if options.iterative_step is not None and (options.iterative_step < 1 or metric.kind != "layer"):
        raise PlanError("--iterative-step needs a positive step and a layer metric (not angular or finercut)")
    for path in (plan_path, scores_path):
        if path is not None and Path(path).is_dir():
            raise PlanError(f"{path} is a folder; give a file name for the output")

    src = source if isinstance(source, Source) else resolve_source(str(source), token=token)
    ckpt = Checkpoint.open(src.path)
    _check_remove(options, ckpt.num_layers, metric.kind)
    key = _cache_key(src, options, data, naive)
    cache_file = Path(cache_dir) / f"{key}.json" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        record = json.loads(cache_file.read_text())
        hit = True
    else:
        record = _run(src, ckpt, options, data, progress, naive)
        hit = False
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache_file, record)
    plan = Plan.from_dict(record["plan"])
    if scores_path is not None:
        write_json(Path(scores_path), record)
    if plan_path is not None:
        write_json(Path(plan_path), plan.to_dict())
    return ScoreResult(plan, record, hit)


def _check_remove(options: ScoreOptions, num_layers: int, kind: str) -> None:
    if options.remove is None:
        return  # a size target: checked against the parameter counts when scoring
    limit = 2 * num_layers if kind == "sub-block" else num_layers
    unit = "sub-blocks" if kind == "sub-block" else "layers"
    if options.remove < 1 or options.remove >= limit:
        raise PlanError(f"--remove {options.remove}: this model has {limit} {unit}; remove between 1 and {limit - 1}")


def _run(src: Source, ckpt: Checkpoint, options: ScoreOptions, data: str | None, progress: bool, naive: bool) -> dict:
    metric = get_metric(options.metric)
    n = ckpt.num_layers
    calib: Calibration | None = None
    inputs = ScoreInputs(num_layers=n, checkpoint=ckpt, seed=options.seed, progress=progress)
    streamed = False
    if metric.needs_model:
        texts = load_texts(data)  # bad data fails before the model is loaded
        inputs.driver, calib, streamed = open_driver(
            src.path, ckpt, options, data, texts, samples=options.samples, seq_len=options.seq_len,
            seed=options.seed, needs_logits=options.metric in ("ppl", "finercut", "taylor"), progress=progress,
            naive=naive)
    record: dict = {"format": SCORES_FORMAT, "version": 1, "hfprune_version": __version__,
                    "metric": options.metric, "source": src.provenance(),
                    "num_layers": n, "remove": options.remove,
                    "data": calib.describe() if calib else None,
                    "mode": "iterative" if options.iterative_step else "one-shot",
                    "layer_by_layer": streamed}
    target = _Target(ckpt, options.target_params) if options.target_params is not None else None
    choose = {"layer": _choose_layers, "block": _choose_block, "sub-block": _choose_sub_blocks}[metric.kind]
    plan = choose(metric, inputs, options, target, record)
    if target is not None:
        record["remove"] = len(plan.drop_layers) if metric.kind != "sub-block" else len(record["steps"])
        record["target_params"] = options.target_params
        record["params"] = {"source": target.sizes.total, "removed": target.sizes.removed(
            plan.drop_layers, plan.skip_attention, plan.skip_mlp), "needed": target.need}
    record["plan"] = plan.to_dict()
    return record


def _choose_layers(metric, inputs: ScoreInputs, options: ScoreOptions, target: "_Target | None", record: dict) -> Plan:
    """Score, take the lowest layers (all at once, or `iterative_step` at a time, rescoring in between)."""
    removed: list[int] = []
    rounds = []
    while not _enough(removed, options, target):
        inputs.removed = tuple(removed)
        scores = metric.score(inputs)
        if target is None:
            step = options.iterative_step or options.remove
            chosen = lowest(scores, min(step, options.remove - len(removed)))
        else:
            chosen = target.layers(scores, removed)[:options.iterative_step or None]
        rounds.append({"scores": scores, "removed": sorted(chosen)})
        removed += chosen
    record["rounds"] = rounds
    record["scores"] = rounds[0]["scores"]
    if options.iterative_step:
        record["iterative_step"] = options.iterative_step
    return Plan.build(inputs.num_layers, drop_layers=sorted(removed), metric=options.metric)


def _choose_block(metric, inputs: ScoreInputs, options: ScoreOptions, target: "_Target | None", record: dict) -> Plan:
    """The contiguous block of the needed length with the smallest angular distance."""
    block = options.remove if target is None else target.block_size()
    distances = angular_distances(inputs, block)
    start = min((d, i) for i, d in enumerate(distances) if d is not None)[1]
    record["scores"] = distances
    record["block_start"] = start
    return Plan.build(inputs.num_layers, drop_layers=list(range(start, start + block)), metric=options.metric)


def _choose_sub_blocks(metric, inputs: ScoreInputs, options: ScoreOptions, target: "_Target | None",
                       record: dict) -> Plan:
    """FinerCut's greedy steps, `remove` of them or until the size target is met."""
    if target is None:
        steps = finercut(inputs, options.remove, options.distance)
    else:
        steps = finercut(inputs, target.sub_blocks_estimate(), options.distance, stop=target.met_by)
        attn_, mlp_ = ({s["removed"]["layer"] for s in steps if s["removed"]["block"] == b}
                       for b in ("attention", "mlp"))
        if not target.met_by(attn_, mlp_):
            raise PlanError(f"--target-params {options.target_params:g}: finercut's candidate sub-blocks free "
                            f"fewer than the {target.need:,} parameters needed; give a larger target")
    record["distance"] = options.distance
    record["steps"] = steps
    attn = [s["removed"]["layer"] for s in steps if s["removed"]["block"] == "attention"]
    mlp = [s["removed"]["layer"] for s in steps if s["removed"]["block"] == "mlp"]
    return Plan.build(inputs.num_layers, skip_attention=attn, skip_mlp=mlp, metric=options.metric)


class _Target:
    """A size target: how many parameters must go, and which layers / sub-blocks take it there."""

    def __init__(self, ckpt: Checkpoint, target: float):
        from ..sizing import params_to_remove, sizes

        self.sizes = sizes(ckpt)
        self.need = params_to_remove(target, self.sizes.total)

    def layers(self, scores: list, removed: list[int]) -> list[int]:
        """The lowest-scored layers (ties: the later first) until the target is met."""
        from ..sizing import layers_for

        ranked = [-i for _, i in sorted((s, -i) for i, s in enumerate(scores) if s is not None)]
        return layers_for(self.need - self.sizes.removed(removed), self.sizes.layer, ranked)

    def block_size(self) -> int:
        from ..sizing import block_size_for

        size = block_size_for(self.need, self.sizes.layer)
        if size >= len(self.sizes.layer):
            raise PlanError(f"--target-params: a block of {size} of {len(self.sizes.layer)} layers would be needed; "
                            "angular keeps the last layer")
        return size

    def sub_blocks_estimate(self) -> int:
        mean = (sum(self.sizes.attention) + sum(self.sizes.mlp)) / (2 * len(self.sizes.layer))
        return min(max(1, math.ceil(self.need / mean)), 2 * len(self.sizes.layer) - 1)

    def met_by(self, attn: set[int], mlp: set[int]) -> bool:
        both = attn & mlp
        return self.sizes.removed(both, attn - both, mlp - both) >= self.need


def _enough(removed: list[int], options: ScoreOptions, target: "_Target | None") -> bool:
    if target is None:
        return len(removed) >= options.remove
    return target.sizes.removed(removed) >= target.need


def _cache_key(src: Source, options: ScoreOptions, data: str | None, naive: bool) -> str:
    data_id = None
    if data is not None:
        p = Path(data).expanduser()
        data_id = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else data
    # how the scores are computed (in memory or layer by layer) does not change them, so it is not part of the key
    blob = json.dumps({"v": __version__, "source": src.identity(), "options": options.model_dump(exclude={"stream"}),
                       "data": data_id,
                       "naive": naive}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]

"""`hfprune score`: load what a metric needs, score, choose what to remove, write scores.json and plan.json.

Results are cached in a work dir under a key of every input (source identity, metric, data hash, sizes, seed),
so rerunning with the same inputs is instant.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, cache_root
from ..datasets_io import check_local_data
from ..disk.checkpoint import Checkpoint
from ..disk.remote_code import load_model, load_tokenizer
from ..errors import DataError, PlanError
from ..hub import Source, resolve_source
from ..plan import Plan
from ..settings import ScoreOptions
from ..workdir import write_json
from .calibration import WIKITEXT2, Calibration, load_calibration, load_texts
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
        streamed = _should_stream(options, ckpt, progress)
        if streamed:
            from .streamed_model import StreamedModel
            from .streaming import StreamingDriver, default_budget

            tokenizer = _load_tokenizer(src.path, options)
            calib = load_calibration(data, tokenizer, samples=options.samples, seq_len=options.seq_len,
                                     seed=options.seed, texts=texts)
            model = StreamedModel(src.path, ckpt, options.dtype, options.trust_remote_code, _stream_device(),
                                  needs_logits=options.metric in ("ppl", "finercut", "taylor"))
            batches = model.prepare(list(calib.input_ids.split(options.batch_size)))
            inputs.driver = StreamingDriver(model, batches, default_budget(), progress=progress)
        else:
            from .forward import LayerStack
            from .in_memory import InMemoryDriver

            model, tokenizer = _load_model(src.path, options)
            calib = load_calibration(data, tokenizer, samples=options.samples, seq_len=options.seq_len,
                                     seed=options.seed, texts=texts)
            device = next(model.parameters()).device
            ids = calib.input_ids.to(device)
            inputs.driver = InMemoryDriver(LayerStack(model, ckpt.arch), list(ids.split(options.batch_size)),
                                           cached=not naive, progress=progress)
    record: dict = {"format": SCORES_FORMAT, "version": 1, "hfprune_version": __version__,
                    "metric": options.metric, "source": src.provenance(),
                    "num_layers": n, "remove": options.remove,
                    "data": calib.describe() if calib else None,
                    "mode": "iterative" if options.iterative_step else "one-shot",
                    "layer_by_layer": streamed}
    target = _Target(ckpt, options.target_params) if options.target_params is not None else None
    if metric.kind == "layer":
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
        plan = Plan.build(n, drop_layers=sorted(removed), metric=options.metric)
    elif metric.kind == "block":
        block = options.remove if target is None else target.block_size()
        distances = angular_distances(inputs, block)
        start = min((d, i) for i, d in enumerate(distances) if d is not None)[1]
        record["scores"] = distances
        record["block_start"] = start
        plan = Plan.build(n, drop_layers=list(range(start, start + block)), metric=options.metric)
    else:
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
        plan = Plan.build(n, skip_attention=attn, skip_mlp=mlp, metric=options.metric)
    if target is not None:
        record["remove"] = len(plan.drop_layers) if metric.kind != "sub-block" else len(record["steps"])
        record["target_params"] = options.target_params
        record["params"] = {"source": target.sizes.total, "removed": target.sizes.removed(
            plan.drop_layers, plan.skip_attention, plan.skip_mlp), "needed": target.need}
    record["plan"] = plan.to_dict()
    return record


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


def _check_dtype(options: ScoreOptions) -> None:
    if options.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise PlanError(f"--dtype {options.dtype}: choose float32, bfloat16, float16 or auto")


def _should_stream(options: ScoreOptions, ckpt: Checkpoint, progress: bool) -> bool:
    """--stream on/off as given; auto streams when the whole model would not fit in the memory left."""
    from .streamed_model import available_memory, in_memory_bytes
    from .streaming import STREAMED_METRICS

    _check_dtype(options)
    if options.stream == "off":
        return False
    if options.stream == "on":
        if options.metric not in STREAMED_METRICS:
            raise PlanError(f"--stream on scores {', '.join(STREAMED_METRICS)} layer by layer; {options.metric} needs "
                            "the whole model in memory (--stream off)")
        if options.device_map:
            raise PlanError("--stream on and --device-map exclude each other: give one")
        return True
    if options.device_map or options.metric not in STREAMED_METRICS:
        return False
    size = {"float32": 4, "bfloat16": 2, "float16": 2}.get(options.dtype)
    need, free = in_memory_bytes(ckpt, size), available_memory()
    if need <= free:
        return False
    if progress:
        print(f"the model needs ~{need / 2**30:.1f} GiB in memory and {free / 2**30:.1f} GiB is free: scoring it "
              "layer by layer (--stream off to load it whole)", file=sys.stderr)
    return True


def _stream_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_tokenizer(path: Path, options: ScoreOptions):
    try:
        return load_tokenizer(path, options.trust_remote_code)
    except (OSError, ValueError):
        raise DataError(f"{path} has no tokenizer; data-driven metrics need the checkpoint's tokenizer") from None


def _load_model(path: Path, options: ScoreOptions):
    import torch

    _check_dtype(options)
    dtype = "auto" if options.dtype == "auto" else getattr(torch, options.dtype)
    kwargs = {"dtype": dtype}
    if options.device_map:
        kwargs["device_map"] = options.device_map
    model = load_model(path, options.trust_remote_code, **kwargs).eval()
    return model, _load_tokenizer(path, options)


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

"""Layer-importance metrics of the seed papers, keyed by their CLI/recipe names.

Layer metrics return one score per layer (None for a layer already removed); the lowest scores go. `angular`
scores contiguous blocks and `finercut` runs its own greedy search over attention and FFN sub-blocks. The two
recomputation-heavy metrics (`ppl`, `finercut`) replay the cached residual stream from the removed block onward;
`cached=False` recomputes everything and must choose the same blocks.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

from ..errors import PlanError


@dataclass
class ScoreInputs:
    """What a metric may use. `stack`/`batches` are None for metrics that need no model or data."""

    num_layers: int
    stack: object = None  # forward.LayerStack
    batches: list = field(default_factory=list)  # list of LongTensor [b, T]
    checkpoint: object = None  # checkpoint.Checkpoint
    removed: tuple[int, ...] = ()
    seed: int = 0
    cached: bool = True
    progress: bool = False
    streamed: object = None  # Streamed: layer-by-layer scoring of a model that stays on disk

    def stream_bar(self, desc: str):
        return lambda iterable: self.bar(iterable, f"{desc} (layer by layer)")

    def candidates(self) -> list[int]:
        return [i for i in range(self.num_layers) if i not in self.removed]

    def bar(self, iterable, desc: str, total: int | None = None):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, disable=not self.progress, leave=False)


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    needs_model: bool
    needs_data: bool
    kind: str  # "layer", "block" or "sub-block"
    score: Callable | None = None


# ---------------------------------------------------------------- layer metrics without a model

def _reverse_order(inp: ScoreInputs):
    return [None if i in inp.removed else float(inp.num_layers - 1 - i) for i in range(inp.num_layers)]


def _random(inp: ScoreInputs):
    rng = random.Random(inp.seed)
    values = [rng.random() for _ in range(inp.num_layers)]
    return [None if i in inp.removed else v for i, v in enumerate(values)]


def _magnitude(p: int):
    def score(inp: ScoreInputs):
        """Sum over a layer's weight matrices of their entrywise p-norm, read tensor by tensor from disk."""
        import torch
        from safetensors import safe_open

        ckpt = inp.checkpoint
        totals = [0.0] * inp.num_layers
        for f in inp.bar(ckpt.files, f"magnitude-l{p}"):
            with safe_open(str(f.path), "pt") as handle:
                for name, info in f.tensors.items():
                    loc = ckpt.layer_of(name)
                    if loc is None or loc[0] >= inp.num_layers or len(info.shape) < 2:
                        continue  # not a layer, a multi-token-prediction layer, or a norm
                    t = handle.get_tensor(name).to(torch.float64)
                    totals[loc[0]] += float(torch.linalg.vector_norm(t, ord=p))
        return [None if i in inp.removed else v for i, v in enumerate(totals)]

    return score


# ---------------------------------------------------------------- layer metrics on calibration data

def _nll_sum(logits, ids):
    import torch.nn.functional as F

    return float(F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="sum"))


def _ppl(inp: ScoreInputs):
    """Perplexity with each single layer removed (on top of layers already removed)."""
    import torch

    if inp.streamed is not None:
        from . import streaming

        s = inp.streamed
        return streaming.ppl(s.model, s.batches, inp.removed, s.budget, bar=inp.stream_bar("ppl"))
    stack, removed = inp.stack, set(inp.removed)
    nll = {i: 0.0 for i in inp.candidates()}
    tokens = 0
    with torch.no_grad():
        for ids in inp.batches:
            tokens += ids[:, 1:].numel()
            states = stack.capture(ids, drop=removed)[1] if inp.cached else None
            for i in inp.bar(inp.candidates(), "ppl"):
                if inp.cached:
                    logits = stack.logits(ids, drop=removed, replay_from=i + 1, hidden_in=states[i])
                else:
                    logits = stack.logits(ids, drop=removed | {i})
                nll[i] += _nll_sum(logits, ids)
    return [None if i in removed else math.exp(nll[i] / tokens) for i in range(inp.num_layers)]


def _cos_per_token(a, b):
    import torch.nn.functional as F

    return F.cosine_similarity(a.float(), b.float(), dim=-1, eps=1e-8)


def _block_influence(inp: ScoreInputs):
    """ShortGPT's BI: 1 - mean cosine(layer input, layer output) over tokens, from one forward per batch."""
    import torch

    if inp.streamed is not None:
        from . import streaming

        s = inp.streamed
        return streaming.block_influence(s.model, s.batches, inp.removed, bar=inp.stream_bar("block-influence"))
    sums = [0.0] * inp.num_layers
    count = 0
    with torch.no_grad():
        for ids in inp.bar(inp.batches, "block-influence"):
            _, states, _ = inp.stack.capture(ids, drop=set(inp.removed))
            count += ids.numel()
            for i in range(inp.num_layers):
                sums[i] += float(_cos_per_token(states[i], states[i + 1]).sum())
    return [None if i in inp.removed else 1.0 - sums[i] / count for i in range(inp.num_layers)]


def _taylor(inp: ScoreInputs):
    """Sum over a layer's weights of |dL/dW * W| for the LM loss on the calibration data."""
    import torch

    if inp.streamed is not None:
        from . import streaming

        s = inp.streamed
        return streaming.taylor(s.model, s.batches, inp.removed, bar=inp.stream_bar("taylor"))
    model = inp.stack.model
    model.zero_grad(set_to_none=True)
    for ids in inp.bar(inp.batches, "taylor"):
        with inp.stack.bypassed(drop=set(inp.removed)):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        (loss * ids.shape[0] / sum(b.shape[0] for b in inp.batches)).backward()
    scores = []
    with torch.no_grad():
        for i, layer in enumerate(inp.stack.layers):
            if i in inp.removed:
                scores.append(None)
                continue
            scores.append(sum(float((p.grad.float() * p.float()).abs().sum())
                              for p in layer.parameters() if p.grad is not None))
    model.zero_grad(set_to_none=True)
    return scores


# ---------------------------------------------------------------- block and sub-block searches

def angular_distances(inp: ScoreInputs, block: int) -> list[float | None]:
    """Gromov et al.: d(l, n) = arccos(cos(h_l, h_{l+n})) / pi at the last token, averaged over samples.

    Entry l is the distance for removing layers [l, l+n); blocks that would include the final layer are None.
    """
    import torch

    n = inp.num_layers
    if block < 1 or block > n - 1:
        raise PlanError(f"angular: block size {block} must be between 1 and {n - 1} (the final layer is kept)")
    if inp.streamed is not None:
        from . import streaming

        s = inp.streamed
        return streaming.angular_distances(s.model, s.batches, block, bar=inp.stream_bar("angular"))
    sums = [0.0] * n
    count = 0
    with torch.no_grad():
        for ids in inp.bar(inp.batches, "angular"):
            _, states, _ = inp.stack.capture(ids)
            count += ids.shape[0]
            for layer in range(n - block):
                cos = _cos_per_token(states[layer][:, -1], states[layer + block][:, -1]).clamp(-1.0, 1.0)
                sums[layer] += float((torch.arccos(cos) / math.pi).sum())
    return [sums[i] / count if i + block <= n - 1 else None for i in range(n)]


DISTANCES = ("js", "angular", "euclidean")


def _distance(kind: str, ref_logits, logits) -> float:
    """Mean over tokens of the distance between two next-token distributions (or their logits)."""
    import torch
    import torch.nn.functional as F

    a, b = ref_logits.float(), logits.float()
    if kind == "js":
        lp, lq = F.log_softmax(a, -1), F.log_softmax(b, -1)
        lm = torch.logsumexp(torch.stack([lp, lq]), 0) - math.log(2.0)
        js = 0.5 * (lp.exp() * (lp - lm)).sum(-1) + 0.5 * (lq.exp() * (lq - lm)).sum(-1)
        return float(js.mean())
    if kind == "angular":
        return float((torch.arccos(_cos_per_token(a, b).clamp(-1.0, 1.0)) / math.pi).mean())
    if kind == "euclidean":
        return float((a - b).norm(dim=-1).mean())
    raise PlanError(f"unknown distance {kind!r}; choose one of {', '.join(DISTANCES)}")


def finercut_candidate_layers(num_layers: int, remove: int) -> list[int]:
    """FinerCut limits candidates to the last 60% of layers when at most 40% of the sub-blocks go."""
    if remove <= 0.4 * 2 * num_layers:
        return list(range(num_layers - int(round(0.6 * num_layers)), num_layers))
    return list(range(num_layers))


def finercut_plan_blocks(arch, n: int, remove: int) -> tuple[tuple[str, ...], list[int]]:
    """The sub-block kinds FinerCut may remove on this architecture and the layers it searches."""
    if arch is not None and arch.no_skips:
        raise PlanError(f"finercut removes sub-blocks, which this model cannot lose ({arch.no_skips}); "
                        "use a layer metric")
    # architectures whose attention cannot be skipped exactly (hybrid mixers) offer their FFNs only
    blocks = ("mlp",) if arch is not None and arch.no_attention_skip else ("attention", "mlp")
    per_layer = len(blocks)
    if remove < 1 or remove >= per_layer * n:
        raise PlanError(f"finercut: --remove {remove} sub-blocks must be between 1 and {per_layer * n - 1} "
                        f"(the model has {per_layer * n} removable sub-blocks)")
    allowed = finercut_candidate_layers(n, remove) if per_layer == 2 else list(range(n))
    if remove > per_layer * len(allowed):
        raise PlanError(f"finercut: only {per_layer * len(allowed)} candidate sub-blocks for --remove {remove}")
    return blocks, allowed


def finercut(inp: ScoreInputs, remove: int, distance: str = "js", stop=None) -> list[dict]:
    """Greedy removal of `remove` sub-blocks (or, with `stop(attn, mlp)`, until it says so; `remove` then only
    sets the candidate layers); returns one record per step with every candidate's distance."""
    import torch

    n = inp.num_layers
    stack = inp.stack
    if inp.streamed is not None:
        from . import streaming

        st = inp.streamed
        return streaming.finercut(st.model, st.batches, remove, distance, st.budget, bar=inp.stream_bar("finercut"),
                                  step_bar=lambda it: inp.bar(it, "finercut steps", total=remove), stop=stop)
    blocks, allowed = finercut_plan_blocks(stack.arch if stack is not None else None, n, remove)
    attn: set[int] = set()
    mlp: set[int] = set()
    steps = []
    with torch.no_grad():
        refs = [stack.logits(ids) for ids in inp.batches]
        for _ in inp.bar(finercut_steps(remove, stop, attn, mlp), "finercut", total=remove):
            candidates = [(k, b) for k in allowed for b in blocks
                          if k not in (attn if b == "attention" else mlp)]
            if not candidates:
                break
            totals = {c: 0.0 for c in candidates}
            for ids, ref in zip(inp.batches, refs):
                if inp.cached:
                    _, states, mids = stack.capture(ids, mid=True, **_bypass(attn, mlp))
                for k, b in candidates:
                    if not inp.cached:
                        trial_attn, trial_mlp = attn | ({k} if b == "attention" else set()), mlp | ({k} if b == "mlp" else set())
                        logits = stack.logits(ids, **_bypass(trial_attn, trial_mlp))
                    elif b == "mlp" and stack.arch.parallel:  # no residual between the two: rerun layer k
                        logits = stack.logits(ids, **_bypass(attn, mlp | {k}), replay_from=k, hidden_in=states[k])
                    elif b == "mlp":  # layer k's output becomes its post-attention residual
                        logits = stack.logits(ids, **_bypass(attn, mlp), replay_from=k + 1, hidden_in=mids[k])
                    else:  # layer k reruns from its input with attention removed
                        logits = stack.logits(ids, **_bypass(attn | {k}, mlp), replay_from=k, hidden_in=states[k])
                    totals[(k, b)] += _distance(distance, ref, logits) * ids.shape[0]
            total_n = sum(ids.shape[0] for ids in inp.batches)
            scored = {c: v / total_n for c, v in totals.items()}
            best = min(candidates, key=lambda c: (scored[c], -c[0], c[1]))
            (attn if best[1] == "attention" else mlp).add(best[0])
            steps.append({"removed": {"layer": best[0], "block": best[1]}, "distance": scored[best],
                          "candidates": [{"layer": k, "block": b, "distance": scored[(k, b)]} for k, b in candidates]})
    return steps


def finercut_steps(remove: int, stop, attn: set[int], mlp: set[int]):
    """Step indices: `remove` of them, or, with `stop`, until stop(attn, mlp) (the sets grow between steps)."""
    step = 0
    while (step < remove) if stop is None else not stop(attn, mlp):
        yield step
        step += 1


def _bypass(attn: set[int], mlp: set[int]) -> dict:
    both = attn & mlp
    return {"drop": both, "skip_attention": attn - both, "skip_mlp": mlp - both}


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("reverse-order", "the last N layers (no data)", False, False, "layer", _reverse_order),
    Metric("random", "N random layers, seeded (no data)", False, False, "layer", _random),
    Metric("magnitude-l1", "lowest sum of L1 norms of a layer's weight matrices", False, False, "layer", _magnitude(1)),
    Metric("magnitude-l2", "lowest sum of L2 norms of a layer's weight matrices", False, False, "layer", _magnitude(2)),
    Metric("taylor", "lowest sum of |dL/dW * W| on calibration data", True, True, "layer", _taylor),
    Metric("ppl", "smallest perplexity when the layer alone is removed", True, True, "layer", _ppl),
    Metric("block-influence", "ShortGPT: lowest 1 - cos(layer input, layer output)", True, True, "layer",
           _block_influence),
    Metric("angular", "Gromov et al.: contiguous block with the smallest angular distance", True, True, "block"),
    Metric("finercut", "FinerCut: greedy attention/FFN sub-block removal by output divergence", True, True,
           "sub-block"),
]}


def get_metric(name: str) -> Metric:
    """The metric called `name`, or a PlanError listing the valid names."""
    try:
        return METRICS[name]
    except KeyError:
        raise PlanError(f"unknown metric {name!r}; choose one of: {', '.join(METRICS)}") from None


def lowest(scores: list[float | None], k: int) -> list[int]:
    """Indices of the k lowest non-None scores (ties: the later layer first)."""
    ranked = sorted((s, -i) for i, s in enumerate(scores) if s is not None)
    return sorted(-i for _, i in ranked[:k])

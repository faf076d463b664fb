"""Layer-importance metrics of the seed papers, keyed by their CLI/recipe names: the maths, written once.

Layer metrics return one score per layer (None for a layer already removed); the lowest scores go. `angular`
scores contiguous blocks and `finercut` runs its own greedy search over attention and FFN sub-blocks. A
data-driven metric is an observer of passes over the layers (see passes.py); whichever driver runs it (the model in
memory or streamed from disk layer by layer) feeds it the same tensors, so it makes the same choice.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import PlanError
from .passes import Branch

if TYPE_CHECKING:
    from ..disk.checkpoint import Checkpoint
    from .passes import Driver


@dataclass
class ScoreInputs:
    """What a metric may use. `driver` is None for metrics that need no model or data."""

    num_layers: int
    driver: Driver | None = None
    checkpoint: Checkpoint | None = None
    removed: tuple[int, ...] = ()
    seed: int = 0
    progress: bool = False

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
    citation: str | None = None  # the paper it follows, cited by the model card


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


# ---------------------------------------------------------------- the maths

def cos_per_token(a, b):
    """Cosine similarity of two residual streams at every token position, in float32."""
    import torch.nn.functional as F

    return F.cosine_similarity(a.float(), b.float(), dim=-1, eps=1e-8)


def nll_sum(logits, ids) -> float:
    """Summed next-token negative log-likelihood of `ids` under `logits`."""
    import torch.nn.functional as F

    return float(F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="sum"))


def taylor_saliency(layer) -> float:
    """Sum over a layer's weights of |dL/dW * W| (the gradients already set)."""
    return sum(float((p.grad.float() * p.float()).abs().sum()) for p in layer.parameters() if p.grad is not None)


def _ordered_sum(values) -> float:
    total = 0.0
    for v in values:  # batch by batch, so every driver adds in the same order
        total += v
    return total


# ---------------------------------------------------------------- layer metrics on calibration data

class _CosineSums:
    """Block Influence's observer: summed cosine(layer input, layer output) over tokens, per layer."""

    def __init__(self, n: int):
        self.sums = [0.0] * n

    def on_layer(self, i, bi, x, y):
        self.sums[i] += float(cos_per_token(x, y).sum())


def _block_influence(inp: ScoreInputs):
    """ShortGPT's BI: 1 - mean cosine(layer input, layer output) over tokens, from one forward per batch."""
    drv = inp.driver
    obs = _CosineSums(inp.num_layers)
    drv.run(obs, attn=set(inp.removed), mlp=set(inp.removed), desc="block-influence")
    count = sum(ids.numel() for ids in drv.ids)
    return [None if i in inp.removed else 1.0 - obs.sums[i] / count for i in range(inp.num_layers)]


class _BranchNll:
    """ppl's observer: each branch's summed NLL, per batch."""

    def __init__(self, ids: list, layers: list[int]):
        self.ids = ids
        self.nll = {i: [0.0] * len(ids) for i in layers}

    def on_end(self, bi, reference, branches):
        for br, logits in branches:
            self.nll[br.layer][bi] = nll_sum(logits, self.ids[bi])


def _ppl(inp: ScoreInputs):
    """Perplexity with each single layer removed (on top of layers already removed)."""
    drv = inp.driver
    removed = set(inp.removed)
    obs = _BranchNll(drv.ids, inp.candidates())
    drv.run(obs, attn=removed, mlp=removed, branches=[Branch(i) for i in inp.candidates()], desc="ppl")
    tokens = sum(ids[:, 1:].numel() for ids in drv.ids)
    return [None if i in removed else math.exp(_ordered_sum(obs.nll[i]) / tokens) for i in range(inp.num_layers)]


def _taylor(inp: ScoreInputs):
    """Sum over a layer's weights of |dL/dW * W| for the LM loss on the calibration data."""
    return inp.driver.backward(set(inp.removed), taylor_saliency, desc="taylor")


# ---------------------------------------------------------------- block and sub-block searches

class _LastTokens:
    """angular's observer: the residual stream at each sequence's last token, before and after every layer."""

    def __init__(self, n: int, batches: int):
        self.last = [[None] * (n + 1) for _ in range(batches)]

    def on_layer(self, i, bi, x, y):
        # copies, so the full streams they are cut from are not all kept alive
        self.last[bi][i] = x[:, -1].clone()
        self.last[bi][i + 1] = y[:, -1].clone()


def angular_distances(inp: ScoreInputs, block: int) -> list[float | None]:
    """Gromov et al.: d(l, n) = arccos(cos(h_l, h_{l+n})) / pi at the last token, averaged over samples.

    Entry l is the distance for removing layers [l, l+n); blocks that would include the final layer are None.
    """
    import torch

    n = inp.num_layers
    if block < 1 or block > n - 1:
        raise PlanError(f"angular: block size {block} must be between 1 and {n - 1} (the final layer is kept)")
    drv = inp.driver
    obs = _LastTokens(n, len(drv.ids))
    drv.run(obs, desc="angular")
    sums = [0.0] * n
    count = 0
    for bi, last in enumerate(obs.last):
        count += drv.ids[bi].shape[0]
        for layer in range(n - block):
            cos = cos_per_token(last[layer], last[layer + block]).clamp(-1.0, 1.0)
            sums[layer] += float((torch.arccos(cos) / math.pi).sum())
    return [sums[i] / count if i + block <= n - 1 else None for i in range(n)]


DISTANCES = ("js", "angular", "euclidean")


def output_distance(kind: str, ref_logits, logits) -> float:
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
        return float((torch.arccos(cos_per_token(a, b).clamp(-1.0, 1.0)) / math.pi).mean())
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


class _Divergence:
    """finercut's observer: each branch's distance from the unpruned model's next-token distributions, per batch
    (weighted by the batch's rows)."""

    def __init__(self, kind: str, ids: list, branches: list[Branch]):
        self.kind = kind
        self.rows = [x.shape[0] for x in ids]
        self.per_batch = {br: [0.0] * len(ids) for br in branches}

    def on_end(self, bi, reference, branches):
        for br, logits in branches:
            self.per_batch[br][bi] = output_distance(self.kind, reference, logits) * self.rows[bi]

    def result(self) -> dict[Branch, float]:
        total = sum(self.rows)
        return {br: _ordered_sum(values) / total for br, values in self.per_batch.items()}


def finercut(inp: ScoreInputs, remove: int, distance: str = "js", stop=None) -> list[dict]:
    """Greedy removal of `remove` sub-blocks (or, with `stop(attn, mlp)`, until it says so; `remove` then only
    sets the candidate layers); returns one record per step with every candidate's distance."""
    drv = inp.driver
    blocks, allowed = finercut_plan_blocks(drv.arch, inp.num_layers, remove)
    attn: set[int] = set()
    mlp: set[int] = set()
    steps = []
    for _ in inp.bar(finercut_steps(remove, stop, attn, mlp), "finercut steps", total=remove):
        candidates = [Branch(k, b) for k in allowed for b in blocks if k not in (attn if b == "attention" else mlp)]
        if not candidates:
            break
        obs = _Divergence(distance, drv.ids, candidates)
        drv.run(obs, attn=attn, mlp=mlp, branches=candidates, reference=True, desc="finercut")
        scored = obs.result()
        best = min(candidates, key=lambda c: (scored[c], -c.layer, c.block))
        (attn if best.block == "attention" else mlp).add(best.layer)
        steps.append({"removed": {"layer": best.layer, "block": best.block}, "distance": scored[best],
                      "candidates": [{"layer": c.layer, "block": c.block, "distance": scored[c]} for c in candidates]})
    return steps


def finercut_steps(remove: int, stop, attn: set[int], mlp: set[int]):
    """Step indices: `remove` of them, or, with `stop`, until stop(attn, mlp) (the sets grow between steps)."""
    step = 0
    while (step < remove) if stop is None else not stop(attn, mlp):
        yield step
        step += 1


SEED_PAPER = "Reassessing Layer Pruning in LLMs: New Insights and Methods (Lu et al., 2024), arXiv:2411.15558"
FINERCUT = ("FinerCut: Finer-grained Interpretable Layer Pruning for Large Language Models (Zhang et al., 2024), "
            "arXiv:2405.18218")

METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("reverse-order", "the last N layers (no data)", False, False, "layer", _reverse_order, SEED_PAPER),
    Metric("random", "N random layers, seeded (no data)", False, False, "layer", _random),
    Metric("magnitude-l1", "lowest sum of L1 norms of a layer's weight matrices", False, False, "layer", _magnitude(1)),
    Metric("magnitude-l2", "lowest sum of L2 norms of a layer's weight matrices", False, False, "layer", _magnitude(2)),
    Metric("taylor", "lowest sum of |dL/dW * W| on calibration data", True, True, "layer", _taylor,
           "LLM-Pruner: On the Structural Pruning of Large Language Models (Ma et al., 2023), arXiv:2305.11627"),
    Metric("ppl", "smallest perplexity when the layer alone is removed", True, True, "layer", _ppl),
    Metric("block-influence", "ShortGPT: lowest 1 - cos(layer input, layer output)", True, True, "layer",
           _block_influence, "ShortGPT: Layers in Large Language Models are More Redundant Than You Expect (Men et "
                             "al., 2024), arXiv:2403.03853"),
    Metric("angular", "Gromov et al.: contiguous block with the smallest angular distance", True, True, "block",
           citation="The Unreasonable Ineffectiveness of the Deeper Layers (Gromov et al., 2024), arXiv:2403.17887"),
    Metric("finercut", "FinerCut: greedy attention/FFN sub-block removal by output divergence", True, True,
           "sub-block", citation=FINERCUT),
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

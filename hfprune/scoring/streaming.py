"""Layer-streaming scoring: a model larger than memory is scored one decoder layer at a time.

The model (streamed_model.StreamedModel) is built with its decoder layers' parameters on the meta device; one
capture forward per calibration batch records what the model's own loop passes to each layer (attention masks,
position embeddings: per layer, so sliding-window and local/global RoPE layers get theirs). Then, layer-major: layer i's tensors are read from the safetensors files with plain reads (no mmap, so an
address-space cap holds), every batch's residual stream goes through it, the metric records what it needs, and
the layer is freed. The final norm, head and soft-capping run through the model's own forward with every layer
replaying the stream's end. Peak memory: one layer + the residual streams + embeddings/head, whatever the depth.

Metrics that need the output with a block removed (ppl, finercut) carry one extra stream per candidate; when those
streams do not fit in the stream budget the candidates are split into groups, one pass over the layers each.
Taylor keeps every layer's input from one forward pass, then backpropagates layer by layer from the head down.
Every layer sees exactly the inputs it sees in the in-memory path, so scores, and the choice, are the same.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

from ..errors import PlanError
from .streamed_model import StreamBatch, StreamedModel, available_memory

STREAMED_METRICS = ("block-influence", "angular", "ppl", "finercut", "taylor")


@dataclass
class Streamed:
    """What a metric gets instead of a loaded model when scoring layer by layer."""

    model: StreamedModel
    batches: list[StreamBatch]
    budget: int  # bytes for residual streams


# ---------------------------------------------------------------- passes over the layers

@dataclass(frozen=True)
class Branch:
    """A stream that follows the main one until `layer`, where it loses `block` (layer, attention or mlp)."""

    layer: int
    block: str = "layer"


def stream_bytes(batches: list[StreamBatch]) -> int:
    return sum(b.embedded.numel() * b.embedded.element_size() for b in batches)


def groups(branches: list[Branch], per_pass: int) -> list[list[Branch]]:
    per_pass = max(1, per_pass)
    return [branches[i:i + per_pass] for i in range(0, len(branches), per_pass)] or [[]]


def layer_pass(sm: StreamedModel, batches: list[StreamBatch], *, attn: set[int] = frozenset(),
               mlp: set[int] = frozenset(), branches: list[Branch] = (), reference: bool = False,
               on_layer=None, on_end=None, bar=None):
    """One pass over the layers. The main stream runs with `attn`/`mlp` sub-blocks removed (both: the layer goes);
    each branch also loses its own block; `reference` adds a stream of the unpruned model. on_layer(i, b, x, y)
    sees the main stream around layer i; on_end(b, main, {branch: stream}, reference) sees the ends."""
    import torch

    n = len(sm.layers)
    main = [b.embedded for b in batches]
    ref = list(main) if reference else None
    side: dict[Branch, list] = {}
    layers = range(n) if bar is None else bar(range(n))
    with torch.no_grad():
        for i in layers:
            needed = reference or not (i in attn and i in mlp)  # a removed layer is read only for the reference
            with (sm.layer(i) if needed else contextlib.nullcontext()) as layer:
                for bi, batch in enumerate(batches):
                    x = main[bi]
                    for br in branches:
                        if br.layer == i:
                            a = i in attn or br.block in ("layer", "attention")
                            m = i in mlp or br.block in ("layer", "mlp")
                            side.setdefault(br, [None] * len(batches))[bi] = sm.run(layer, i, batch, x, a, m)
                        elif br.layer < i:
                            side[br][bi] = sm.run(layer, i, batch, side[br][bi], i in attn, i in mlp)
                    if reference:
                        ref[bi] = sm.run(layer, i, batch, ref[bi])
                    y = sm.run(layer, i, batch, x, i in attn, i in mlp)
                    if on_layer is not None:
                        on_layer(i, bi, x, y)
                    main[bi] = y
    if on_end is not None:
        with torch.no_grad():
            for bi in range(len(batches)):
                on_end(bi, main[bi], {br: s[bi] for br, s in side.items()}, ref[bi] if reference else None)


# ---------------------------------------------------------------- the metrics, streamed

def _per_pass(sm, batches, budget: int, extra: int = 0) -> int:
    one = max(1, stream_bytes(batches))
    return max(1, budget // one - extra)


def block_influence(sm: StreamedModel, batches: list[StreamBatch], removed: tuple[int, ...], bar=None):
    from .metrics import _cos_per_token

    n = len(sm.layers)
    sums = [0.0] * n
    count = sum(b.ids.numel() for b in batches)

    def on_layer(i, bi, x, y):
        sums[i] += float(_cos_per_token(x, y).sum())

    drop = set(removed)
    layer_pass(sm, batches, attn=drop, mlp=drop, on_layer=on_layer, bar=bar)
    return [None if i in removed else 1.0 - sums[i] / count for i in range(n)]


def angular_distances(sm: StreamedModel, batches: list[StreamBatch], block: int, bar=None):
    import torch

    from .metrics import _cos_per_token

    n = len(sm.layers)
    if block < 1 or block > n - 1:
        raise PlanError(f"angular: block size {block} must be between 1 and {n - 1} (the final layer is kept)")
    last = [[None] * (n + 1) for _ in batches]

    def on_layer(i, bi, x, y):
        last[bi][i] = x[:, -1]
        last[bi][i + 1] = y[:, -1]

    layer_pass(sm, batches, on_layer=on_layer, bar=bar)
    sums = [0.0] * n
    count = 0
    for bi, batch in enumerate(batches):
        count += batch.ids.shape[0]
        for layer in range(n - block):
            cos = _cos_per_token(last[bi][layer], last[bi][layer + block]).clamp(-1.0, 1.0)
            sums[layer] += float((torch.arccos(cos) / math.pi).sum())
    return [sums[i] / count if i + block <= n - 1 else None for i in range(n)]


def ppl(sm: StreamedModel, batches: list[StreamBatch], removed: tuple[int, ...], budget: int, bar=None):
    from .metrics import _nll_sum

    n = len(sm.layers)
    drop = set(removed)
    candidates = [i for i in range(n) if i not in drop]
    nll: dict[int, list[float]] = {i: [0.0] * len(batches) for i in candidates}
    tokens = sum(b.ids[:, 1:].numel() for b in batches)

    def on_end(bi, main, ends, ref):
        for br, hidden in ends.items():
            nll[br.layer][bi] = _nll_sum(sm.logits(batches[bi], hidden), batches[bi].ids)

    for group in groups([Branch(i) for i in candidates], _per_pass(sm, batches, budget, extra=1)):
        layer_pass(sm, batches, attn=drop, mlp=drop, branches=group, on_end=on_end, bar=bar)
    out = []
    for i in range(n):
        if i in drop:
            out.append(None)
            continue
        total = 0.0
        for v in nll[i]:  # the in-memory path's order: batch by batch
            total += v
        out.append(math.exp(total / tokens))
    return out


def finercut(sm: StreamedModel, batches: list[StreamBatch], remove: int, distance: str, budget: int, bar=None,
             step_bar=None, stop=None):
    """FinerCut's greedy search, each step one pass (or a few) over the layers with one branch per candidate."""
    from .metrics import _distance, finercut_plan_blocks, finercut_steps

    n = len(sm.layers)
    blocks, allowed = finercut_plan_blocks(sm.arch, n, remove)
    attn: set[int] = set()
    mlp: set[int] = set()
    steps = []
    steps_iter = finercut_steps(remove, stop, attn, mlp)
    for _ in (step_bar(steps_iter) if step_bar else steps_iter):
        candidates = [(k, b) for k in allowed for b in blocks if k not in (attn if b == "attention" else mlp)]
        if not candidates:
            break
        per_batch: dict[tuple, list[float]] = {c: [0.0] * len(batches) for c in candidates}

        def on_end(bi, main, ends, ref):
            ref_logits = sm.logits(batches[bi], ref)
            for br, hidden in ends.items():
                per_batch[(br.layer, br.block)][bi] = (_distance(distance, ref_logits, sm.logits(batches[bi], hidden))
                                                       * batches[bi].ids.shape[0])

        branches = [Branch(k, b) for k, b in candidates]
        for group in groups(branches, _per_pass(sm, batches, budget, extra=2)):
            layer_pass(sm, batches, attn=attn, mlp=mlp, branches=group, reference=True, on_end=on_end, bar=bar)
        total_n = sum(b.ids.shape[0] for b in batches)
        scored = {}
        for c, values in per_batch.items():
            total = 0.0
            for v in values:
                total += v
            scored[c] = total / total_n
        best = min(candidates, key=lambda c: (scored[c], -c[0], c[1]))
        (attn if best[1] == "attention" else mlp).add(best[0])
        steps.append({"removed": {"layer": best[0], "block": best[1]}, "distance": scored[best],
                      "candidates": [{"layer": k, "block": b, "distance": scored[(k, b)]} for k, b in candidates]})
    return steps


def taylor(sm: StreamedModel, batches: list[StreamBatch], removed: tuple[int, ...], bar=None):
    """Sum over a layer's weights of |dL/dW * W|, by backpropagating layer by layer: one forward pass keeps every
    layer's input, then from the head down each layer is read again, its input's gradient handed to the layer
    below. Each batch's loss is weighted by its share of the windows, as in memory."""
    import torch

    n = len(sm.layers)
    drop = set(removed)
    inputs: list[list] = [[] for _ in range(n)]

    def on_layer(i, bi, x, y):
        inputs[i].append(x)

    layer_pass(sm, batches, attn=drop, mlp=drop, on_layer=on_layer,
               bar=(lambda it: bar(it)) if bar else None)
    total = sum(b.ids.shape[0] for b in batches)
    grads = []
    for bi, batch in enumerate(batches):  # the last layer's output, recomputed with the head's gradient
        with sm.layer(n - 1) as last, torch.no_grad():
            end = inputs[n - 1][bi] if n - 1 in drop else sm.run(last, n - 1, batch, inputs[n - 1][bi])
        end = end.detach().requires_grad_(True)
        (sm.loss(batch, end) * batch.ids.shape[0] / total).backward()
        grads.append(end.grad)
    scores: list[float | None] = [None] * n
    for i in (bar(range(n - 1, -1, -1)) if bar else range(n - 1, -1, -1)):
        if i in drop:
            continue  # a removed layer passes its gradient through unchanged
        with sm.layer(i, trainable=True) as layer:
            for bi, batch in enumerate(batches):
                x = inputs[i][bi].detach().requires_grad_(True)
                out = layer(x, *batch.calls[i].args, **batch.calls[i].kwargs)
                (out[0] if isinstance(out, tuple) else out).backward(grads[bi])
                grads[bi] = x.grad
                inputs[i][bi] = None
            with torch.no_grad():
                scores[i] = sum(float((p.grad.float() * p.float()).abs().sum())
                                for p in layer.parameters() if p.grad is not None)
    return scores


def default_budget() -> int:
    """Bytes for residual streams: a quarter of what is available, at least 256 MiB."""
    env = os.environ.get("HFPRUNE_STREAM_BUDGET")
    if env:
        return int(env)
    return max(256 << 20, available_memory() // 4)

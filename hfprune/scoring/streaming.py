"""The layer-streaming driver: a model larger than memory is scored one decoder layer at a time.

The model (streamed_model.StreamedModel) is built with its decoder layers' parameters on the meta device; one
capture forward per calibration batch records what the model's own loop passes to each layer (attention masks,
position embeddings: per layer, so sliding-window and local/global RoPE layers get theirs). Then, layer-major: layer
i's tensors are read from the safetensors files with plain reads (no mmap, so an address-space cap holds), every
batch's residual stream goes through it, the observer sees what it asked for, and the layer is freed. The final
norm, head and soft-capping run through the model's own forward with every layer replaying the stream's end. Peak
memory: one layer + the residual streams + embeddings/head, whatever the depth.

Passes with branches (ppl, finercut) carry one extra stream per branch; when those streams do not fit in the stream
budget the branches are split into groups, one pass over the layers each. Backpropagation keeps every layer's input
from one forward pass, then goes layer by layer from the head down. Every layer sees exactly the inputs it sees in
the in-memory driver, so scores, and the choice, are the same.
"""

from __future__ import annotations

import contextlib
import os

from .forward import FfnSplit
from .passes import Branch, Projection
from .streamed_model import StreamBatch, StreamedModel, available_memory

STREAMED_METRICS = ("block-influence", "angular", "ppl", "finercut", "taylor")


# ---------------------------------------------------------------- passes over the layers

def stream_bytes(batches: list[StreamBatch]) -> int:
    return sum(b.embedded.numel() * b.embedded.element_size() for b in batches)


def groups(branches: list[Branch], per_pass: int) -> list[list[Branch]]:
    per_pass = max(1, per_pass)
    return [branches[i:i + per_pass] for i in range(0, len(branches), per_pass)] or [[]]


def layer_pass(sm: StreamedModel, batches: list[StreamBatch], *, attn: set[int] = frozenset(),
               mlp: set[int] = frozenset(), branches: list[Branch] = (), reference: bool = False,
               split: set[int] = frozenset(), upto: int | None = None, on_layer=None, on_split=None, on_end=None,
               bar=None):
    """One pass over the layers (up to layer `upto`). The main stream runs with `attn`/`mlp` sub-blocks removed
    (both: the layer goes); each branch also loses its own block; `reference` adds a stream of the unpruned model.
    on_split(i, b, y, m) sees the terms of layer i's output for the layers in `split`, on_layer(i, b, x, y) the
    main stream around layer i; on_end(b, main, {branch: stream}, reference) sees the ends."""
    import torch

    n = len(sm.layers) if upto is None else upto + 1
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
                    if on_split is not None and i in split:
                        with FfnSplit(layer, sm.arch) as terms:
                            y = sm.run(layer, i, batch, x, i in attn, i in mlp)
                        on_split(i, bi, *terms.terms(y))
                    else:
                        y = sm.run(layer, i, batch, x, i in attn, i in mlp)
                    if on_layer is not None:
                        on_layer(i, bi, x, y)
                    main[bi] = y
    if on_end is not None:
        with torch.no_grad():
            for bi in range(len(batches)):
                on_end(bi, main[bi], {br: s[bi] for br, s in side.items()}, ref[bi] if reference else None)


# ---------------------------------------------------------------- the driver

class StreamingDriver:
    """passes.Driver over a StreamedModel: every pass reads the layers from disk, one at a time."""

    def __init__(self, model: StreamedModel, batches: list[StreamBatch], budget: int, progress: bool = False):
        self.sm = model
        self.batches = batches
        self.budget = budget  # bytes for residual streams
        self.progress = progress
        self.arch = model.arch
        self.num_layers = len(model.layers)
        self.ids = [b.ids for b in batches]

    def _bar(self, desc: str):
        from tqdm.auto import tqdm

        return lambda iterable: tqdm(iterable, desc=f"{desc} (layer by layer)", disable=not self.progress,
                                     leave=False)

    def run(self, observer, *, attn=frozenset(), mlp=frozenset(), branches=(), reference: bool = False,
            split=frozenset(), upto: int | None = None, desc: str = "") -> None:
        branches = list(branches) if upto is None else []
        on_layer = getattr(observer, "on_layer", None)
        on_split = getattr(observer, "on_split", None)
        observer_end = getattr(observer, "on_end", None) if upto is None else None

        def on_end(bi, main, ends, ref):
            batch = self.batches[bi]
            ref_logits = self.sm.logits(batch, ref) if reference else None
            observer_end(bi, ref_logits, ((br, self.sm.logits(batch, hidden)) for br, hidden in ends.items()))
        extra = (1 if branches else 0) + (1 if reference else 0)  # the main stream's end, the reference stream
        per_pass = max(1, self.budget // max(1, stream_bytes(self.batches)) - extra)
        for g, group in enumerate(groups(branches, per_pass)):
            layer_pass(self.sm, self.batches, attn=set(attn), mlp=set(mlp), branches=group,
                       reference=reference and upto is None, split=set(split), upto=upto,
                       on_layer=on_layer if g == 0 else None, on_split=on_split if g == 0 else None,
                       on_end=on_end if observer_end else None, bar=self._bar(desc))

    def layer_split(self, i: int, bi: int, x, skip_attention: bool = False) -> tuple:
        import torch

        with self.sm.layer(i) as layer, FfnSplit(layer, self.arch) as terms, torch.no_grad():
            return terms.terms(self.sm.run(layer, i, self.batches[bi], x, skip_attention, False))

    def read(self, projection: Projection) -> tuple:
        import torch

        weight = self.sm.tensor(f"{projection.name}.weight").to(torch.float32)
        bias = self.sm.tensor(f"{projection.name}.bias")
        return weight, None if bias is None else bias.to(torch.float32)

    def write(self, projection: Projection, weight, bias=None) -> None:
        self.sm.override(f"{projection.name}.weight", weight)
        if bias is not None:
            self.sm.override(f"{projection.name}.bias", bias)
        if projection.layer < 0:  # layer 0's recorded input comes from the embedding: record it again
            self.sm.set_input_embedding(weight)
            self.batches = self.sm.prepare([b.ids for b in self.batches])

    def backward(self, removed: set[int], reduce, desc: str = "") -> list:
        """One forward pass keeps every layer's input; then from the head down each layer is read again, its
        input's gradient handed to the layer below."""
        import torch

        sm, batches, n = self.sm, self.batches, self.num_layers
        drop = set(removed)
        inputs: list[list] = [[] for _ in range(n)]

        def on_layer(i, bi, x, y):
            inputs[i].append(x)

        bar = self._bar(desc)
        layer_pass(sm, batches, attn=drop, mlp=drop, on_layer=on_layer, bar=bar)
        total = sum(b.ids.shape[0] for b in batches)
        grads = []
        for bi, batch in enumerate(batches):  # the last layer's output, recomputed with the head's gradient
            with sm.layer(n - 1) as last, torch.no_grad():
                end = inputs[n - 1][bi] if n - 1 in drop else sm.run(last, n - 1, batch, inputs[n - 1][bi])
            end = end.detach().requires_grad_(True)
            (sm.loss(batch, end) * batch.ids.shape[0] / total).backward()
            grads.append(end.grad)
        scores: list = [None] * n
        for i in bar(range(n - 1, -1, -1)):
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
                    scores[i] = reduce(layer)
        return scores


def default_budget() -> int:
    """Bytes for residual streams: a quarter of what is available, at least 256 MiB."""
    env = os.environ.get("HFPRUNE_STREAM_BUDGET")
    if env:
        return int(env)
    return max(256 << 20, available_memory() // 4)
